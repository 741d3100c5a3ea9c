"""MISS lifelong-sequence search: Co-GSU and MM-GSU retrieval, and DIN-style target attention (ESU).

MISS (arXiv 2508.14515) scores a target (an item, or a node of the index tree) against a user's
lifelong behaviour sequence in two stages. The General Search Unit keeps the top-k behaviours most
similar to the target: Co-GSU by collaborative (ID) embeddings, MM-GSU by multimodal embeddings —
the same inner-product top-k, :func:`gsu_topk`, over different embedding tables. The Exact Search Unit
is DIN's target attention (Zhou et al., KDD'18), mmrec's one :class:`mmrec.layers.TargetAttention`: an MLP over
``[target, behaviour, target − behaviour, target ⊙ behaviour]`` gives each kept behaviour an
unnormalised weight (DIN keeps no softmax) and the weighted sum is the user's interest in the target.
:class:`LifelongInterest` runs both GSUs and an ESU on each and concatenates the two interests.

[I] Left open by the paper and decided here: padding positions (``mask`` false) never enter a top-k;
when a sequence has fewer valid behaviours than k, the missing slots get zero weight.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec.layers import TargetAttention


def gsu_topk(target: torch.Tensor, history: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` behaviours of ``history`` (B, T, d) by inner product with ``target`` (B, d) or (B, C, d).

    Returns ``(index, valid)`` of shape (B, k) or (B, C, k): positions in the sequence and whether the
    slot holds a real behaviour (false for padding when fewer than k are valid).
    """
    squeeze = target.dim() == 2
    if squeeze:
        target = target[:, None]  # (B, 1, d)
    scores = torch.einsum("bcd,btd->bct", target, history)  # (B, C, T)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    k = min(k, history.shape[1])
    top, index = scores.topk(k, dim=-1)  # (B, C, k)
    valid = torch.isfinite(top)
    return (index[:, 0], valid[:, 0]) if squeeze else (index, valid)


def gather_behaviours(history: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``history`` (B, T, d) at ``index`` (B, k) or (B, C, k) -> (B, k, d) or (B, C, k, d)."""
    b = torch.arange(history.shape[0], device=history.device).view(-1, *([1] * (index.dim() - 1)))
    return history[b, index]


class LifelongInterest(nn.Module):
    """Co-GSU + MM-GSU, each followed by target attention; returns ``(B, [C,] id_dim + mm_dim)``.

    A target is one item per row ``(B, d)`` or ``C`` candidates per row ``(B, C, d)`` (the MISS tree's
    node scorer scores a level's candidate nodes at once); histories are ``(B, T, d)``.
    """

    def __init__(self, id_dim: int, mm_dim: int, *, k: int = 50, hidden: int = 64) -> None:
        super().__init__()
        self.k = k
        self.co_esu = TargetAttention(id_dim, hidden=hidden, activation="prelu")
        self.mm_esu = TargetAttention(mm_dim, hidden=hidden, activation="prelu")

    def forward(
        self,
        target_id: torch.Tensor,  # (B, [C,] id_dim)
        target_mm: torch.Tensor,  # (B, [C,] mm_dim)
        history_id: torch.Tensor,  # (B, T, id_dim)
        history_mm: torch.Tensor,  # (B, T, mm_dim)
        mask: torch.Tensor | None = None,  # (B, T) true for real behaviours
    ) -> torch.Tensor:
        co_index, co_valid = gsu_topk(target_id, history_id, self.k, mask)  # (B, [C,] k)
        mm_index, mm_valid = gsu_topk(target_mm, history_mm, self.k, mask)
        co = self.co_esu(target_id, gather_behaviours(history_id, co_index), co_valid)  # (B, [C,] id_dim)
        mm = self.mm_esu(target_mm, gather_behaviours(history_mm, mm_index), mm_valid)  # (B, [C,] mm_dim)
        return torch.cat([co, mm], dim=-1)
