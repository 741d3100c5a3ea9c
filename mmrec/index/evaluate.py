"""``mmrec index eval``: recall@1/10/100 against exact search, QPS, and a recall-vs-QPS curve.

Queries are either given (``queries``, an ``(q, d)`` array: recall over the whole index) or sampled
from the indexed embeddings (leave-one-out: each query's own row is left out of both result lists).
The exact results come from one streaming pass over the embeddings the index was built from (the
``source`` and ``adds`` recorded in ``index.json``, or ``data=``). The curve sweeps the index's search
knob (``nprobe``, ``efSearch`` or the tree's ``beam``) up the tuning grid until recall@10 reaches
0.999 and plots recall@10 against QPS (matplotlib, Agg backend), the tuned setting marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmrec.errors import UsageError
from mmrec.index.api import load_index
from mmrec.index.base import BaseIndex
from mmrec.index.exact import ExactKnn
from mmrec.store import EmbeddingSource, open_source, sample_rows
from mmrec.index.tune import measure, sweep
from mmrec.io import atomic_path, write_json
from mmrec.quantization.kmeans import check_vectors

SWEEP_STOP = 0.999


def _recorded_sources(index: BaseIndex) -> list[str]:
    parts = [index.info["source"], *(add["source"] for add in index.info.get("adds", []))]
    if any(p["type"] != "parquet" for p in parts):
        raise UsageError("this index was built (or added to) from in-memory arrays: pass the embeddings as data=")
    return [f for p in parts for f in p["files"]]


def _curve(index: BaseIndex, queries: np.ndarray, truth: np.ndarray, k: int, exclude: np.ndarray | None) -> list[dict[str, Any]]:
    points = []
    for value in index.param_grid():
        points += sweep(index, queries, truth, k=k, exclude=exclude, values=[value])
        if points[-1]["recall"] >= SWEEP_STOP:
            break
    return points


def plot_curve(points: list[dict[str, Any]], path: str | Path, *, title: str, tuned: Any = None, k: int = 10) -> Path:
    """Write recall@k vs QPS (log scale) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([p["qps"] for p in points], [p["recall"] for p in points], marker="o")
    for p in points:
        if p["value"] is not None:
            ax.annotate(str(p["value"]), (p["qps"], p["recall"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if tuned is not None and p["value"] == tuned:
            ax.plot([p["qps"]], [p["recall"]], marker="*", markersize=14, color="tab:red", label=f"tuned ({tuned})")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (batch)")
    ax.set_ylabel(f"recall@{k} vs exact")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if tuned is not None:
        ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def evaluate_index(
    index: BaseIndex | str | Path,
    data: Any = None,
    *,
    queries: np.ndarray | None = None,
    n_queries: int = 1000,
    ks: tuple[int, ...] = (1, 10, 100),
    seed: int = 0,
    png: str | Path | None = None,
    out_json: str | Path | None = None,
) -> dict[str, Any]:
    """Recall@ks vs exact, QPS and latency of an index (object or folder); the curve to ``png``."""
    folder = None if isinstance(index, BaseIndex) else Path(index)
    if folder is not None:
        index = load_index(folder)
    source: EmbeddingSource = open_source(data if data is not None else _recorded_sources(index), column=index.info["column"], dim=index.dim)
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
    k = 10 if 10 in ks else ks[0]
    if index.param_name:
        report["curve"] = _curve(index, queries, truth, k, exclude)
    if png is not None or folder is not None:
        png = Path(png) if png is not None else folder / "recall-qps.png"
        points = report.get("curve") or [{"value": None, "recall": report["recall"][str(k)], "qps": report["qps"]}]
        title = f"{index.info.get('factory') or index.kind}: {index.n} x {index.dim}"
        report["png"] = str(plot_curve(points, png, title=title, tuned=report["search_params"].get(index.param_name), k=k))
    if out_json is not None:
        write_json(out_json, report)
    return report
