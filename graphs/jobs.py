"""The ``mmrec graph build|expand|train|export`` jobs: each reads and writes files and returns a summary.

- :func:`graph_build`: log(s) -> graph folder (:func:`save_graph`), with the build config and counts;
- :func:`graph_expand`: graph folder -> expansion store (Parquet, :func:`write_expansions`);
- :func:`graph_train`: graph folder (+ author attributes) -> run folder;
- :func:`graph_export`: run folder -> node embeddings Parquet (:func:`export_embeddings`).

A run folder holds ``model.safetensors`` (the GraphCL encoder and head), ``embeddings.safetensors``
(one ``(num_nodes, dim)`` tensor per node type, row ``i`` = node ``i``) and ``train.json`` (the
GraphCL config, the graph folder, the attribute source and the training report). No pickle.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save_file

from mmrec.errors import UsageError
from mmrec.graphs.build import GraphConfig, build_graphs
from mmrec.graphs.export import export_embeddings
from mmrec.graphs.features import read_author_features
from mmrec.graphs.graphcl import GraphCLConfig, embed_nodes, fit_graphcl
from mmrec.graphs.metapath import DEFAULT_METAPATHS, expand_metapaths, write_expansions
from mmrec.graphs.store import load_graph, save_graph
from mmrec.io import atomic_path, write_json

RUN_JSON = "train.json"


def graph_build(logs: Any, out: str | Path, *, config: GraphConfig | dict | None = None) -> dict[str, Any]:
    """Build the graphs from ``logs`` (:func:`build_graphs`) into the folder ``out``; returns the summary."""
    config = GraphConfig.build(config)
    start = time.perf_counter()
    graph = build_graphs(logs, config=config)
    summary = {
        "logs": [str(p) for p in logs] if isinstance(logs, (list, tuple)) else "<table>" if hasattr(logs, "schema") else str(logs),
        "log_rows": int(graph.log_rows),
        "nodes": {t: int(graph[t].num_nodes) for t in graph.node_types},
        "edges": {"__".join(e): int(graph[e].edge_index.shape[1]) for e in graph.edge_types},
        "seconds": round(time.perf_counter() - start, 3), "config": config.to_dict(),
    }
    save_graph(graph, out, meta=summary)
    return summary


def graph_expand(graph: str | Path, out: str | Path, *, metapaths: Sequence[str] = DEFAULT_METAPATHS, k: int = 20,
                 chunk_nnz: int = 1 << 23, normalize: bool = True, progress: bool = False) -> dict[str, Any]:
    """Expand the graph folder ``graph`` along ``metapaths`` into the Parquet store ``out``; returns counts."""
    data = load_graph(graph)
    start = time.perf_counter()
    table = expand_metapaths(data, metapaths, k, chunk_nnz=chunk_nnz, normalize=normalize, progress=progress)
    seconds = time.perf_counter() - start
    write_expansions(table, out)
    lengths = pc.list_value_length(table.column("dst_ids")).to_numpy(zero_copy_only=False)
    names = np.asarray(table.column("metapath").to_numpy(zero_copy_only=False))
    per_path = {}
    for metapath in ([metapaths] if isinstance(metapaths, str) else metapaths):
        mine = lengths[names == metapath]
        per_path[metapath] = {"sources": len(mine), "mean_neighbours": round(float(mine.mean()) if len(mine) else 0.0, 2)}
    return {"graph": str(graph), "out": str(out), "k": k, "rows": table.num_rows, "metapaths": per_path,
            "seconds": round(seconds, 3)}


def graph_train(
    graph: str | Path, out: str | Path, *, author_emb: str | Path | None = None, emb_column: str | None = None,
    logs: Any = None, config: GraphCLConfig | dict | None = None,
) -> dict[str, Any]:
    """Pre-train GraphCL on the graph folder ``graph`` and write the run folder ``out``; returns ``train.json``.

    ``author_emb``: author attributes (:func:`read_author_features`; segment-keyed files need ``logs``).
    """
    config = GraphCLConfig.build(config)
    data = load_graph(graph)
    features, feature_report = {}, None
    if author_emb is not None:
        features["author"], feature_report = read_author_features(author_emb, data["author"].num_nodes,
                                                                  column=emb_column, logs=logs)
    model, report = fit_graphcl(data, features=features, config=config)
    embeddings = embed_nodes(model, data, features=features, config=config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(out / "embeddings.safetensors") as tmp:
        save_file({t: e.contiguous() for t, e in embeddings.items()}, str(tmp))
    summary = {"graph": str(graph), "author_emb": str(author_emb) if author_emb else None, "features": feature_report,
               "config": config.to_dict(), "report": report,
               "nodes": {t: int(e.shape[0]) for t, e in embeddings.items()}, "dim": config.dim}
    write_json(out / RUN_JSON, summary)
    return summary


def graph_export(run: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a run folder's node embeddings as Parquet (``node_type, node_id, vector``)."""
    embeddings, summary = load_run(run)
    export_embeddings(embeddings, None, out)
    return {"run": str(run), "out": str(out), "nodes": {t: int(e.shape[0]) for t, e in embeddings.items()},
            "dim": summary["dim"]}


def load_run(run: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(embeddings per node type, train.json)`` of a run folder written by :func:`graph_train`."""
    run = Path(run)
    if not (run / RUN_JSON).is_file() or not (run / "embeddings.safetensors").is_file():
        raise UsageError(f"{run} is not a graph training run (needs {RUN_JSON} and embeddings.safetensors; "
                         "write one with `mmrec graph train`)")
    return load_file(str(run / "embeddings.safetensors")), json.loads((run / RUN_JSON).read_text())
