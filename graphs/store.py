"""A built graph on disk without pickle: ``graph.safetensors`` (tensors) + ``graph.json`` (layout).

Tensor names are ``"<node_type>/<attr>"`` and ``"<src>__<rel>__<dst>/<attr>"``; ``graph.json`` holds
the node counts, edge types, scalar attributes and whatever ``meta`` the caller adds (the build
config, counts). :func:`load_graph` rebuilds the ``HeteroData``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, write_json

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

GRAPH_TENSORS = "graph.safetensors"
GRAPH_JSON = "graph.json"


def save_graph(graph: HeteroData, folder: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``graph`` into ``folder`` (tensors first, ``graph.json`` last, each atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {"node_types": {}, "edge_types": [], "scalars": {}, "meta": meta or {}}
    for node_type in graph.node_types:
        layout["node_types"][node_type] = int(graph[node_type].num_nodes)
        for key, value in graph[node_type].items():
            if isinstance(value, torch.Tensor):
                tensors[f"{node_type}/{key}"] = value.contiguous()
    for edge_type in graph.edge_types:
        layout["edge_types"].append(list(edge_type))
        for key, value in graph[edge_type].items():
            if isinstance(value, torch.Tensor):
                tensors[f"{'__'.join(edge_type)}/{key}"] = value.contiguous()
    for key, value in graph.items():
        if isinstance(value, (int, float, str)):
            layout["scalars"][key] = value
    with atomic_path(folder / GRAPH_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / GRAPH_JSON, layout)
    return folder


def load_graph(folder: str | Path) -> HeteroData:
    """Rebuild the ``HeteroData`` written by :func:`save_graph`; ``graph.meta`` holds the saved meta."""
    from torch_geometric.data import HeteroData

    folder = Path(folder)
    if not (folder / GRAPH_JSON).is_file() or not (folder / GRAPH_TENSORS).is_file():
        raise UsageError(f"{folder} is not a graph folder (needs {GRAPH_JSON} and {GRAPH_TENSORS}; "
                         "write one with `mmrec graph build`)")
    layout = json.loads((folder / GRAPH_JSON).read_text())
    tensors = load_file(str(folder / GRAPH_TENSORS))
    data = HeteroData()
    for node_type, n in layout["node_types"].items():
        data[node_type].num_nodes = n
    edge_types = {"__".join(e): tuple(e) for e in layout["edge_types"]}
    for name, tensor in tensors.items():
        owner, key = name.split("/", 1)
        if owner in edge_types:
            data[edge_types[owner]][key] = tensor
        elif owner in layout["node_types"]:
            data[owner][key] = tensor
        else:
            raise InputError(f"{folder / GRAPH_TENSORS}: tensor {name!r} belongs to no node or edge type of {GRAPH_JSON}")
    for key, value in layout["scalars"].items():
        data[key] = value
    data.meta = layout["meta"]
    return data
