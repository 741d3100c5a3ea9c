"""Constrained beam search of :class:`~mmrec.retrieval.generative.GenerativeRetriever` over a trie of
the code tuples that exist, and its leave-one-out evaluation.

:class:`CodeTrie` holds the distinct tuples of the items' codes (sorted) and, per level ``l``, a dense
table ``child[l][prefix, code]`` -> the id of the longer prefix (-1 where no item continues that
way); level ``L``'s prefixes are the tuple ids. :func:`beam_search` keeps ``W`` prefixes per user:
at level ``l`` each is extended by every code its trie node allows, scored by the summed log-probability
``sum_{j<=l} log p(c_j | c_<j, h)`` (TIGER's beam search, arXiv 2305.05065 §3.2; the softmax is over
the level's whole vocabulary, so a beam's score is exactly the teacher-forced log-likelihood of its
tuple), and the ``W`` best survive. Every returned beam is a tuple of a real item; beams are distinct.
With ``W`` >= the number of tuples it is the exact ranking of all tuples by log-likelihood.

Items sharing a tuple (codes without ``--dedup``) share one slot: a beam is one retrieved slot, the
ranked item list lists a slot's items together, and :func:`evaluate_generative` ranks the target by
the position of its tuple's slot, so two items of one slot are one retrieved slot, not two hits.
A target not in the ``W`` beams (or without codes) is a miss at every ``K <= W``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from mmrec.errors import UsageError
from mmrec.retrieval.data import Sequences
from mmrec.retrieval.evaluate import metrics_from_ranks
from mmrec.retrieval.generative import GenerativeRetriever


class CodeTrie:
    """The distinct code tuples of ``item_codes`` ``(n_items, L)`` (rows with a code < 0 left out)."""

    def __init__(self, item_codes: np.ndarray, code_sizes: Sequence[int]) -> None:
        item_codes = np.asarray(item_codes, dtype=np.int64)
        has = (item_codes >= 0).all(1)
        if not has.any():
            raise UsageError("no item has codes; nothing to generate")
        self.tuples, inverse = np.unique(item_codes[has], axis=0, return_inverse=True)  # (n_tuples, L), sorted
        self.item_tuple = np.full(len(item_codes), -1, dtype=np.int64)
        self.item_tuple[has] = inverse.reshape(-1)
        items = np.flatnonzero(has)
        order = np.argsort(self.item_tuple[items], kind="stable")
        self.slot_items = items[order]  # items grouped by tuple id
        self.slot_offsets = np.concatenate([[0], np.cumsum(np.bincount(self.item_tuple[items], minlength=len(self.tuples)))])
        levels = self.tuples.shape[1]
        self.child: list[torch.Tensor] = []
        parent = np.zeros(len(self.tuples), dtype=np.int64)
        for level in range(levels):
            if level + 1 < levels:
                _, below = np.unique(self.tuples[:, : level + 1], axis=0, return_inverse=True)
                below = below.reshape(-1)
            else:
                below = np.arange(len(self.tuples))
            table = np.full((parent.max() + 1, code_sizes[level]), -1, dtype=np.int64)
            table[parent, self.tuples[:, level]] = below
            self.child.append(torch.as_tensor(table))
            parent = below

    @classmethod
    def of(cls, model: GenerativeRetriever) -> CodeTrie:
        return cls(model.item_codes.cpu().numpy(), model.config.code_sizes)

    def __len__(self) -> int:
        return len(self.tuples)

    def to(self, device: torch.device | str) -> CodeTrie:
        self.child = [c.to(device) for c in self.child]
        return self

    def items_of(self, slot: int) -> np.ndarray:
        return self.slot_items[self.slot_offsets[slot] : self.slot_offsets[slot + 1]]

    def ranked_items(self, slots: np.ndarray) -> list[np.ndarray]:
        """Per row of beam tuple ids ``(B, W)`` (-1 = none), the items of its slots in beam order."""
        return [np.concatenate([self.items_of(s) for s in row if s >= 0] or [np.zeros(0, np.int64)]) for row in slots]


@torch.no_grad()
def beam_search(model: GenerativeRetriever, trie: CodeTrie, history: np.ndarray | torch.Tensor,
                beam: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tuple ids (B, W), scores (B, W))`` of the ``W`` = ``beam`` (default the model's) best tuples
    per history, best first; ``scores`` = summed log-probabilities; -1 / -inf where fewer than ``W``
    tuples exist."""
    w = beam or model.config.beam
    device = model.start.device
    context = model.encode(history)
    b = context[1].shape[0]
    node = torch.zeros(b, 1, dtype=torch.long, device=device)  # trie node of each beam
    score = torch.zeros(b, 1, device=device)
    code, caches = None, None
    for child in trie.child:
        logp, caches = model.decode_step(context, code, caches)  # (B, W, K): the decoder reads each new code once
        nxt = child.to(device)[node]  # (B, W, K) node after each code, -1 = no item
        cand = torch.where(nxt >= 0, score[..., None] + logp, -torch.inf).flatten(1)  # (B, W K)
        size = logp.shape[-1]
        score, idx = cand.topk(min(w, cand.shape[1]), dim=1)  # (B, W')
        parent, code = idx // size, idx % size
        node = nxt.flatten(1).gather(1, idx).clamp(min=0)
        caches = [_reorder(cache, parent) for cache in caches]
    tuples = torch.where(torch.isfinite(score), node, -1)
    if tuples.shape[1] < w:
        pad = w - tuples.shape[1]
        tuples = torch.cat([tuples, tuples.new_full((b, pad), -1)], 1)
        score = torch.cat([score, score.new_full((b, pad), -torch.inf)], 1)
    return tuples, score


@torch.no_grad()
def sample_tuples(model: GenerativeRetriever, trie: CodeTrie, history: np.ndarray | torch.Tensor, samples: int, *,
                  temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tuple ids ``(B, samples)`` drawn from the model, level by level, each code from
    ``softmax(log p(c_l | c_<l, h) / temperature)`` restricted to the codes the trie allows (ancestral
    sampling with replacement; every draw is a real item). The exploration of policy-gradient
    alignment (:mod:`mmrec.retrieval.preference`), where beams would always return the same items."""
    if samples < 1 or temperature <= 0:
        raise UsageError(f"samples must be >= 1 and temperature > 0, got {samples} and {temperature}")
    device = model.start.device
    context = model.encode(history)
    b = context[1].shape[0]
    node = torch.zeros(b, samples, dtype=torch.long, device=device)
    code, caches = None, None
    for child in trie.child:
        logp, caches = model.decode_step(context, code, caches)  # (B, 1 or S, K)
        if code is None:  # one BOS per history, then its cache is copied to every sample
            logp = logp.expand(-1, samples, -1)
            caches = [_reorder(cache, node) for cache in caches]
        nxt = child.to(device)[node]  # (B, S, K)
        logits = torch.where(nxt >= 0, logp / temperature, -torch.inf)
        code = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=generator).view(b, samples)
        node = nxt.gather(2, code[..., None])[..., 0]
    return node


def _reorder(cache: tuple[torch.Tensor, torch.Tensor], parent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention keys / values ``(B W_old, t, D)`` of the surviving beams' parents -> ``(B W_new, t, D)``."""
    b, w = parent.shape
    out = []
    for c in cache:
        c = c.view(b, -1, *c.shape[1:])  # (B, W_old, t, D)
        out.append(c.gather(1, parent[:, :, None, None].expand(-1, -1, *c.shape[2:])).flatten(0, 1))
    return out[0], out[1]


def evaluate_generative(model: GenerativeRetriever, histories: Sequences, targets: np.ndarray, *, max_len: int,
                        ks: Sequence[int] = (5, 10), beam: int | None = None, batch_size: int = 256,
                        train_counts: np.ndarray | None = None, tail_max: int = 5, trie: CodeTrie | None = None,
                        return_ranks: bool = False) -> dict:
    """Leave-one-out Recall / NDCG@K of ``targets[u]`` given ``histories[u]`` from constrained beam search:
    the keys of :func:`mmrec.retrieval.evaluate.evaluate` (``history`` is ``kept``), plus ``beam``,
    ``targets_without_codes`` and ``beam_users_per_s`` (users / second of beam search, encoding included);
    ``ranks`` (0-based slot of each target, ``beam`` when not retrieved) with ``return_ranks``."""
    w = beam or model.config.beam
    if w < max(ks):
        raise UsageError(f"beam {w} < the largest K {max(ks)}: the ranking would stop before K")
    trie = trie or CodeTrie.of(model)
    trie.to(model.start.device)
    targets = np.asarray(targets, dtype=np.int64)
    target_tuples = trie.item_tuple[targets]
    was_training = model.training
    model.eval()
    ranks_all, seconds = np.zeros(len(targets), np.int64), 0.0
    by_length = np.argsort(np.minimum(histories.lengths, max_len), kind="stable")  # batches of similar length: little padding
    for start in range(0, len(targets), batch_size):
        users = by_length[start : start + batch_size]
        t0 = time.perf_counter()
        tuples, _ = beam_search(model, trie, histories.padded(users, max_len), w)
        tuples = tuples.cpu().numpy()
        seconds += time.perf_counter() - t0
        hit = (tuples == target_tuples[users, None]) & (target_tuples[users, None] >= 0)  # (B, W)
        ranks_all[users] = np.where(hit.any(1), hit.argmax(1), w)
    model.train(was_training)
    report = {"users": int(len(targets)), "items": int(histories.n_items), **metrics_from_ranks(ranks_all, ks),
              "history": "kept", "beam": int(w), "targets_without_codes": int((target_tuples < 0).sum()),
              "beam_users_per_s": round(len(targets) / seconds, 1) if seconds > 0 else None}
    if train_counts is not None:
        tail = np.asarray(train_counts)[targets] <= tail_max
        report["tail"] = {"max_train_interactions": int(tail_max), "users": int(tail.sum()), **metrics_from_ranks(ranks_all[tail], ks)}
    if return_ranks:
        report["ranks"] = ranks_all
    return report


__all__ = ["CodeTrie", "beam_search", "evaluate_generative", "sample_tuples"]
