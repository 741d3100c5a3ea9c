"""``mmrec graph build|expand|train|export``: the MMBee GIE jobs, each files in, files out, one report.

- :func:`graph_build`: behaviour log(s) -> graph folder (:func:`mmrec.graphs.save_graph`), config
  :class:`mmrec.graphs.GraphConfig`;
- :func:`graph_expand`: graph folder -> expansion store (Parquet, :func:`mmrec.graphs.write_expansions`),
  config :class:`GraphExpandConfig`;
- :func:`graph_train`: graph folder (+ author attributes, :func:`mmrec.graphs.read_author_features`)
  -> run folder, config :class:`mmrec.graphs.GraphCLConfig`;
- :func:`graph_export`: run folder -> node embeddings Parquet (:func:`mmrec.graphs.export_embeddings`).

A run folder is a :mod:`mmrec.runs` folder of kind ``graph``: ``model.safetensors`` (the GraphCL
encoder and head), ``config.json`` (the model's sizes, :func:`mmrec.graphs.graphcl.model_sizes`, and
the job: GraphCL config, graph folder, attribute source), ``metrics.json`` (the training summary), plus
``embeddings.safetensors`` (one ``(num_nodes, dim)`` tensor per node type, row ``i`` = node ``i``);
:func:`save_run` / :func:`load_run` write and read it, :func:`load_graphcl` rebuilds the model. No pickle.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save_file

from mmrec import runs
from mmrec.config import build_config
from mmrec.errors import UsageError
from mmrec.graphs.build import GraphConfig, build_graphs
from mmrec.graphs.export import export_embeddings
from mmrec.graphs.features import read_author_features
from mmrec.graphs.graphcl import GraphCL, GraphCLConfig, embed_nodes, fit_graphcl, model_from_sizes, model_sizes
from mmrec.graphs.metapath import DEFAULT_METAPATHS, expand_metapaths, write_expansions
from mmrec.graphs.store import load_graph, save_graph
from mmrec.io import atomic_path, output_folder
from mmrec.threads import announce_threads, use_threads

RUN_EMBEDDINGS = "embeddings.safetensors"


@dataclass
class GraphExpandConfig:
    """Which metapaths to expand and how many neighbours to keep (:func:`mmrec.graphs.expand_metapaths`)."""

    metapaths: tuple[str, ...] = field(default=DEFAULT_METAPATHS, metadata={
        "help": "metapaths such as user>author>author, author>user>author or user-watches>author>author"})
    k: int = field(default=20, metadata={"help": "neighbours kept per source"})
    chunk_nnz: int = field(default=1 << 23, metadata={"help": "bound on the entries of one chunk's product: the memory knob"})
    normalize: bool = field(default=True, metadata={"help": "multiply row-normalised edge weights (--no-normalize: raw weights)"})
    progress: bool = field(default=False, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if not self.metapaths:
            raise UsageError("no metapath given")
        if self.k < 1 or self.chunk_nnz < 1:
            raise UsageError(f"k and chunk_nnz must be >= 1, got k={self.k}, chunk_nnz={self.chunk_nnz}")


def _describe_logs(logs: Any) -> Any:
    if isinstance(logs, (list, tuple)):
        return [str(p) for p in logs]
    return "<table>" if hasattr(logs, "schema") else str(logs)


def graph_build(logs: Any, out: str | Path, *, config: GraphConfig | dict | str | None = None) -> dict[str, Any]:
    """Build the graphs from ``logs`` (:func:`mmrec.graphs.build_graphs`) into the folder ``out``;
    returns the summary (also in ``graph.json``): log rows, nodes and edges per type, seconds, config."""
    config = build_config(GraphConfig, config, "graph config")
    with output_folder(out):
        start = time.perf_counter()
        graph = build_graphs(logs, config=config)
        summary = {
            "logs": _describe_logs(logs), "log_rows": int(graph.log_rows),
            "nodes": {t: int(graph[t].num_nodes) for t in graph.node_types},
            "edges": {"__".join(e): int(graph[e].edge_index.shape[1]) for e in graph.edge_types},
            "seconds": round(time.perf_counter() - start, 3), "config": config.to_dict(),
        }
        save_graph(graph, out, meta=summary)
    return summary


def graph_expand(graph: str | Path, out: str | Path, *, config: GraphExpandConfig | dict | str | None = None) -> dict[str, Any]:
    """Expand the graph folder ``graph`` along the configured metapaths into the Parquet store ``out``;
    returns rows, sources and mean neighbours per metapath, seconds."""
    config = build_config(GraphExpandConfig, config, "graph expand config")
    data = load_graph(graph)
    start = time.perf_counter()
    table = expand_metapaths(data, config.metapaths, config.k, chunk_nnz=config.chunk_nnz, normalize=config.normalize,
                             progress=config.progress)
    seconds = time.perf_counter() - start
    write_expansions(table, out)
    lengths = pc.list_value_length(table.column("dst_ids")).to_numpy(zero_copy_only=False)
    names = np.asarray(table.column("metapath").to_numpy(zero_copy_only=False))
    per_path = {}
    for metapath in config.metapaths:
        mine = lengths[names == metapath]
        per_path[metapath] = {"sources": len(mine), "mean_neighbours": round(float(mine.mean()) if len(mine) else 0.0, 2)}
    return {"graph": str(graph), "out": str(out), "k": config.k, "rows": table.num_rows, "metapaths": per_path,
            "seconds": round(seconds, 3), "config": {**asdict(config), "metapaths": list(config.metapaths)}}


def save_run(out: str | Path, model: GraphCL, embeddings: dict[str, torch.Tensor], summary: dict[str, Any], *,
             sizes: dict[str, Any], job: dict[str, Any] | None = None) -> Path:
    """Write a run folder: the embeddings, then :func:`mmrec.runs.save_run` (``config.json`` last), atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / RUN_EMBEDDINGS) as tmp:
        save_file({t: e.contiguous() for t, e in embeddings.items()}, str(tmp))
    return runs.save_run(out, sizes, job, model.state_dict(), metrics=summary, kind="graph")


def load_run(run: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(embeddings per node type, training summary)`` of a run folder written by :func:`graph_train`."""
    run = Path(run)
    if not (run / RUN_EMBEDDINGS).is_file():
        raise UsageError(f"{run} is not a graph training run (needs {RUN_EMBEDDINGS}; write one with `mmrec graph train`)")
    runs.read_config(run, kind="graph")
    return load_file(str(run / RUN_EMBEDDINGS)), json.loads((run / runs.METRICS).read_text())


def load_graphcl(run: str | Path) -> GraphCL:
    """The trained GraphCL model of a run folder, in eval mode."""
    config, state, _, _ = runs.load_run(run, kind="graph")
    model = model_from_sizes(config["model"])
    model.load_state_dict(state)
    return model.eval()


def graph_train(
    graph: str | Path, out: str | Path, *, author_emb: Any = None, emb_column: str | None = None,
    logs: Any = None, config: GraphCLConfig | dict | str | None = None, threads: int | None = None,
) -> dict[str, Any]:
    """Pre-train GraphCL on the graph folder ``graph`` and write the run folder ``out``; returns ``train.json``.

    ``threads``: torch CPU threads (None: :func:`mmrec.threads.default_threads`). ``out`` is claimed
    first (:func:`mmrec.io.output_folder`), so a failed run leaves nothing there.
    ``author_emb``: author attributes (:func:`mmrec.graphs.read_author_features`: a table keyed by
    ``author_id``, or ``mmrec extract`` output whose segment keys ``logs`` maps to authors).
    """
    config = build_config(GraphCLConfig, config, "GraphCL config")
    with output_folder(out), use_threads(threads, what="graph train threads") as n:
        data = load_graph(graph)
        features, feature_report = {}, None
        if author_emb is not None:
            features["author"], feature_report = read_author_features(author_emb, data["author"].num_nodes,
                                                                      column=emb_column, logs=logs)
        if config.progress:
            announce_threads(n, threads)
        model, report = fit_graphcl(data, features=features, config=config)
        embeddings = embed_nodes(model, data, features=features, config=config)
        summary = {"graph": str(graph), "author_emb": str(author_emb) if author_emb is not None else None,
                   "features": feature_report, "config": config.to_dict(), "report": report,
                   "nodes": {t: int(e.shape[0]) for t, e in embeddings.items()}, "dim": config.dim}
        save_run(out, model, embeddings, summary, sizes=model_sizes(data, features=features, config=config),
                 job={"graph": str(graph), "author_emb": summary["author_emb"], "emb_column": emb_column, "config": config.to_dict()})
    return summary


def graph_export(run: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a run folder's node embeddings as Parquet (``node_type, node_id, vector``); returns counts."""
    embeddings, summary = load_run(run)
    export_embeddings(embeddings, None, out)
    return {"run": str(run), "out": str(out), "nodes": {t: int(e.shape[0]) for t, e in embeddings.items()},
            "dim": summary["dim"]}


__all__ = ["GraphExpandConfig", "graph_build", "graph_expand", "graph_export", "graph_train", "load_graphcl", "load_run", "save_run"]
