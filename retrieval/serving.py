"""Serving a sequential retriever through an index: interest vectors, exact top-k, the MISS tree's beam
search over them and the merge of a user's per-interest results (``mmrec retrieve serve``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mmrec.retrieval.data import Sequences
from mmrec.retrieval.kuaiformer import KuaiFormer


def merge_interests(scores: np.ndarray, rows: np.ndarray, k_int: int, k: int) -> np.ndarray:
    """Per user, the top-``k`` distinct rows of its ``k_int`` queries' results by max score: ``(U, k)``."""
    n_users = len(rows) // k_int
    scores, rows = scores.reshape(n_users, -1), rows.reshape(n_users, -1)
    out = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        best: dict[int, float] = {}
        for s, r in zip(scores[u], rows[u]):
            if r >= 0 and s > best.get(r, -math.inf):
                best[int(r)] = float(s)
        top = sorted(best, key=best.get, reverse=True)[:k]
        out[u, : len(top)] = top
    return out


def interest_vectors(model: KuaiFormer, history: Sequences, users: np.ndarray, max_len: int) -> np.ndarray:
    """Interest vectors of ``users`` ``(U, k, D)``."""
    with torch.no_grad():
        return torch.cat([model(torch.as_tensor(history.padded(users[i : i + 1024], max_len)))
                          for i in range(0, len(users), 1024)]).numpy()


def exact_top(queries: np.ndarray, items: np.ndarray, n_int: int, k: int) -> np.ndarray:
    top = (torch.as_tensor(queries) @ torch.as_tensor(items).T).topk(k, dim=1)
    return merge_interests(top.values.numpy(), top.indices.numpy(), n_int, k)


def recall_vs(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / k for f, t in zip(found, truth)]))


def mips_lift(items: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Euclidean transform of maximum inner-product search (Bachrach et al., RecSys 2014, eq. 6):
    item ``x`` -> ``[x, sqrt(M^2 - |x|^2)]`` with ``M`` the largest item norm, query ``q`` -> ``[q, 0]``.
    Inner products are unchanged and every lifted item has norm ``M``, so k-means over the lifted items
    (the tree's clusters) groups items by the queries that rank them high, not by their norms."""
    sq = (items.astype(np.float64) ** 2).sum(1)
    extra = np.sqrt(np.maximum(sq.max() - sq, 0.0)).astype(np.float32)[:, None]
    return (np.ascontiguousarray(np.hstack([items, extra]), dtype=np.float32),
            np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)])))


def tree_search(index: Any, queries: np.ndarray, n_int: int, k: int, beam: int, joint: bool,
                 upper_beam: int | None = None) -> tuple[np.ndarray, float]:
    """Top-``k`` rows per user ``(U, k)`` through the MISS tree and the nodes scored per query (per user
    when ``joint``); ``queries`` ``(U * n_int, D)``, a user's interests adjacent."""
    if not joint:
        s, r, nodes = index.search_with_count(queries, k, beam=beam, upper_beam=upper_beam)
        return merge_interests(s, r, n_int, k), nodes
    per_interest = queries.reshape(-1, n_int, queries.shape[1])
    # the tree's own per-level similarity (cosine to inner nodes, inner product to items), max over interests
    scorers = [index._ip_score(np.ascontiguousarray(per_interest[:, j])) for j in range(n_int)]

    def score(level: int, nodes: np.ndarray, part: slice) -> np.ndarray:
        return torch.stack([f(level, nodes, part) for f in scorers]).amax(0)

    _, rows, nodes = index._beam(len(per_interest), k, beam, score, upper_beam)
    return rows, nodes
