"""Trainable code features for rankers (QARM step 3).

QARM [3P] turns each code level into a categorical feature with its own embedding table, learned
end to end by the ranking loss, and uses codes three ways: on the candidate, pooled over the user's
positive history, and as cross features: the history items that share an RQ prefix with the
candidate, then target attention over them.

- :class:`CodeEmbedding`: ``(..., L)`` codes -> summed ``(..., dim)`` or concatenated
  ``(..., L * dim)`` per-level embeddings; code ``-1`` is padding and embeds to zero.
- :func:`prefix_match`: for each history item, how many leading levels it shares with the candidate.
- :func:`target_attention`: masked scaled dot-product attention of one query over a sequence, over
  any leading dims; it is the ``scorer="dot"`` path of :class:`mmrec.rankers.TargetAttention`, the
  one target attention of mmrec (no second copy).
- :class:`CodeCrossFeatures`: candidate embedding, mean-pooled history embedding, per-depth counts of
  prefix-sharing history items (``log1p``) and target attention over the history items sharing at
  least ``min_prefix`` levels, concatenated into one ``(B, out_dim)`` vector for a ranker.
[I] One table holds all levels (offsets per level), so a lookup is one embedding call.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mmrec.errors import UsageError


class CodeEmbedding(nn.Module):
    """Per-level embedding tables for code tuples; ``mode`` is ``"sum"`` or ``"concat"``."""

    def __init__(self, codebook_sizes: Sequence[int], dim: int, *, mode: str = "sum") -> None:
        super().__init__()
        if mode not in ("sum", "concat"):
            raise UsageError(f"mode must be 'sum' or 'concat', got {mode!r}")
        if not codebook_sizes or min(codebook_sizes) < 1 or dim < 1:
            raise UsageError(f"need codebook sizes >= 1 and dim >= 1, got {list(codebook_sizes)}, {dim}")
        self.codebook_sizes = list(codebook_sizes)
        self.mode = mode
        self.dim = dim
        offsets = torch.tensor([0, *self.codebook_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # (L,)
        self.padding_idx = sum(self.codebook_sizes)
        self.table = nn.Embedding(self.padding_idx + 1, dim, padding_idx=self.padding_idx)

    @property
    def out_dim(self) -> int:
        return self.dim * (len(self.codebook_sizes) if self.mode == "concat" else 1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.shape[-1] != len(self.codebook_sizes):
            raise UsageError(f"codes have {codes.shape[-1]} levels, expected {len(self.codebook_sizes)}")
        index = torch.where(codes >= 0, codes + self.offsets, torch.full_like(codes, self.padding_idx))
        emb = self.table(index)  # (..., L, dim)
        return emb.sum(-2) if self.mode == "sum" else emb.flatten(-2)  # (..., dim) or (..., L * dim)


def prefix_match(candidate: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """Shared leading levels: candidate ``(..., L)``, history ``(..., T, L)`` -> ``(..., T)`` in ``0..L``."""
    equal = history == candidate.unsqueeze(-2)  # (..., T, L)
    return equal.long().cumprod(dim=-1).sum(dim=-1)


def target_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` over the ``mask``-ed positions: ``(..., D), (..., T, D), (..., T, D') -> (..., D')``.

    A row with no unmasked position gives zeros.
    """
    scores = (keys @ query.unsqueeze(-1)).squeeze(-1) / keys.shape[-1] ** 0.5  # (..., T)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all-masked rows -> 0
    return (weights.unsqueeze(-1) * values).sum(dim=-2)  # (..., D')


class CodeCrossFeatures(nn.Module):
    """Candidate, history and prefix-cross code features in one ``(B, out_dim)`` vector."""

    def __init__(self, codebook_sizes: Sequence[int], dim: int, *, min_prefix: int = 1) -> None:
        super().__init__()
        if not 1 <= min_prefix <= len(codebook_sizes):
            raise UsageError(f"min_prefix must be in [1, {len(codebook_sizes)}], got {min_prefix}")
        self.embedding = CodeEmbedding(codebook_sizes, dim, mode="sum")
        self.levels = len(codebook_sizes)
        self.min_prefix = min_prefix

    @property
    def out_dim(self) -> int:
        return 3 * self.embedding.dim + self.levels

    def forward(self, candidate: torch.Tensor, history: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """candidate ``(B, L)``, history ``(B, T, L)``, mask ``(B, T)`` (True = real item) -> ``(B, out_dim)``."""
        if mask is None:
            mask = (history >= 0).all(dim=-1)
        cand = self.embedding(candidate)  # (B, D)
        hist = self.embedding(history)  # (B, T, D)
        valid = mask.to(hist.dtype)[:, :, None]
        pooled = (hist * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # (B, D)
        shared = prefix_match(candidate, history).masked_fill(~mask, 0)  # (B, T)
        depths = torch.arange(1, self.levels + 1, device=shared.device)
        counts = (shared.unsqueeze(-1) >= depths).sum(dim=-2).to(hist.dtype)  # (B, L)
        attended = target_attention(cand, hist, hist, mask & (shared >= self.min_prefix))  # (B, D)
        return torch.cat([cand, pooled, attended, torch.log1p(counts)], dim=-1)
