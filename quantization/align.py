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

What learns is a *tower* mapping item rows to L2-normalised vectors. Fast path (this module): over
cached embeddings (``mmrec extract`` output), the tower is a head on the frozen vectors, ``linear``
or ``mlp`` ([I] both start at the identity, a residual MLP with its last layer at zero, so training
starts from the content geometry). Slow path (:mod:`mmrec.quantization.align_encoders`): the tower
runs raw content through trainable encoders (projection head, optionally LoRA). [I] Unordered pairs
are de-duplicated, and a seeded ``holdout`` share of them is kept out of training to measure the
alignment: mean cosine of held-out pairs, against the mean cosine of random item pairs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmrec.quantization.files import save_tensors
from mmrec.quantization.kmeans import check_vectors
from mmrec.quantization.pairs import PairConfig, mine_pairs, read_pairs
from torch import nn
from tqdm.auto import tqdm

from mmrec.errors import InputError, UsageError
from mmrec.io import write_json
from mmrec.losses import info_nce
from mmrec.registry import Registry
from mmrec.store import embedding_shards, read_embeddings, write_embeddings

HEADS = Registry("alignment head")


@dataclass
class AlignConfig:
    """Training of the alignment tower. ``out_dim=None`` keeps the input width."""

    head: str = "linear"
    out_dim: int | None = None
    hidden: int = 512
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 0.2
    learn_temperature: bool = True
    holdout: float = 0.1
    seed: int = 0
    device: str = "auto"

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


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name} asked, but CUDA is not available here")
    return torch.device(name)


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


def train_tower(tower: nn.Module, pairs: np.ndarray, config: AlignConfig, *, progress: bool = False) -> dict[str, Any]:
    """Train ``tower`` (item rows -> normalised vectors) with InfoNCE on ``(P, 2)`` row pairs."""
    if len(pairs) < 2:
        raise InputError(f"need at least 2 training pairs, got {len(pairs)}")
    device = next(tower.buffers(), next(tower.parameters())).device
    temperature = Temperature(config.temperature, learn=config.learn_temperature).to(device)
    params = [p for p in [*tower.parameters(), *temperature.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    all_pairs = torch.as_tensor(pairs, dtype=torch.long)
    batch = min(config.batch_size, len(pairs))
    steps = len(pairs) // batch  # drop the ragged last batch: InfoNCE needs in-batch negatives
    losses = []
    tower.train()
    bar = tqdm(total=config.epochs * steps, desc="align", unit="step", disable=not progress)
    for _ in range(config.epochs):
        order = torch.randperm(len(pairs), generator=generator)
        total = 0.0
        for s in range(steps):
            chunk = all_pairs[order[s * batch : (s + 1) * batch]].to(device)  # (B, 2)
            a, b = tower(chunk[:, 0]), tower(chunk[:, 1])  # (B, d) each
            loss = info_nce(a, b, temperature(), normalize=False, left=chunk[:, 0], right=chunk[:, 1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", tau=f"{float(temperature().detach()):.3f}")
        losses.append(total / steps)
    bar.close()
    tower.eval()
    return {"epoch_loss": losses, "temperature": float(temperature().detach()), "steps": config.epochs * steps}


@torch.no_grad()
def encode_rows(tower: nn.Module, n: int, *, batch: int = 4096) -> np.ndarray:
    """All ``n`` item rows through ``tower`` -> ``(n, d)`` float32."""
    device = next(tower.buffers(), next(tower.parameters())).device
    tower.eval()
    return torch.cat([tower(torch.arange(s, min(s + batch, n), device=device)).float().cpu()
                      for s in range(0, n, batch)]).numpy()


def align_vectors(vectors: np.ndarray, pairs: np.ndarray, config: AlignConfig | None = None, *,
                  progress: bool = False) -> tuple[np.ndarray, nn.Module, dict[str, Any]]:
    """Fast path on arrays: train a head on ``(P, 2)`` row pairs of ``vectors`` ``(n, d)``.

    Returns ``(aligned (n, out_dim), head, history)``; ``pairs`` are all used for training.
    """
    config = config or AlignConfig()
    vectors = check_vectors(vectors, name="embeddings")
    torch.manual_seed(config.seed)
    head = HEADS.build(config.head, vectors.shape[1], config.out_dim or vectors.shape[1], config.hidden)
    tower = EmbeddingTower(torch.from_numpy(vectors), head).to(_device(config.device))
    history = train_tower(tower, pairs, config, progress=progress)
    return encode_rows(tower, len(vectors)), head, history


def align(log: str | Path, emb: str | Path, out: str | Path, *, column: str = "fused",
          config: AlignConfig | dict | None = None, pairs: PairConfig | dict | None = None,
          progress: bool = True) -> dict[str, Any]:
    """``mmrec align``: mine pairs from ``log``, align ``column`` of the ``emb`` folder, write ``out``.

    ``out`` gets ``emb-X.parquet`` (``key`` + ``column``, aligned; the layout of ``mmrec extract``),
    ``manifest.json``, ``pairs.parquet``, ``head.safetensors`` and ``align.json`` (the returned
    report: pair counts, loss per epoch, temperature, held-out metrics before and after).
    """
    config = config if isinstance(config, AlignConfig) else AlignConfig(**(config or {}))
    pair_config = pairs if isinstance(pairs, PairConfig) else PairConfig(**(pairs or {}))
    start = time.perf_counter()
    keys, vectors = read_embeddings(emb, column)
    vectors = check_vectors(vectors, name=f"embeddings {column!r} in {emb}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = mine_pairs(log, keys, vectors, out / "pairs.parquet", pair_config, progress=progress)
    train, held = split_pairs(read_pairs(out / "pairs.parquet", {k: r for r, k in enumerate(keys)}),
                              config.holdout, config.seed)
    aligned, head, history = align_vectors(vectors, train, config, progress=progress)
    info = {"aligned": True, "column": column, "source": str(emb), "head": config.head, "dim": int(aligned.shape[1])}
    write_embeddings(out, embedding_shards(emb), dict(zip(keys, aligned)), column, info=info)
    save_tensors(out / "head.safetensors", {k: v.detach().cpu().numpy() for k, v in head.state_dict().items()},
                 {"config": asdict(config), "in_dim": int(vectors.shape[1])})
    report = {
        "items": len(keys), "pairs": counts, "train_pairs": len(train), "heldout_pairs": len(held),
        "before": pair_metrics(vectors, held, config.seed), "after": pair_metrics(aligned, held, config.seed),
        **history, "config": asdict(config), "pair_config": asdict(pair_config),
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    write_json(out / "align.json", report)
    return report
