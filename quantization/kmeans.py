"""k-means on FAISS, plain and balanced, for codes (RQ-Kmeans) and index trees (MISS).

:func:`kmeans` trains centroids with ``faiss.Kmeans`` (GPU when faiss-gpu and CUDA are present);
:func:`assign` gives each vector its nearest centroid with a flat FAISS index, in blocks.
:func:`balanced_assign` is OneRec v1's balanced assignment: centroid by centroid, each takes its
``n / k`` nearest still-unassigned vectors (the first ``n mod k`` centroids take one more), so cluster
sizes differ by at most one. :func:`balanced_kmeans` alternates that assignment with centroid means.
[I] Centroids take their turn in order of their nearest distance, closest first; FAISS's own
subsampling cap (``max_points_per_centroid``) is lifted so results do not depend on a silent sample.
"""

from __future__ import annotations

import numpy as np

from mmrec.errors import UsageError
from mmrec.store import check_vectors


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError("FAISS is needed: pip install 'mmrec[cpu]' (faiss-cpu) or 'mmrec[gpu]' (faiss-gpu)") from None
    return faiss


def _gpu_available() -> bool:
    faiss = _faiss()
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def kmeans(
    x: np.ndarray, k: int, *, niter: int = 20, nredo: int = 1, seed: int = 0, gpu: bool | None = None
) -> np.ndarray:
    """Train ``k`` centroids on ``(n, d)`` vectors with FAISS; returns ``(k, d)`` float32.

    ``nredo`` restarts keep the lowest-error run (k-means is a local search).
    """
    faiss = _faiss()
    x = check_vectors(x)
    if not 1 <= k <= x.shape[0]:
        raise UsageError(f"cannot make {k} clusters from {x.shape[0]} vectors; need 1 <= k <= n")
    gpu = _gpu_available() if gpu is None else gpu
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=seed, gpu=gpu, max_points_per_centroid=x.shape[0],
                        min_points_per_centroid=1, verbose=False)  # no "please provide more points" warning
    km.train(x)
    return km.centroids.copy()


def assign(x: np.ndarray, centroids: np.ndarray, *, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each vector: ``(labels (n,) int64, squared distances (n,) float32)``."""
    faiss = _faiss()
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    labels = np.empty(len(x), dtype=np.int64)
    dists = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), block):
        d, i = index.search(np.ascontiguousarray(x[start : start + block], dtype=np.float32), 1)
        labels[start : start + block], dists[start : start + block] = i[:, 0], d[:, 0]
    return labels, dists


def _sq_dists(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]  # (n, k)


def balanced_assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Balanced labels ``(n,)``: every cluster gets ``n // k`` or ``n // k + 1`` vectors."""
    n, k = len(x), len(centroids)
    if k > n:
        raise UsageError(f"cannot balance {n} vectors over {k} clusters")
    dists = _sq_dists(x, centroids)  # (n, k)
    sizes = np.full(k, n // k)
    order = np.argsort(dists.min(axis=0), kind="stable")  # closest centroids choose first
    sizes[order[: n % k]] += 1
    labels = np.full(n, -1, dtype=np.int64)
    free = np.ones(n, dtype=bool)
    by_centroid = np.ascontiguousarray(dists.T)  # (k, n): a centroid's distances lie contiguous
    for c in order:
        candidates = np.flatnonzero(free)
        take = candidates[_smallest(by_centroid[c, candidates], int(sizes[c]))]
        labels[take] = c
        free[take] = False
    return labels


def _smallest(values: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` smallest values, ties to the lower position: the set of
    ``argsort(values, kind="stable")[:m]``, found in linear time."""
    if m >= len(values):
        return np.arange(len(values))
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(values, m - 1)[m - 1]
    below = np.flatnonzero(values < threshold)
    return np.concatenate([below, np.flatnonzero(values == threshold)[: m - len(below)]])


def balanced_kmeans(x: np.ndarray, k: int, *, niter: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means with equal-size clusters: FAISS k-means init, then balanced assignment + mean updates.

    Returns ``(centroids (k, d), labels (n,))``; cluster sizes differ by at most one.
    """
    x = check_vectors(x)
    centroids = kmeans(x, k, niter=niter, seed=seed)
    labels = balanced_assign(x, centroids)
    for _ in range(niter):
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        centroids = sums / np.bincount(labels, minlength=k)[:, None].astype(np.float32)
        new = balanced_assign(x, centroids)
        if np.array_equal(new, labels):
            break
        labels = new
    return centroids, labels
