"""The transition term: a sequential retriever's logits plus what the item-transition count knows.

On the Amazon sets the non-learned last item -> next item count (:class:`~mmrec.retrieval.baselines.CoOccurrence`)
is level with the trained SASRec on NDCG@10: a next item is often one that directly followed the same
item in other users' sequences, a sparse memorised signal that low-rank item vectors smooth away. As
the wide part of a wide & deep model (Cheng et al. 2016; the same idea as the cross-domain count
residual, :mod:`mmrec.crossdomain.residual`), the hybrid score of item ``i`` after history ``(..., b, a)`` is

    s(u, i) = max_k <u_k, e_i> + sum_o g_o(src_o) · log(1 + c_o(src_o -> i))

with ``c_1`` the count of ``a -> i`` (``i`` directly after ``a``) and, with ``order`` 2, ``c_2`` the
count of ``b -> i`` (``i`` two steps after ``b``), both counted over the training part. The gate
``g_o`` is learned and never negative: ``softplus(w_o + v_o · log(1 + n_o(src)))`` with ``n_o(src)``
the row total of ``src`` (``gate="evidence"``: how much the count row can be trusted depends on how
many transitions it holds), or ``softplus(w_o)`` (``gate="scalar"``); ``g`` starts at ``init`` (3 in
:class:`~mmrec.retrieval.kuaiformer.RetrieverConfig`: started at 1, Adam's small steps on this one scalar
left it at 1.3 after 11 epochs on Scientific while validation preferred about 3, docs/retrieval.md). [I] Leave-one-out in training:
every training sample ``a -> t`` is itself one of the counted transitions, so its own count (and its
row total) is read minus one: a transition seen once cannot predict itself, and ``g`` is fitted on
what a validation or test target (never counted) will see. Because ``g >= 0`` and the term is zero
for items outside the source rows, the exact top-k of the hybrid lies in the exact inner-product top-k
∪ the source rows (:func:`hybrid_top`): serving is two-stage, ANN candidates ∪ transition candidates,
rescored. The counts are buffers of the module, saved with the run's weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError
from mmrec.retrieval.data import Sequences

GATES = ("evidence", "scalar")


def transition_pairs(seqs: Sequences, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(src, dst)`` of every pair ``dst`` ``gap`` steps after ``src`` within one user's sequence."""
    user_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    same = user_of[:-gap] == user_of[gap:] if len(user_of) > gap else np.zeros(0, bool)
    return seqs.items[:-gap][same], seqs.items[gap:][same]


class TransitionTerm(nn.Module):
    """``sum_o g_o · log(1 + c_o(src_o -> i))`` for sources ``(V, order)`` (``-1``: none) and items."""

    def __init__(self, n_items: int, order: int = 1, gate: str = "evidence", init: float = 1.0) -> None:
        super().__init__()
        if order not in (1, 2) or gate not in GATES:
            raise UsageError(f"transition order must be 1 or 2 and gate one of {GATES}; got {order}, {gate!r}")
        self.n_items, self.order, self.gate = n_items, order, gate
        self.bias = nn.Parameter(torch.full((order,), math.log(math.expm1(init))))  # softplus = init at the start
        self.slope = nn.Parameter(torch.zeros(order)) if gate == "evidence" else None
        for o in range(order):  # sorted keys src * n_items + dst, their counts, and row totals
            self.register_buffer(f"keys{o}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"counts{o}", torch.zeros(0))
            self.register_buffer(f"totals{o}", torch.zeros(n_items))
            self.register_buffer(f"_indptr{o}", torch.zeros(n_items + 1, dtype=torch.long), persistent=False)  # moves with the model
            self._set(o, torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(n_items))

    def fit(self, seqs: Sequences) -> TransitionTerm:
        """Count the transitions of ``seqs`` (the training part)."""
        for o in range(self.order):
            src, dst = transition_pairs(seqs, o + 1)
            keys, counts = np.unique(src * self.n_items + dst, return_counts=True)
            self._set(o, torch.as_tensor(keys), torch.as_tensor(counts, dtype=torch.float32),
                      torch.as_tensor(np.bincount(src, minlength=self.n_items), dtype=torch.float32))
        return self

    def _set(self, o: int, keys: torch.Tensor, counts: torch.Tensor, totals: torch.Tensor) -> None:
        device = self.bias.device
        setattr(self, f"keys{o}", keys.to(device))
        setattr(self, f"counts{o}", counts.to(device))
        setattr(self, f"totals{o}", totals.to(device))
        setattr(self, f"_indptr{o}", torch.searchsorted(keys, torch.arange(self.n_items + 1) * self.n_items).to(device))  # CSR rows

    def load_counts(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Size the count buffers like ``state`` (a saved ``state_dict``) before ``load_state_dict``."""
        for o in range(self.order):
            self._set(o, state[f"{prefix}keys{o}"], state[f"{prefix}counts{o}"], state[f"{prefix}totals{o}"])

    def count(self, o: int, src: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``c_o(src -> item)``: ``src`` (V,), ``items`` (V, C) -> (V, C) float; 0 where ``src < 0``."""
        keys, counts = getattr(self, f"keys{o}"), getattr(self, f"counts{o}")
        if not len(keys):
            return torch.zeros(items.shape, device=items.device)
        q = src.clamp(min=0)[:, None] * self.n_items + items
        at = torch.searchsorted(keys, q).clamp(max=len(keys) - 1)
        return torch.where((keys[at] == q) & (src[:, None] >= 0), counts[at], 0.0)

    def entries(self, o: int, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nonzero ``c_o(src -> i)`` of the CSR rows of ``src`` (V,): ``(rows, items, counts)``."""
        keys, counts, indptr = getattr(self, f"keys{o}"), getattr(self, f"counts{o}"), getattr(self, f"_indptr{o}")
        s = src.clamp(min=0)
        starts, lens = indptr[s], (indptr[s + 1] - indptr[s]) * (src >= 0)
        rows = torch.repeat_interleave(torch.arange(len(src), device=src.device), lens)
        at = torch.arange(len(rows), device=src.device) - torch.repeat_interleave(lens.cumsum(0) - lens, lens) + torch.repeat_interleave(starts, lens)
        return rows, keys[at] % self.n_items, counts[at]

    def row(self, o: int, src: int) -> torch.Tensor:
        """The items ``i`` with ``c_o(src -> i) > 0``."""
        keys = getattr(self, f"keys{o}")
        lo, hi = torch.searchsorted(keys, torch.tensor([src * self.n_items, (src + 1) * self.n_items], device=keys.device)).tolist()
        return keys[lo:hi] % self.n_items

    def _gate(self, o: int, total: torch.Tensor) -> torch.Tensor:
        """``g_o`` for row totals ``total`` ``(V,)``: ``(V,)``."""
        return F.softplus(self.bias[o] + (self.slope[o] * torch.log1p(total) if self.slope is not None else torch.zeros_like(total)))

    def add_to(self, logits: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """``logits`` ``(V, n_items)`` plus the term, written only where a count is nonzero (the rows are
        sparse: a full ``(V, n_items)`` term would cost as much as the softmax). ``targets``: leave-one-out,
        as in :meth:`forward`."""
        for o in range(self.order):
            src = sources[:, o]
            rows, cols, c = self.entries(o, src)
            total = getattr(self, f"totals{o}")[src.clamp(min=0)]
            if targets is not None:
                own = (src >= 0).float()
                c, total = c - (cols == targets[rows]).float(), (total - own).clamp(min=0)
            logits = logits.index_put((rows, cols), self._gate(o, total)[rows] * torch.log1p(c.clamp(min=0)), accumulate=True)
        return logits

    def forward(self, sources: torch.Tensor, items: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The term ``(V, C)`` for ``sources`` ``(V, order)`` and ``items`` ``(V, C)`` (None: all items,
        ``C = n_items``); ``targets`` ``(V,)``: training samples, read leave-one-out (their own transition
        and its row total minus one)."""
        if items is None:
            return self.add_to(torch.zeros(len(sources), self.n_items, device=sources.device), sources, targets)
        out = 0.0
        for o in range(self.order):
            src = sources[:, o]
            c = self.count(o, src, items)
            total = getattr(self, f"totals{o}")[src.clamp(min=0)]
            if targets is not None:
                own = (src >= 0).float()
                c = (c - (items == targets[:, None]).float() * own[:, None]).clamp(min=0)
                total = (total - own).clamp(min=0)
            out = out + self._gate(o, total)[:, None] * torch.log1p(c)
        return out


def sources_of(history: torch.Tensor, order: int) -> torch.Tensor:
    """The transition sources of each history ``(B, L)`` (left-padded, -1 = pad): its last item and, with
    ``order`` 2, the one before it: ``(B, order)``."""
    cols = [history[:, -1]] + ([history[:, -2] if history.shape[1] > 1 else torch.full_like(history[:, -1], -1)] if order > 1 else [])
    return torch.stack(cols, 1)


def sources_at(history: torch.Tensor, order: int) -> torch.Tensor:
    """The sources after every prefix of ``history`` ``(B, L)``: ``(B, L, order)`` (position ``j``: item ``j``
    and, with ``order`` 2, item ``j - 1``; -1 where there is none in the window)."""
    cols = [history]
    if order > 1:
        cols.append(torch.cat([torch.full_like(history[:, :1], -1), history[:, :-1]], 1))
    return torch.stack(cols, -1)


def hybrid_top(model, history: torch.Tensor, candidates: np.ndarray, k: int, *, chunk: int = 1024) -> np.ndarray:
    """Two-stage serving of a hybrid model: each user's ``candidates`` (its inner-product top-k through an
    index, -1 = none) ∪ the items its transition sources lead to, rescored with the full hybrid score;
    the top-``k`` rows ``(U, k)`` (-1 where fewer). With exact candidates this is the exact hybrid top-k
    (the term is >= 0 and zero off the source rows). Users are rescored ``chunk`` at a time, every
    (user, candidate) pair of a chunk in one batch."""
    term: TransitionTerm = model.transition
    device = term.bias.device
    n = term.n_items
    out = np.full((len(history), k), -1, dtype=np.int64)
    for s in range(0, len(history), chunk):
        hist = torch.as_tensor(history[s : s + chunk], device=device)
        cands = torch.as_tensor(candidates[s : s + chunk], device=device)  # (U, K)
        sources = sources_of(hist, term.order)  # (U, order)
        users = torch.arange(len(hist), device=device)
        pairs = [(users[:, None] * n + cands)[cands >= 0]]
        for o in range(term.order):
            rows, items, _ = term.entries(o, sources[:, o])
            pairs.append(rows * n + items)
        keys = torch.unique(torch.cat(pairs))  # sorted: by user, then item
        rows, items = keys // n, keys % n  # (P,)
        with torch.no_grad():
            scores = (model(hist)[rows] @ model.item_vectors(items)[:, :, None])[..., 0].max(1).values  # (P,)
            scores = scores + term(sources[rows], items[:, None])[:, 0]
        per_user = torch.bincount(rows, minlength=len(hist))
        slot = torch.arange(len(keys), device=device) - torch.repeat_interleave(per_user.cumsum(0) - per_user, per_user)
        width = max(int(per_user.max()), 1) if len(keys) else 1
        table = torch.full((len(hist), width), -torch.inf, device=device)
        table[rows, slot] = scores
        ids = torch.full((len(hist), width), -1, dtype=torch.long, device=device)
        ids[rows, slot] = items
        top = table.topk(min(k, width), dim=1)
        found = torch.where(top.values > -torch.inf, ids.gather(1, top.indices), -1)
        out[s : s + len(hist), : found.shape[1]] = found.cpu().numpy()
    return out
