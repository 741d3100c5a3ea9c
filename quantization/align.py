"""Item alignment (QARM step 1): contrastive fine-tuning on item pairs mined from behaviour.

QARM [3P] fine-tunes the multimodal item encoder so that items users engage with together come
close: pairs from User2Item triggers and Swing (:mod:`mmrec.quantization.pairs`), in-batch
contrastive loss. [I] The loss is the symmetric InfoNCE of CLIP (Radford et al. 2021, eq. in fig. 3):
``L = (CE(a b^T / tau, I) + CE(b a^T / tau, I)) / 2`` over a batch of pairs ``(a_i, b_i)``, with
in-batch negatives; a column holding the same item as the row's positive is masked, not counted as
a negative. ``tau`` is learnable (parameterised as ``log tau``, clamped to ``>= 0.01`` as CLIP caps
its logit scale at 100) from ``temperature``, or fixed when ``learn_temperature`` is False. [I] It
starts at 0.2, not CLIP's 0.07: on catalogue-sized data many in-batch negatives share the anchor's
interest, and at 0.07 the head learned mostly to pull pairs together while random pairs drifted
closer too (sample data: random-pair cosine 0.14 -> 0.6; at 0.2 it stays near 0 and the planted
sub-style gap rises four times more).

What learns is a *tower* mapping item rows to L2-normalised vectors. Fast path: over cached
embeddings, the tower (:class:`EmbeddingTower`) is a head on the frozen vectors, ``linear`` or
``mlp`` ([I] both start at the identity, a residual MLP with its last layer at zero, so training
starts from the content geometry). Slow path (:class:`mmrec.quantization.encoder_tower.EncoderTower`):
the tower runs raw content through trainable encoders (projection head, optionally LoRA).
:func:`train_tower` trains either through the shared loop, :func:`mmrec.training.fit` (AdamW; the
model it trains is :class:`ContrastivePairs`, tower plus temperature). [I] Unordered pairs are
de-duplicated, and a seeded ``holdout`` share of them is kept out of training to measure the
alignment: mean cosine of held-out pairs, against the mean cosine of random item pairs. The
``mmrec align`` job (files in, files out) is :mod:`mmrec.pipelines.align`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec.config import build_config
from mmrec.device import resolve_device
from mmrec.errors import InputError, UsageError
from mmrec.losses import info_nce
from mmrec.registry import Registry
from mmrec.store import check_vectors
from mmrec.training import LoopConfig, fit, shuffled_batches

HEADS = Registry("alignment head")


@dataclass
class AlignConfig:
    """Training of the alignment tower. ``out_dim=None`` keeps the input width."""

    head: str = field(default="linear", metadata={"help": "head over cached embeddings: linear or mlp"})
    out_dim: int | None = field(default=None, metadata={"help": "width of the aligned vectors; none keeps the input's"})
    hidden: int = field(default=512, metadata={"help": "hidden width of the mlp head"})
    epochs: int = field(default=20, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(default=256, metadata={"help": "pairs per step (in-batch negatives)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    temperature: float = field(default=0.2, metadata={"help": "InfoNCE temperature (its start when learnable)"})
    learn_temperature: bool = field(default=True, metadata={"help": "learn the temperature"})
    holdout: float = field(default=0.1, metadata={"help": "share of pairs held out to measure alignment"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, batches and the held-out split"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})

    def __post_init__(self) -> None:
        HEADS.get(self.head)
        if self.epochs < 1 or self.batch_size < 2:
            raise UsageError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if not self.temperature > 0 or not self.lr > 0:
            raise UsageError(f"temperature and lr must be > 0, got {self.temperature}, {self.lr}")
        if not 0 <= self.holdout < 1:
            raise UsageError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.out_dim is not None and self.out_dim < 1:
            raise UsageError(f"out_dim must be >= 1, got {self.out_dim}")


class Temperature(nn.Module):
    """``tau`` of InfoNCE, learnable as ``log tau`` or fixed."""

    def __init__(self, value: float, *, learn: bool) -> None:
        super().__init__()
        log_tau = torch.tensor(math.log(value))
        if learn:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    def forward(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(min=0.01)


@HEADS.register("linear")
class LinearHead(nn.Module):
    """``normalize(W x + b)``, ``W`` starting at the identity (or a semi-orthogonal map)."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, out_dim)
        _identity_init(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), dim=-1)  # (B, out_dim)


@HEADS.register("mlp")
class MLPHead(nn.Module):
    """``normalize(W x + MLP(x))``: a residual MLP whose last layer starts at zero."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        _identity_init(self.proj)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x) + self.mlp(x), dim=-1)  # (B, out_dim)


def _identity_init(layer: nn.Linear) -> None:
    with torch.no_grad():
        if layer.in_features == layer.out_features:
            layer.weight.copy_(torch.eye(layer.in_features))
        else:
            nn.init.orthogonal_(layer.weight)
        layer.bias.zero_()


class EmbeddingTower(nn.Module):
    """The fast path's tower: a head over frozen cached vectors ``(n, d)``; item rows -> ``(B, out)``."""

    def __init__(self, vectors: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.register_buffer("vectors", vectors, persistent=False)
        self.head = head

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.head(self.vectors[rows])


def split_pairs(pairs: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate unordered pairs (dropping self pairs); split off a seeded held-out share."""
    pairs = np.sort(pairs, axis=1)
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_held = int(round(holdout * len(pairs)))
    return pairs[order[n_held:]], pairs[order[:n_held]]


def pair_metrics(vectors: np.ndarray, pairs: np.ndarray, seed: int = 0) -> dict[str, float]:
    """How close ``(P, 2)`` row pairs are against random item pairs (seeded, at least 1000).

    ``pair_cosine`` and ``random_cosine`` are means, ``gap`` their difference, ``auc`` the chance that
    a pair is closer than a random pair. A space that merely shrinks raises ``pair_cosine`` but not
    ``gap`` or ``auc``.
    """
    if not len(pairs):
        return {}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    random = np.random.default_rng(seed).integers(0, len(unit), size=(max(len(pairs), 1000), 2))
    random = random[random[:, 0] != random[:, 1]]
    pair_cos = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(1)
    random_cos = np.sort((unit[random[:, 0]] * unit[random[:, 1]]).sum(1))
    below = np.searchsorted(random_cos, pair_cos, side="left")
    ties = np.searchsorted(random_cos, pair_cos, side="right") - below
    auc = float((below + 0.5 * ties).mean() / len(random_cos))
    return {"pair_cosine": float(pair_cos.mean()), "random_cosine": float(random_cos.mean()),
            "gap": float(pair_cos.mean() - random_cos.mean()), "auc": auc}


class ContrastivePairs(nn.Module):
    """What :func:`train_tower` fits: ``forward((B, 2) row pairs) -> symmetric InfoNCE`` of the tower."""

    def __init__(self, tower: nn.Module, temperature: Temperature) -> None:
        super().__init__()
        self.tower = tower
        self.temperature = temperature

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        a, b = self.tower(pairs[:, 0]), self.tower(pairs[:, 1])  # (B, d) each
        return info_nce(a, b, self.temperature(), normalize=False, left=pairs[:, 0], right=pairs[:, 1])


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.buffers(), None)
    return (tensor if tensor is not None else next(module.parameters())).device


def train_tower(tower: nn.Module, pairs: np.ndarray, config: AlignConfig | dict | None = None, *,
                progress: bool = False) -> dict[str, Any]:
    """Train ``tower`` (item rows -> normalised vectors, on its device) with InfoNCE on ``(P, 2)`` row pairs.

    Returns ``epoch_loss`` (mean per epoch), the final ``temperature``, ``steps``, ``seconds`` and
    ``samples_per_s`` (pairs per second).
    """
    config = build_config(AlignConfig, config, "align")
    if len(pairs) < 2:
        raise InputError(f"need at least 2 training pairs, got {len(pairs)}")
    device = _device_of(tower)
    model = ContrastivePairs(tower, Temperature(config.temperature, learn=config.learn_temperature)).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    all_pairs = torch.as_tensor(pairs, dtype=torch.long, device=device)  # (P, 2)
    # drop the ragged last batch: InfoNCE needs in-batch negatives
    batches = shuffled_batches(len(pairs), min(config.batch_size, len(pairs)), seed=config.seed, drop_last=True,
                               device=device)
    result = fit(model, optimizer, batches, lambda net, rows: net(all_pairs[rows]),
                 config=LoopConfig(epochs=config.epochs, progress=progress, desc="align"), size=len)
    return {"epoch_loss": [entry["loss"] for entry in result.history],
            "temperature": float(model.temperature().detach()), "steps": result.steps,
            "seconds": result.seconds, "samples_per_s": result.samples_per_s}


@torch.no_grad()
def encode_rows(tower: nn.Module, n: int, *, batch: int = 4096) -> np.ndarray:
    """All ``n`` item rows through ``tower`` -> ``(n, d)`` float32."""
    device = _device_of(tower)
    tower.eval()
    return torch.cat([tower(torch.arange(s, min(s + batch, n), device=device)).float().cpu()
                      for s in range(0, n, batch)]).numpy()


def align_vectors(vectors: np.ndarray, pairs: np.ndarray, config: AlignConfig | dict | None = None, *,
                  progress: bool = False) -> tuple[np.ndarray, nn.Module, dict[str, Any]]:
    """Fast path on arrays: train a head on ``(P, 2)`` row pairs of ``vectors`` ``(n, d)``.

    Returns ``(aligned (n, out_dim), head, history)``; ``pairs`` are all used for training.
    """
    config = build_config(AlignConfig, config, "align")
    vectors = check_vectors(vectors, name="embeddings")
    torch.manual_seed(config.seed)
    head = HEADS.build(config.head, vectors.shape[1], config.out_dim or vectors.shape[1], config.hidden)
    tower = EmbeddingTower(torch.from_numpy(vectors), head).to(resolve_device(config.device, what="align device"))
    history = train_tower(tower, pairs, config, progress=progress)
    return encode_rows(tower, len(vectors)), head, history
