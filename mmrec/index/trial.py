"""HNSW or IVF? A trial on a sample, for ``factory="auto"`` when both fit the budgets.

:func:`mmrec.index.select.choose_index` orders the families from the budgets alone and prefers HNSW
to IVF when both fit. Which of the two is faster *at the recall target* depends on the data: on
clustered vectors with high-dimensional spread inside the clusters, HNSW's graph needs a very wide
search (efSearch ≈ 2800 for recall@10 0.97 on 1M × 128 here) while IVF finds a query's neighbours in
a few lists. So when the first fitting family is HNSW and an IVF family also fits, both are built on a
uniform sample (``trial_rows`` vectors, the tuning queries among them), each is tuned to the recall
target there (leave-one-out, :mod:`mmrec.index.tune`), and its one-query latency is measured and
scaled to the full size: HNSW by ``log n / log m`` (graph depth), IVF by ``√(n/m)`` (with ``nlist``
∝ √n, the lists scanned grow as √n). The family with the lower scaled latency among those that
reach the target is built; the trial's figures go to ``index.json`` under ``selection.trial``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mmrec.index.exact import exact_knn
from mmrec.index.select import Candidate, candidates, default_nlist, family_of
from mmrec.index.tune import latency_ms, tune


def trial_pair(n: int, dim: int, *, max_memory: Any, max_query_ms: float | None) -> tuple[Candidate, Candidate] | None:
    """(HNSW, IVF) candidates to try when HNSW is the budgets' first choice and an IVF family also fits."""
    fitting = [c for c in candidates(n, dim, max_memory=max_memory, max_query_ms=max_query_ms) if c.fits_memory and c.fits_latency]
    if not fitting or fitting[0].family != "hnsw":
        return None
    ivf = next((c for c in fitting if c.family in ("ivf_flat", "ivf_sq8")), None)
    return (fitting[0], ivf) if ivf else None


def _scaled(factory: str, m: int) -> str:
    """The factory string sized for ``m`` vectors (IVF lists scale with √m)."""
    if "IVF" not in factory:
        return factory
    return f"IVF{default_nlist(m)},{factory.split(',', 1)[1]}"


def run_trial(
    pair: tuple[Candidate, Candidate],
    sample: np.ndarray,
    n_queries: int,
    n: int,
    *,
    metric: str,
    target: float,
    k: int,
) -> dict[str, Any]:
    """Build, tune and time both candidates on ``sample`` (its first ``n_queries`` rows are the
    queries); returns the chosen full-size factory and the figures."""
    from mmrec.index.faiss_index import FaissIndex  # faiss_index imports this module

    m = len(sample)
    exclude = np.arange(n_queries)
    queries = sample[:n_queries]
    truth = exact_knn([sample], queries, k, metric=metric, exclude=exclude)[1]
    tried = []
    for cand in pair:
        start = time.perf_counter()
        index = FaissIndex.from_array(sample, _scaled(cand.factory, m), metric=metric)
        tuning = tune(index, queries, truth, k=k, target=target, exclude=exclude)
        ms = latency_ms(index, queries, k)
        scale = math.log(n) / math.log(m) if cand.family == "hnsw" else math.sqrt(n / m)
        tried.append(
            {
                "family": cand.family,
                "factory": cand.factory,
                "trial_factory": _scaled(cand.factory, m),
                "param": {tuning["param"]: tuning["value"]},
                "recall": tuning["trials"][str(tuning["value"])],
                "target_reached": tuning["target_reached"],
                "trial_ms_per_query": round(ms, 4),
                "scaled_ms_per_query": round(ms * scale, 4),
                "trial_s": round(time.perf_counter() - start, 2),
            }
        )
    reaching = [t for t in tried if t["target_reached"]] or tried
    best = min(reaching, key=lambda t: t["scaled_ms_per_query"])
    return {"rows": m, "queries": n_queries, "tried": tried, "chosen": best["factory"], "family": family_of(best["factory"])}
