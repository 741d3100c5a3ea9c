"""Tuning an index's search knob to a recall target, and measuring recall@k, QPS and latency.

Queries come with exact results (:mod:`mmrec.index.exact`). When queries are rows of the index
(``exclude`` = their own rows) each query's own row is dropped from both lists: leave-one-out.
:func:`tune` doubles the knob (``nprobe``, ``efSearch``, ``beam``) until recall@k reaches the target,
then bisects down to the smallest value that still does; if no value reaches it, the smallest value
with the best recall is kept and ``target_reached`` is false. QPS is batch throughput (all queries in
one call, every FAISS thread); ``ms_per_query`` is the mean latency of one-query calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.index.exact import drop_excluded, recall_at

if TYPE_CHECKING:
    from mmrec.index.base import BaseIndex

LATENCY_QUERIES = 100
MIN_TIMING_S = 0.2


def search_excluding(index: BaseIndex, queries: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` with each query's ``exclude`` row (if any) left out of its top ``k``."""
    scores, rows = index.search(queries, k + (exclude is not None))
    return drop_excluded(scores, rows, exclude, k)


def throughput(index: BaseIndex, queries: np.ndarray, k: int) -> float:
    """Queries per second searching the whole batch at once (repeated to at least 0.2 s)."""
    done, start = 0, time.perf_counter()
    while True:
        index.search(queries, k)
        done += len(queries)
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_TIMING_S:
            return done / elapsed


def latency_ms(index: BaseIndex, queries: np.ndarray, k: int) -> float:
    """Mean milliseconds of a one-query search over the first 100 queries."""
    sample = queries[:LATENCY_QUERIES]
    start = time.perf_counter()
    for i in range(len(sample)):
        index.search(sample[i : i + 1], k)
    return (time.perf_counter() - start) / len(sample) * 1000


def measure(index: BaseIndex, queries: np.ndarray, truth: np.ndarray, *, ks: tuple[int, ...] = (1, 10), exclude: np.ndarray | None = None,
            timing: bool = True) -> dict[str, Any]:
    """Recall@k for each k in ``ks`` against ``truth`` (q, ≥max ks) rows, plus QPS and latency."""
    kmax = max(ks)
    _, rows = search_excluding(index, queries, kmax, exclude)
    out: dict[str, Any] = {"recall": {str(k): round(recall_at(rows, truth, k), 4) for k in ks}, "queries": len(queries)}
    if timing:
        out["qps"] = round(throughput(index, queries, kmax), 1)
        out["ms_per_query"] = round(latency_ms(index, queries, kmax), 4)
    return out


def _recall(index: BaseIndex, value: int, queries: np.ndarray, truth: np.ndarray, k: int, exclude: np.ndarray | None) -> float:
    index.set_param(value)
    return recall_at(search_excluding(index, queries, k, exclude)[1], truth, k)


def tune(index: BaseIndex, queries: np.ndarray, truth: np.ndarray, *, k: int, target: float, exclude: np.ndarray | None = None) -> dict[str, Any]:
    """Set the index's knob to the smallest value reaching recall@k ≥ ``target``; returns the trials."""
    grid = index.param_grid()
    if not grid:
        return {"param": None}
    trials: dict[int, float] = {}
    for value in grid:
        trials[value] = _recall(index, value, queries, truth, k, exclude)
        if trials[value] >= target:
            break
    passing = [v for v in trials if trials[v] >= target]
    if passing:
        hi = min(passing)
        lo = max([v for v in trials if v < hi], default=hi - 1)
        while hi - lo > 1 and hi > 1:  # bisect (lo fails, hi passes)
            mid = (lo + hi) // 2
            trials[mid] = _recall(index, mid, queries, truth, k, exclude)
            lo, hi = (lo, mid) if trials[mid] >= target else (mid, hi)
        best = hi
    else:
        top = max(trials.values())
        best = min(v for v in trials if trials[v] >= top - 1e-9)
    index.set_param(best)
    return {
        "param": index.param_name,
        "value": best,
        "target_recall": target,
        "target_reached": trials[best] >= target,
        "trials": {str(v): round(r, 4) for v, r in sorted(trials.items())},
    }


def sweep(index: BaseIndex, queries: np.ndarray, truth: np.ndarray, *, k: int = 10, exclude: np.ndarray | None = None,
          values: list[int] | None = None) -> list[dict[str, Any]]:
    """Recall@k and QPS at each knob value (the grid by default); restores the current value."""
    current = index.info.get("search_params", {}).get(index.param_name) if index.param_name else None
    points = []
    for value in values if values is not None else index.param_grid() or [None]:
        if value is not None:
            index.set_param(value)
        rows = search_excluding(index, queries, k, exclude)[1]
        points.append({"value": value, "recall": round(recall_at(rows, truth, k), 4), "qps": round(throughput(index, queries, k), 1)})
    if current is not None:
        index.set_param(current)
    return points
