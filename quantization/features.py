"""Trainable code features for rankers (QARM step 3).

QARM [3P] turns each code level into a categorical feature with its own embedding table, learned
end to end by the ranking loss, and uses codes three ways: on the candidate, pooled over the user's
positive history, and as cross features: the history items that share an RQ prefix with the
candidate, then target attention over them.

- :class:`mmrec.layers.CodeEmbedding` (core): ``(..., L)`` codes -> summed ``(..., dim)`` or
  concatenated ``(..., L * dim)`` per-level embeddings; code ``-1`` is padding and embeds to zero.
- :func:`prefix_match`: for each history item, how many leading levels it shares with the candidate.
- :func:`mmrec.layers.target_attention` (core): masked scaled dot-product attention of one query
  over a sequence, the ``scorer="dot"`` path of :class:`mmrec.layers.TargetAttention`.
- :class:`CodeCrossFeatures`: candidate embedding, mean-pooled history embedding, per-depth counts of
  prefix-sharing history items (``log1p``) and target attention over the history items sharing at
  least ``min_prefix`` levels, concatenated into one ``(B, out_dim)`` vector for a ranker.
[I] One table holds all levels (offsets per level), so a lookup is one embedding call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmrec.errors import UsageError
from mmrec.layers import CodeEmbedding, target_attention


def prefix_match(candidate: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """Shared leading levels: candidate ``(..., L)``, history ``(..., T, L)`` -> ``(..., T)`` in ``0..L``."""
    equal = history == candidate.unsqueeze(-2)  # (..., T, L)
    return equal.long().cumprod(dim=-1).sum(dim=-1)


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
