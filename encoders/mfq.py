"""MFQ: multi-modal fusion with learnable queries, for live-stream segments (MMBee, arXiv 2407.00056, §3.2).

A segment has token sequences per modality: frames (``image``), speech (``audio``) and comments
(``text``), each ``(B, L_m, d_m)`` with a ``(B, L_m)`` mask (True = a real token). :class:`MFQ` maps
them to one segment vector ``(B, out_dim)`` (and the ``K`` query outputs ``(B, K, width)``):

1. per-modality linear map to a common ``width`` plus a learned modality embedding:
   ``x_m = W_m t_m + e_m``  ``(B, L_m, w)``;
2. orthogonal projection (the paper keeps "each modality's component not explained by the
   others"). [I] The paper gives no formula; ours: ``s_m`` = the masked mean of ``x_m`` (zero when
   the modality is absent), ``Q_m`` an orthonormal basis of ``span{s_n : n != m}`` (Gram-Schmidt,
   degenerate directions dropped), and ``o_m = x_m - x_m Q_m Q_m^T``, applied twice ("twice is
   enough" re-orthogonalisation) so every token of ``o_m`` is orthogonal to the other modalities'
   pooled vectors to float precision (:func:`orthogonal_residual`; the tests check ``|<o, s_n>| < 1e-5``).
   [I] The span is of pooled vectors, not of tokens: with more tokens than width the token span
   would be the whole space and nothing would be left;
3. cross-modal attention: ``c_m = o_m + Attn(query=o_m, key/value = the other modalities' x_n)``, so
   the unique part of a modality asks the others for the shared part it lost in step 2;
4. self-attention (a pre-norm transformer block: attention + MLP) over the concatenation of all
   ``c_m``  ``(B, sum L_m, w)``;
5. ``K`` learnable queries ``q`` ``(K, w)`` cross-attend to that sequence (Q-Former-like):
   ``z = LN(q + Attn(q, h))``  ``(B, K, w)``, flattened and projected to ``out_dim``.

Masks are honoured everywhere; a modality absent from a row (all False) contributes nothing, and an
item (not a segment) is the case of length-1 sequences. Trainable end to end (:class:`mmrec.rankers.GTR`
embeds it); :func:`save_mfq` writes a safetensors file with the config in its metadata, which
:func:`load_mfq` and the ``mfq`` fuser of ``mmrec extract --fuse mfq --fusion-weights PATH`` read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, read_safetensors

_EPS = 1e-6


@dataclass
class MFQConfig:
    """Input widths per modality (``{"image": 512, "text": 384, "audio": 768}``) and the fusion's sizes."""

    dims: dict[str, int] = field(default_factory=lambda: {"image": 32, "text": 32, "audio": 32})
    width: int = 64
    heads: int = 4
    queries: int = 4
    out_dim: int = 64
    dropout: float = 0.0
    orthogonal: bool = True

    def __post_init__(self) -> None:
        if not self.dims or any(not isinstance(d, int) or d < 1 for d in self.dims.values()):
            raise UsageError(f"dims must map modality names to widths >= 1, got {self.dims}")
        self.dims = {name: int(self.dims[name]) for name in sorted(self.dims)}
        for name in ("width", "heads", "queries", "out_dim"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise UsageError(f"width {self.width} must be a multiple of heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def coerce(cls, value: MFQConfig | dict[str, Any] | None) -> MFQConfig:
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"unknown MFQ option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**value)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, L, w)``, ``(B, L)`` -> ``(B, w)``; zero for a row with no token."""
    weights = mask.to(x.dtype)[:, :, None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def orthonormal_basis(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Gram-Schmidt over ``(B, w)`` vectors -> ``(B, w, n)``; a direction already spanned (or zero) gives a zero column."""
    basis: list[torch.Tensor] = []
    for v in vectors:
        scale = v.norm(dim=-1, keepdim=True)
        for _ in range(2):  # re-orthogonalise against the columns so far
            for q in basis:
                v = v - (v * q).sum(-1, keepdim=True) * q
        norm = v.norm(dim=-1, keepdim=True)
        keep = norm > _EPS * (1.0 + scale)
        basis.append(torch.where(keep, v / norm.clamp(min=_EPS), torch.zeros_like(v)))
    return torch.stack(basis, dim=-1)


def orthogonal_residual(tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Step 2 of the module docstring: each modality's tokens minus their projection on the span of
    the other modalities' pooled vectors. ``{m: (B, L_m, w)}`` -> same shapes."""
    pooled = {m: masked_mean(x, masks[m]) for m, x in tokens.items()}  # each (B, w)
    out = {}
    for m, x in tokens.items():
        others = [pooled[n] for n in tokens if n != m]
        if not others:
            out[m] = x
            continue
        q = orthonormal_basis(others)  # (B, w, M-1)
        for _ in range(2):
            x = x - (x @ q) @ q.transpose(1, 2)  # (B, L_m, w)
        out[m] = x
    return out


class _Attention(nn.Module):
    """Multi-head attention with a key mask (True = attend); a query with no key gets zeros."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.dropout = dropout

    def forward(self, query: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        b, lq, w = query.shape
        h = self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, h, w // h).transpose(1, 2)  # (B, H, L, w/H)

        attn_mask = kv_mask[:, None, None, :]  # (B, 1, 1, Lk)
        y = F.scaled_dot_product_attention(split(self.q(query)), split(self.k(kv)), split(self.v(kv)), attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, Lq, w/H)
        y = torch.where(kv_mask.any(1)[:, None, None, None], y, torch.zeros_like(y))
        return self.o(y.transpose(1, 2).reshape(b, lq, w))  # (B, Lq, w)


class _Block(nn.Module):
    """Pre-norm transformer block over a masked sequence."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = _Attention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, mask)
        return x + self.mlp(self.norm2(x))


class MFQ(nn.Module):
    """``forward(tokens, masks) -> (B, out_dim)``; see the module docstring for the steps."""

    def __init__(self, config: MFQConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = cfg = MFQConfig.coerce(config)
        self.modalities = list(cfg.dims)
        w = cfg.width
        self.inputs = nn.ModuleDict({m: nn.Linear(d, w) for m, d in cfg.dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), w) * 0.02)
        self.cross = nn.ModuleDict({m: _Attention(w, cfg.heads, cfg.dropout) for m in self.modalities})
        self.cross_norm = nn.LayerNorm(w)
        self.fuse = _Block(w, cfg.heads, cfg.dropout)
        self.queries = nn.Parameter(torch.randn(cfg.queries, w) * 0.5)
        self.pool = _Attention(w, cfg.heads, cfg.dropout)
        self.pool_norm = nn.LayerNorm(w)
        self.out = nn.Linear(cfg.queries * w, cfg.out_dim)

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def _check(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
        if set(tokens) != set(self.modalities) or set(masks) != set(self.modalities):
            raise UsageError(f"MFQ needs tokens and masks for {self.modalities}, got {sorted(tokens)} and {sorted(masks)}")
        for m, x in tokens.items():
            if x.dim() != 3 or x.shape[-1] != self.config.dims[m] or masks[m].shape != x.shape[:2]:
                raise InputError(f"MFQ {m} tokens must be (B, L, {self.config.dims[m]}) with a (B, L) mask, "
                                 f"got {tuple(x.shape)} and {tuple(masks[m].shape)}", field=m)

    def query_outputs(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ``K`` query outputs ``(B, K, width)``."""
        self._check(tokens, masks)
        masks = {m: masks[m].bool() for m in self.modalities}
        x = {m: self.inputs[m](tokens[m].float()) + self.modality_embedding[i] for i, m in enumerate(self.modalities)}  # (B, L_m, w)
        o = orthogonal_residual(x, masks) if self.config.orthogonal else x
        crossed = []
        for m in self.modalities:
            others = [n for n in self.modalities if n != m]
            if others:
                kv = torch.cat([x[n] for n in others], dim=1)  # (B, sum L_n, w)
                kv_mask = torch.cat([masks[n] for n in others], dim=1)
                crossed.append(o[m] + self.cross[m](self.cross_norm(o[m]), self.cross_norm(kv), kv_mask))
            else:
                crossed.append(o[m])
        seq = torch.cat(crossed, dim=1)  # (B, L, w)
        seq_mask = torch.cat([masks[m] for m in self.modalities], dim=1)  # (B, L)
        h = self.fuse(seq, seq_mask)
        q = self.queries[None].expand(h.shape[0], -1, -1)  # (B, K, w)
        return self.pool_norm(q + self.pool(q, h, seq_mask))  # (B, K, w)

    def forward(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.query_outputs(tokens, masks)  # (B, K, w)
        return self.out(z.flatten(1))  # (B, out_dim)


def save_mfq(model: MFQ, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights to a safetensors file, its config (and ``info``) in the metadata; atomic."""
    from safetensors.torch import save_file

    meta = {"kind": "mfq", "config": asdict(model.config), **(info or {})}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"mmrec": json.dumps(meta)})
    return path


def load_mfq(path: str | Path, *, device: str | torch.device = "cpu") -> MFQ:
    """Rebuild the MFQ saved by :func:`save_mfq`, in eval mode."""
    state, meta = read_safetensors(path, "fusion weights")
    if not isinstance(meta, dict) or meta.get("kind") != "mfq":
        raise InputError(f"{path}: no MFQ metadata; not written by mmrec.encoders.save_mfq")
    model = MFQ(meta["config"])
    model.load_state_dict(state)
    return model.to(device).eval()


class MFQFusion:
    """The ``mfq`` fuser of ``mmrec extract``: token sequences in, an L2-normalised MFQ vector out.

    ``wants_tokens``: extract hands it ``{modality: (B, L, d)}`` per-frame / per-comment / speech
    vectors (padded) with ``{modality: (B, L)}`` masks instead of pooled vectors; an item is the
    length-1 case. ``weights`` (required) is a file from :func:`save_mfq`.
    """

    wants_tokens = True
    takes_weights = True

    def __init__(self, weights: str | Path | None = None) -> None:
        if not weights:
            raise UsageError("fusion 'mfq' needs trained weights: --fusion-weights PATH (a file from save_mfq)")
        self.weights = str(weights)
        self.model = load_mfq(weights)

    def out_dim(self, dims: dict[str, int]) -> int:
        want = self.model.config.dims
        if dims != want:
            raise UsageError(f"MFQ weights {self.weights} were trained for encoder dims {want}, the encoders give {dims}")
        return self.model.out_dim

    @torch.no_grad()
    def __call__(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        device = next(iter(tokens.values())).device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return F.normalize(self.model(tokens, masks).float(), dim=-1)  # (B, out_dim)
