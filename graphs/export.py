"""Node embeddings as Parquet: ``node_type`` (string), ``node_id`` (int64), ``vector`` (fixed-size list<float32>)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData


def export_embeddings(embeddings: dict[str, torch.Tensor], graph: HeteroData | None, path: str | Path) -> Path:
    """Write ``{node_type: (num_nodes, d)}`` (row ``i`` = the graph's node ``i``) atomically to ``path``.

    ``node_id`` is the graph's ``node_id`` of the row (the log's id; the row itself when ``graph`` is
    None, as for graphs from :func:`build_graphs`). All types share one ``d``.
    """
    dims = {t: int(e.shape[1]) for t, e in embeddings.items()}
    if len(set(dims.values())) != 1:
        raise UsageError(f"embeddings of every node type must have one width, got {dims}")
    (dim,) = set(dims.values())
    schema = pa.schema([pa.field("node_type", pa.string(), nullable=False), pa.field("node_id", pa.int64(), nullable=False),
                        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False)],
                       metadata={"dim": str(dim)})
    path = Path(path)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for node_type, vectors in embeddings.items():
            if graph is not None and (node_type not in graph.node_types or len(vectors) != graph[node_type].num_nodes):
                raise UsageError(f"embeddings[{node_type!r}] has {len(vectors)} rows; the graph has "
                                 f"{graph[node_type].num_nodes if node_type in graph.node_types else 'no such'} nodes")
            ids = graph[node_type].get("node_id") if graph is not None else None
            ids = torch.arange(len(vectors)) if ids is None else ids
            flat = pa.array(vectors.detach().float().cpu().numpy().reshape(-1), pa.float32())
            writer.write_table(pa.table({
                "node_type": pa.array([node_type] * len(vectors), pa.string()),
                "node_id": pa.array(ids.numpy(), pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
            }, schema=schema))
    return path


def read_node_embeddings(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{node_type: (node_ids (n,), vectors (n, d) float32)}`` from a file of :func:`export_embeddings`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"embeddings file not found: {path}")
    table = pq.read_table(path)
    missing = [c for c in ("node_type", "node_id", "vector") if c not in table.schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; have {table.schema.names}", field=missing[0])
    out = {}
    types = np.asarray(table.column("node_type").to_numpy(zero_copy_only=False))
    ids = table.column("node_id").to_numpy()
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32) if len(table) else np.zeros((0, 0), np.float32)
    for node_type in dict.fromkeys(types.tolist()):
        rows = types == node_type
        out[node_type] = (ids[rows], vectors[rows])
    return out
