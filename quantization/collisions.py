"""Code collisions (several items, one code tuple) and two ways to resolve them.

- ``suffix`` (TIGER, Rajput et al. 2023, sec. 3.1; OneRec): append a column that numbers the items
  sharing a tuple, 0, 1, 2, ... [I] in order of their residual norm, so the item the tuple
  reconstructs best gets 0. Always unique; the extra column carries no geometry.
- ``level``: one more residual k-means level whose assignment is collision-aware: an item that is
  alone keeps its nearest centroid; the items of a shared tuple take distinct centroids, greedily
  by increasing distance ([I] closest pair first). Unique whenever no tuple is shared by more items
  than there are centroids, and the extra level still refines the reconstruction.
"""

from __future__ import annotations

import numpy as np

from mmrec.errors import UsageError
from mmrec.quantization.kmeans import _sq_dists, assign, kmeans

DEDUP_METHODS = ("suffix", "level")


def collision_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(group (n,), size (n,))``: an id per distinct code tuple and how many items share each row's tuple."""
    _, group, counts = np.unique(np.asarray(codes), axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    return group, counts[group]


def add_suffix(codes: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """``(n, L)`` codes -> ``(n, L + 1)``: the last column numbers the items sharing a tuple."""
    group, _ = collision_groups(codes)
    norms = np.linalg.norm(residual, axis=1)
    order = np.lexsort((np.arange(len(codes)), norms, group))  # by group, then residual norm, then row
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = rank
    return np.concatenate([codes, suffix[:, None]], axis=1)


def distinct_assign(residual: np.ndarray, centroids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Labels ``(n,)``: nearest centroid, except that rows sharing a code tuple get distinct centroids."""
    labels, _ = assign(residual, centroids)
    group, size = collision_groups(codes)
    largest = int(size.max()) if len(size) else 0
    if largest > len(centroids):
        raise UsageError(f"a code tuple is shared by {largest} items but the extra level has only "
                         f"{len(centroids)} centroids; use dedup 'suffix'")
    shared = np.flatnonzero(size > 1)
    for g in np.unique(group[shared]):
        rows = shared[group[shared] == g]
        dists = _sq_dists(residual[rows], centroids)  # (m, k)
        taken_rows, taken_cols = np.zeros(len(rows), bool), np.zeros(len(centroids), bool)
        for flat in np.argsort(dists, axis=None, kind="stable"):
            r, c = divmod(int(flat), len(centroids))
            if not taken_rows[r] and not taken_cols[c]:
                labels[rows[r]] = c
                taken_rows[r] = taken_cols[c] = True
                if taken_rows.all():
                    break
    return labels


def extra_level(residual: np.ndarray, codes: np.ndarray, k: int, *, niter: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train ``k`` centroids on ``residual`` and assign them collision-aware.

    Returns ``(codes (n, L + 1), centroids (k, d))``.
    """
    centroids = kmeans(residual, min(k, len(residual)), niter=niter, seed=seed)
    labels = distinct_assign(residual, centroids, codes)
    return np.concatenate([codes, labels[:, None]], axis=1), centroids
