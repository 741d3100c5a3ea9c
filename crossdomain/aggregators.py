"""History aggregators of UniCDR (WSDM'23, section 3.2) and the sequence aggregators of UniCDR+.

Every aggregator maps a user embedding ``e_u`` ``(B, D)`` and history item embeddings ``h`` ``(B, L, D)``
with a validity mask ``(B, L)`` to ``out = λ·e_u + (1 − λ)·W·pool(h)`` (λ = 0.5 in UniCDR's code):

One class per kind, registered by name in :data:`~mmrec.crossdomain.registry.AGGREGATORS`:

- ``mean`` (:class:`MeanPool`): masked mean of the history.
- ``user_attention`` (:class:`UserAttention`): weights ``softmax_j(tanh(W_a h_j) · e_u)``.
- ``item_similarity`` (:class:`ItemSimilarity`): weights from EASE item-item weights B (Steck 2019, λ_EASE = 50):
  ``a_j = softmax_j(Σ_{k≠j} B[i_j, i_k])`` — items coherent with the rest of the history count more.
  [I] The closed form ``P = (XᵀX + λI)⁻¹`` costs O(n³); :func:`ease_weights` solves it on the
  ``max_items`` most frequent items only (others get weight 0 similarity, i.e. the mean).
- ``position_attention`` (:class:`PositionAttention`, UniCDR+ "sequential" aggregator, [I]): user attention whose keys add a
  learned embedding of the position from the newest item, so recency counts; O(L·D) like the others.
  The recency of position j is ``(kept items − 1 − j)`` clamped at 0: exact for an unmasked history
  (evaluation), approximate in training where interaction masking leaves holes (known, kept as run).

An empty history (all masked) pools to zeros, so ``out = λ·e_u``; callers that want nothing from a
cold user zero ``e_u`` themselves. [I] ``W`` has no bias and starts as the identity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmrec.errors import UsageError
from mmrec.layers import masked_softmax


def ease_weights(pairs: np.ndarray, n_items: int, *, lam: float = 50.0, max_items: int = 4000) -> torch.Tensor:
    """Sparse EASE weights ``(n_items, n_items)`` (COO) over the ``max_items`` most frequent items."""
    counts = np.bincount(pairs[:, 1], minlength=n_items)
    top = np.argsort(-counts, kind="stable")[:max_items]
    top = top[counts[top] > 0]
    local = np.full(n_items, -1, dtype=np.int64)
    local[top] = np.arange(len(top))
    rows = pairs[local[pairs[:, 1]] >= 0]
    users, u_index = np.unique(rows[:, 0], return_inverse=True)
    x = torch.zeros(len(users), len(top))
    x[torch.as_tensor(u_index), torch.as_tensor(local[rows[:, 1]])] = 1.0
    gram = x.T @ x + lam * torch.eye(len(top))
    p = torch.linalg.inv(gram)
    b = -p / torch.diagonal(p)[None, :]
    b.fill_diagonal_(0.0)
    keep = b.abs() > 1e-4
    i, j = keep.nonzero(as_tuple=True)
    top_t = torch.as_tensor(top)
    return torch.sparse_coo_tensor(torch.stack([top_t[i], top_t[j]]), b[keep], (n_items, n_items),
                                   check_invariants=True).coalesce()


class Aggregator(nn.Module):
    """``λ·e_u + (1 − λ)·W·pool(h)``; subclasses (one per entry of
    :data:`~mmrec.crossdomain.registry.AGGREGATORS`) define the pooling ``logits``."""

    needs_similarity = False  # True: the model passes EASE weights (ease_weights) as ``similarity``

    def __init__(self, dim: int, *, lam: float = 0.5, maxlen: int = 10, similarity: torch.Tensor | None = None) -> None:
        super().__init__()
        self.lam = lam
        self.proj = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.proj.weight)  # [I] start as the plain pool, so item spaces line up from step 1

    def logits(self, user: torch.Tensor, hist: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised pooling scores ``(B, L)``; padding is masked afterwards."""
        raise NotImplementedError

    def weights(self, user: torch.Tensor, hist: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooling weights ``(B, L)`` summing to 1 over valid positions (0 everywhere for an empty row)."""
        return masked_softmax(self.logits(user, hist, items, mask), mask, dim=1)

    def pool(self, user: torch.Tensor, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``W·pool(h)`` ``(B, D)``; ``items`` ``(B, L)`` ids with ``-1`` padding."""
        mask = items >= 0
        w = self.weights(user, hist, items, mask)  # (B, L)
        return self.proj((w[:, :, None] * hist).sum(1))

    def forward(self, user: torch.Tensor, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.lam * user + (1 - self.lam) * self.pool(user, hist, items)


class MeanPool(Aggregator):
    """``mean``: the masked mean of the history."""

    def logits(self, user, hist, items, mask):
        return torch.zeros(mask.shape, device=hist.device)


class UserAttention(Aggregator):
    """``user_attention``: ``softmax_j(tanh(W_a h_j) · e_u)``."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(dim, **kwargs)
        self.key = nn.Linear(dim, dim)

    def keys(self, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hist

    def logits(self, user, hist, items, mask):
        return (torch.tanh(self.key(self.keys(hist, mask))) * user[:, None, :]).sum(-1)  # (B, L)


class PositionAttention(UserAttention):
    """``position_attention``: user attention whose keys add an embedding of the recency."""

    def __init__(self, dim: int, *, maxlen: int = 10, **kwargs) -> None:
        super().__init__(dim, maxlen=maxlen, **kwargs)
        self.position = nn.Embedding(maxlen, dim)

    def keys(self, hist, mask):
        length = mask.sum(1, keepdim=True)  # (B, 1)
        recency = (length - 1 - torch.arange(mask.shape[1], device=mask.device)).clamp(min=0)  # (B, L)
        return hist + self.position(recency)


class ItemSimilarity(Aggregator):
    """``item_similarity``: ``softmax_j(Σ_{k≠j} B[i_j, i_k])`` over EASE weights ``similarity``."""

    needs_similarity = True

    def __init__(self, dim: int, *, similarity: torch.Tensor | None = None, **kwargs) -> None:
        super().__init__(dim, **kwargs)
        if similarity is None:
            raise UsageError("the item_similarity aggregator needs EASE weights (ease_weights)")
        self.register_buffer("similarity", similarity, persistent=False)  # sparse, rebuilt from the data, moves with the model

    def logits(self, user, hist, items, mask):
        safe = items.clamp(min=0)
        b, length = safe.shape
        rows = safe[:, :, None].expand(b, length, length).reshape(-1)
        cols = safe[:, None, :].expand(b, length, length).reshape(-1)
        sim = _sparse_lookup(self.similarity, rows, cols).view(b, length, length)
        sim = sim * mask[:, None, :] * mask[:, :, None]
        return sim.sum(2) * 10.0  # EASE weights are small; [I] temperature 0.1


def _sparse_lookup(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``matrix[rows, cols]`` for a coalesced COO matrix, by binary search on the linearised indices."""
    n = matrix.shape[1]
    index = matrix.indices()
    linear = index[0] * n + index[1]
    query = rows * n + cols
    pos = torch.searchsorted(linear, query).clamp(max=max(len(linear) - 1, 0))
    if not len(linear):
        return torch.zeros(query.shape, device=query.device)
    hit = linear[pos] == query
    return torch.where(hit, matrix.values()[pos], torch.zeros((), device=query.device))
