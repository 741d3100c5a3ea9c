"""Exact k-nearest neighbours over streamed blocks, and recall of approximate results against them.

:class:`ExactKnn` keeps a FAISS result heap for a fixed set of queries and folds in one database block
at a time (``faiss.knn`` per block, as faiss.contrib's ``knn_ground_truth``), so the database never
has to fit in memory and the exact pass can share a read with an index build. ``exclude`` gives each
query a row id to leave out (its own row when queries are sampled from the data: leave-one-out).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mmrec.errors import UsageError

METRICS = ("ip", "l2")


def faiss_module():
    """The ``faiss`` module, or a :class:`UsageError` naming the extra to install."""
    try:
        import faiss
    except ImportError:
        raise UsageError("mmrec.index needs FAISS: pip install 'mmrec[cpu]' (faiss-cpu) or 'mmrec[gpu]' (faiss-gpu)") from None
    return faiss


def faiss_metric(metric: str) -> int:
    faiss = faiss_module()
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


class ExactKnn:
    """Running exact top-``k`` of ``queries`` (q, d) over database blocks added in row order."""

    def __init__(self, queries: np.ndarray, k: int, *, metric: str = "ip", exclude: np.ndarray | None = None) -> None:
        faiss = faiss_module()
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.metric = metric
        self.exclude = None if exclude is None else np.asarray(exclude, dtype=np.int64)
        self._kk = k + (self.exclude is not None)  # one spare for the excluded row
        self._heap = faiss.ResultHeap(len(self.queries), self._kk, keep_max=metric == "ip")
        self.offset = 0

    def add(self, block: np.ndarray) -> None:
        """Fold in the next ``(m, d)`` rows of the database."""
        faiss = faiss_module()
        kk = min(self._kk, len(block))
        dist, ids = faiss.knn(self.queries, np.ascontiguousarray(block, dtype=np.float32), kk, metric=faiss_metric(self.metric))
        if kk < self._kk:  # pad a short block so the heap sees a full row
            pad = self._kk - kk
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=-np.inf if self.metric == "ip" else np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        self._heap.add_result(dist, np.where(ids >= 0, ids + self.offset, -1))
        self.offset += len(block)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (q, k), rows (q, k))``, best first; rows -1 where the database had fewer than k."""
        self._heap.finalize()
        return drop_excluded(self._heap.D, self._heap.I, self.exclude, self.k)


def drop_excluded(scores: np.ndarray, rows: np.ndarray, exclude: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's excluded row from its result list and keep the first ``k``."""
    if exclude is None:
        return scores[:, :k], rows[:, :k]
    keep = rows != exclude[:, None]  # (q, k+1)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept entries first, in rank order
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def exact_knn(blocks: Iterable[np.ndarray], queries: np.ndarray, k: int, *, metric: str = "ip",
              exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(scores, rows)`` of ``queries`` over the concatenation of ``blocks``."""
    knn = ExactKnn(queries, k, metric=metric, exclude=exclude)
    for block in blocks:
        knn.add(block)
    return knn.result()


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / k (rows; -1 entries never match)."""
    k = min(k, found.shape[1], truth.shape[1])
    hits = [len(np.intersect1d(f[:k][f[:k] >= 0], t[:k][t[:k] >= 0])) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)
