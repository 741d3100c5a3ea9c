"""Recall@1/10/100 of an index against exact search, QPS, and the recall-vs-QPS curve (``mmrec index eval``;
the job over index folders, with its PNG, is :func:`mmrec.pipelines.index.evaluate_index`).

Queries are either given (``queries``, an ``(q, d)`` array: recall over the whole index) or sampled
from the indexed embeddings (leave-one-out: each query's own row is left out of both result lists).
The exact results come from one streaming pass over the embeddings the index holds (an
:class:`~mmrec.store.EmbeddingSource`). The curve sweeps the index's search knob (``nprobe``,
``efSearch`` or the tree's ``beam``) up the tuning grid until recall@10 reaches 0.999.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex
from mmrec.index.exact import ExactKnn
from mmrec.index.tune import measure, sweep
from mmrec.store import EmbeddingSource, check_vectors, sample_rows

SWEEP_STOP = 0.999


def _curve(index: BaseIndex, queries: np.ndarray, truth: np.ndarray, k: int, exclude: np.ndarray | None) -> list[dict[str, Any]]:
    points = []
    for value in index.param_grid():
        points += sweep(index, queries, truth, k=k, exclude=exclude, values=[value])
        if points[-1]["recall"] >= SWEEP_STOP:
            break
    return points


def evaluate(
    index: BaseIndex,
    source: EmbeddingSource,
    *,
    queries: np.ndarray | None = None,
    n_queries: int = 1000,
    ks: tuple[int, ...] = (1, 10, 100),
    seed: int = 0,
) -> dict[str, Any]:
    """Recall@ks vs exact, QPS and latency of ``index`` over the embeddings of ``source`` (the rows it
    holds, in order), and the recall-vs-QPS ``curve`` of its search knob."""
    exclude = None
    if queries is None:
        exclude, queries, _ = sample_rows(source, n_queries, seed=seed)
    else:
        queries = check_vectors(queries, name="queries", dim=index.dim)
    knn = ExactKnn(queries, max(ks), metric=index.metric, exclude=exclude)
    for batch in source.batches():
        knn.add(batch.vectors)
    if knn.offset != index.n:
        raise UsageError(f"the embeddings hold {knn.offset} vectors, the index {index.n}: pass the data it was built from")
    truth = knn.result()[1]
    report: dict[str, Any] = {
        "kind": index.kind,
        "factory": index.info.get("factory"),
        "n": index.n,
        "dim": index.dim,
        "queries_from": "index rows (leave-one-out)" if exclude is not None else "given",
        "search_params": dict(index.info.get("search_params", {})),
        **measure(index, queries, truth, ks=ks, exclude=exclude),
    }
    if index.param_name:
        report["curve"] = _curve(index, queries, truth, 10 if 10 in ks else ks[0], exclude)
    return report
