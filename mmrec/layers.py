"""Layers every area uses (core): target attention, the masked-softmax pooling behind it, and code
embeddings.

Target attention of the candidate item over the user's history (DIN, Zhou et al., KDD'18).

DIN's local activation unit scores each history item ``k_t`` against the candidate ``q`` with an
MLP on ``[q, k_t, q - k_t, q * k_t]`` and pools ``sum_t a_t k_t`` over the real (unmasked) items.
``scorer="dot"`` uses scaled dot-product scores instead, through
:func:`target_attention` below (the same attention QARM's code cross features use).
DIN leaves the MLP scores unnormalised (``softmax=False``, the default), so the pooled vector keeps
how many history items resemble the candidate; [I] ``softmax=True`` normalises them over the
history instead. A user with no history gets the zero vector either way. This is the one target
attention of mmrec: the rankers, GTR and the MISS tree's exact search unit (:mod:`mmrec.index.gsu`,
``activation="prelu"`` as DIN has it) all use it, over any leading dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmrec.errors import UsageError


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over the positions where ``mask`` is True (same shapes): the one masked-softmax
    pooling weight of mmrec. Masked positions get exactly 0; a row with no unmasked position gives zeros."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim).nan_to_num(0.0)


def target_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` over the ``mask``-ed positions: ``(..., D), (..., T, D), (..., T, D') -> (..., D')``.

    A row with no unmasked position gives zeros.
    """
    scores = (keys @ query.unsqueeze(-1)).squeeze(-1) / keys.shape[-1] ** 0.5  # (..., T)
    weights = masked_softmax(scores, mask)  # all-masked rows -> 0
    return (weights.unsqueeze(-1) * values).sum(dim=-2)  # (..., D')


class TargetAttention(nn.Module):
    """candidate ``(..., D)``, history ``(..., T, D)``, mask ``(..., T)`` -> pooled history ``(..., D)``."""

    def __init__(self, dim: int, *, scorer: str = "din", hidden: int = 32, softmax: bool = False,
                 activation: str = "relu") -> None:
        super().__init__()
        if scorer not in ("din", "dot"):
            raise UsageError(f"attention scorer must be 'din' or 'dot', got {scorer!r}")
        if activation not in ("relu", "prelu"):
            raise UsageError(f"attention activation must be 'relu' or 'prelu', got {activation!r}")
        self.scorer = scorer
        self.softmax = softmax
        if scorer == "din":
            act = nn.ReLU() if activation == "relu" else nn.PReLU()
            self.mlp = nn.Sequential(nn.Linear(4 * dim, hidden), act, nn.Linear(hidden, 1))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.scorer == "dot":
            return target_attention(query, keys, keys, mask)
        # DIN's first layer on [q, k, q - k, q * k], split by input block so the query part is
        # computed once per row, not once per history item: the same function, half the work.
        w_q, w_k, w_d, w_p = self.mlp[0].weight.split(query.shape[-1], dim=1)  # each (H, D)
        hidden = (query @ (w_q + w_d).T + self.mlp[0].bias).unsqueeze(-2)  # (..., 1, H)
        hidden = hidden + keys @ (w_k - w_d).T + (query.unsqueeze(-2) * keys) @ w_p.T  # (..., T, H)
        scores = self.mlp[2](self.mlp[1](hidden)).squeeze(-1)  # (..., T)
        if self.softmax:
            weights = masked_softmax(scores, mask)
        else:
            weights = scores * mask
        return (weights.unsqueeze(-1) * keys).sum(dim=-2)  # (..., D)


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
