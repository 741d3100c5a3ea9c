"""SYNTHETIC clustered item vectors with planted neighbourhoods, for index and scale benches.

Three scales of structure: ``clusters`` centres (standard normal), ``n / group`` group anchors per
centre (centre + ``spread`` noise), and ``group`` items per anchor (anchor + ``tight`` noise), all
L2-normalised. An item's nearest neighbours are its group mates (the planted neighbourhood), then
its cluster. Queries are fresh members of random groups, never indexed, so a query's planted
neighbours are the ``group`` items of its group.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 16


def planted_clusters(n: int, dim: int, *, n_queries: int = 1000, group: int = 10, clusters: int | None = None,
                     spread: float = 0.5, tight: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(items (n, dim), item group (n,), queries (n_queries, dim), query group (n_queries,))``, float32 unit rows.

    Item ``i`` belongs to group ``i // group``; ``clusters`` None is ``clip(n // 1000, 16, 1000)``.
    """
    clusters = clusters or int(np.clip(n // 1000, 16, 1000))
    n_groups = -(-n // group)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    anchors = centres[rng.integers(0, clusters, n_groups)] + spread * rng.standard_normal((n_groups, dim), dtype=np.float32)
    item_group = np.arange(n) // group
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, CHUNK):  # streamed: no (n, dim) float64 temporaries
        g = item_group[lo : lo + CHUNK]
        x[lo : lo + len(g)] = anchors[g] + tight * rng.standard_normal((len(g), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    query_group = rng.integers(0, n_groups, n_queries)
    q = anchors[query_group] + tight * rng.standard_normal((n_queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, item_group, q.astype(np.float32), query_group
