"""Leave-one-out evaluation with full ranking: Recall@K and NDCG@K over all items.

For each user a scorer sees the history (the items before the target) and scores every item; the
target's rank is the number of items scoring strictly higher plus the number of *other* items scoring
the same (ties are broken against the true item, so a constant scorer earns nothing). Recall@K =
mean of [rank < K]; NDCG@K = mean of 1 / log2(rank + 2) where rank < K (one relevant item, so IDCG =
1). No negatives are sampled. History items stay in the ranking unless ``exclude_history`` is set
(then every item of the history, the target too if it was seen before, scores -inf, as RecBole does);
the report says which under ``history``. With ``train_counts`` (each item's interactions in the
training data) the report adds ``tail``: the same metrics over the users whose target has at most
``tail_max`` training interactions (the long tail, where content and codes should help ids most).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mmrec.errors import UsageError
from mmrec.retrieval.data import Sequences

Scorer = Callable[[np.ndarray], torch.Tensor | np.ndarray]  # (B, L) histories, -1 = pad -> (B, n_items) scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items, ties counted against it: ``(B,)`` int64."""
    true = scores.gather(1, targets[:, None])  # (B, 1)
    return (scores >= true).sum(1) - 1  # higher + ties other than the target itself, in one pass


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """``{"recall@K", "ndcg@K"}`` for each K from 0-based target ranks."""
    ranks = np.asarray(ranks)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if len(ranks) else 0.0
    return out


def evaluate(scorer: Scorer, histories: Sequences, targets: np.ndarray, *, max_len: int = 50, ks: Sequence[int] = (5, 10),
             exclude_history: bool = False, batch_size: int = 512, return_ranks: bool = False,
             train_counts: np.ndarray | None = None, tail_max: int = 5) -> dict:
    """Score ``targets[u]`` given ``histories[u]`` (its last ``max_len`` items) for every user ``u``.

    Returns ``{"users", "items", "recall@K", "ndcg@K", "history": "kept" | "excluded"}`` (plus
    ``ranks`` with ``return_ranks``, and ``tail`` = ``{"max_train_interactions", "users", "recall@K",
    "ndcg@K"}`` with ``train_counts`` of shape ``(n_items,)``).
    """
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) != len(histories):
        raise UsageError(f"{len(targets)} targets for {len(histories)} histories")
    if len(targets) and (targets.min() < 0 or targets.max() >= histories.n_items):
        raise UsageError(f"targets must be item indices in 0..{histories.n_items - 1}")
    ranks = []
    for start in range(0, len(targets), batch_size):
        users = np.arange(start, min(start + batch_size, len(targets)))
        hist = histories.padded(users, max_len)
        with torch.no_grad():
            scores = torch.as_tensor(scorer(hist)).float().clone()  # (B, n_items)
        if scores.shape != (len(users), histories.n_items):
            raise UsageError(f"scorer returned shape {tuple(scores.shape)}, expected ({len(users)}, {histories.n_items})")
        if exclude_history:
            for row, u in enumerate(users):
                scores[row, torch.as_tensor(histories[u])] = -torch.inf
        ranks.append(target_ranks(scores, torch.as_tensor(targets[users], device=scores.device)).cpu().numpy())
    ranks_all = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    report = {"users": int(len(targets)), "items": int(histories.n_items), **metrics_from_ranks(ranks_all, ks),
              "history": "excluded" if exclude_history else "kept"}
    if train_counts is not None:
        train_counts = np.asarray(train_counts)
        if train_counts.shape != (histories.n_items,):
            raise UsageError(f"train_counts has shape {train_counts.shape}, expected ({histories.n_items},)")
        tail = train_counts[targets] <= tail_max
        report["tail"] = {"max_train_interactions": int(tail_max), "users": int(tail.sum()), **metrics_from_ranks(ranks_all[tail], ks)}
    if return_ranks:
        report["ranks"] = ranks_all
    return report
