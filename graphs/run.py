"""The ``mmrec graph train`` job and its output folder.

A run folder holds ``model.safetensors`` (the GraphCL encoder and head), ``embeddings.safetensors``
(one ``(num_nodes, dim)`` tensor per node type, row ``i`` = node ``i``) and ``train.json`` (the
GraphCL config, the graph folder, the attribute source and the training report). No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mmrec.errors import UsageError
from mmrec.graphs.features import read_author_features
from mmrec.graphs.graphcl import GraphCLConfig, embed_nodes, fit_graphcl
from mmrec.graphs.store import load_graph
from mmrec.io import atomic_path, write_json

RUN_JSON = "train.json"


def train_run(
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


def load_run(run: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(embeddings per node type, train.json)`` of a run folder written by :func:`train_run`."""
    run = Path(run)
    if not (run / RUN_JSON).is_file() or not (run / "embeddings.safetensors").is_file():
        raise UsageError(f"{run} is not a graph training run (needs {RUN_JSON} and embeddings.safetensors; "
                         "write one with `mmrec graph train`)")
    return load_file(str(run / "embeddings.safetensors")), json.loads((run / RUN_JSON).read_text())
