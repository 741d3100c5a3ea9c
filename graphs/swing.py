"""Swing similarity between items over user baskets — the one scoring core mmrec uses.

Yang et al. 2020, "Large Scale Product Graph Construction for Recommendation in E-commerce", eq. 1:
``s(i, j) = sum_{u<v in U_i ∩ U_j} w_u w_v / (alpha + |I_u ∩ I_v|)`` with ``w_u = |I_u| ** -user_power``
([I] 0.5). Two callers: QARM's Item2Item pairs (:func:`mmrec.quantization.pairs.swing_pairs`, items
over clicking users) and MMBee's A2A graph (:func:`mmrec.graphs.build_graphs`, authors over
co-gifting users). Each item keeps its ``top_n`` partners; an item with more than
``max_users_per_item`` users uses a seeded sample of them, so the cost per item is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm


def swing_scores(
    baskets: Sequence[np.ndarray],
    n_items: int,
    *,
    alpha: float = 1.0,
    user_power: float = 0.5,
    top_n: int = 10,
    max_users_per_item: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(items, partners, scores)`` per item that has partners, ``top_n`` best each.

    ``baskets[u]`` holds user ``u``'s distinct items (int64 in ``0..n_items-1``). Scores are float32,
    partners are sorted by descending score (ties by item id), an item is never its own partner.
    """
    sizes = np.array([len(b) for b in baskets], dtype=np.int64)
    weight = np.maximum(sizes, 1).astype(np.float64) ** -user_power
    flat = np.concatenate(baskets).astype(np.int64) if len(baskets) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(baskets)), sizes)
    order = np.argsort(flat, kind="stable")  # users of each item, in basket order
    item_users = np.split(owner[order], np.cumsum(np.bincount(flat, minlength=n_items))[:-1])
    rng = np.random.default_rng(seed)
    for i in tqdm(range(n_items), desc="swing", unit="item", disable=not progress):
        users = item_users[i]
        if len(users) < 2:
            continue
        if len(users) > max_users_per_item:
            users = np.sort(rng.choice(users, size=max_users_per_item, replace=False))
        columns, inverse = np.unique(np.concatenate([baskets[u] for u in users]), return_inverse=True)
        member = np.zeros((len(users), len(columns)))  # (m, c) user x candidate item
        member[np.repeat(np.arange(len(users)), sizes[users]), inverse] = 1.0
        overlap = member @ member.T  # (m, m) |I_u ∩ I_v|
        w = weight[users]
        pair_weight = np.outer(w, w) / (alpha + overlap)
        np.fill_diagonal(pair_weight, 0.0)
        score = 0.5 * ((pair_weight @ member) * member).sum(axis=0)  # (c,) sum over u<v sharing j
        score[columns == i] = 0.0
        top = np.argsort(-score, kind="stable")[:top_n]
        top = top[score[top] > 0]
        if len(top):
            yield np.full(len(top), i, dtype=np.int64), columns[top], score[top].astype(np.float32)
