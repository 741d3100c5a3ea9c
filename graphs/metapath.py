"""MMBee metapath interest expansion, computed offline into a Parquet store (docs/papers.md, "MMBee").

MMBee expands a user's sparse gifting sequence along metapaths such as User→Author→Author (authors
Swing-similar to the ones the user gifted) and Author→User→Author (authors gifted by the same users),
precomputed offline so serving only looks them up. Here a metapath is a chain of sparse matrix products:
each hop is the graph's edge type between the two node types, as a row-normalised (transition)
matrix ``P = D^-1 W``, and the score of ``dst`` for ``src`` is ``(P_1 P_2 ... P_h)[src, dst]`` — the sum
over paths of the product of their normalised edge weights (the probability that a walk following
the metapath, picking each edge by weight, ends at ``dst``). [I] The paper gives no formula; the
normalisation (``normalize=False`` uses the raw weights) stops heavy gifters and hub authors from
dominating.

Spelling: ``"user>author>author"``; a hop uses the default relation of its node-type pair
(user>author: ``gifts``, author>user: ``gifted_by``, author>author: ``swing``) or names one:
``"user-watches>author>author"``.

Excluded from a source's top-k ([I]): the source itself, and — when the path ends at the type the
first hop reaches — the nodes the first hop reaches directly (for user>author>author: the authors the
user already gifted), so the store holds *new* neighbours only. Sources with no candidate get no row.

The products run in torch sparse CSR over chunks of source rows, and the per-row top-k is taken on
the sparse result (a sort by row then float32 score, ties to the lower id). A chunk is the longest
run of rows whose product has at most ``chunk_nnz`` entries by an upper bound computed first (the
path's row-count product ``|A_1| |A_2| ... nnz(A_h rows)``, capped at the number of destinations;
a row over the bound gets a chunk of its own), so memory is bounded by ``chunk_nnz``, not by the graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

DEFAULT_METAPATHS = ("user>author>author", "author>user>author")
DEFAULT_RELATIONS = {("user", "author"): "gifts", ("author", "user"): "gifted_by", ("author", "author"): "swing"}
EXPANSION_SCHEMA = pa.schema([
    pa.field("src_type", pa.string(), nullable=False),
    pa.field("src_id", pa.int64(), nullable=False),
    pa.field("metapath", pa.string(), nullable=False),
    pa.field("dst_ids", pa.list_(pa.int64()), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),
])


def parse_metapath(metapath: str, edge_types: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """``"user>author>author"`` -> the edge types of its hops; an error lists the graph's edge types."""
    edge_types = list(edge_types)
    parts = metapath.split(">")
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"metapath {metapath!r} must be node types joined by '>', e.g. 'user>author>author'")
    hops = []
    src = parts[0].split("-")[0]
    names = [parts[0]] + parts[1:]
    for a, b in zip(names[:-1], names[1:]):
        relation = a.split("-", 1)[1] if "-" in a else None
        dst = b.split("-")[0]
        relation = relation or DEFAULT_RELATIONS.get((src, dst))
        if (src, relation, dst) not in edge_types:
            raise UsageError(f"metapath {metapath!r}: no edge type ({src!r}, {relation!r}, {dst!r}) in the graph; "
                             f"it has {edge_types}")
        hops.append((src, relation, dst))
        src = dst
    return hops


def transition_matrix(graph: HeteroData, edge_type: tuple[str, str, str], *, normalize: bool = True) -> torch.Tensor:
    """The edge type as a CSR matrix ``(n_src, n_dst)`` of (row-normalised) edge weights, float64."""
    src_type, _, dst_type = edge_type
    store = graph[edge_type]
    index = store.edge_index
    weight = store.get("edge_weight")
    weight = torch.ones(index.shape[1], dtype=torch.float64) if weight is None else weight.to(torch.float64)
    if (weight < 0).any() or not torch.isfinite(weight).all():
        raise InputError(f"edge type {edge_type}: edge weights must be finite and >= 0")
    shape = (graph[src_type].num_nodes, graph[dst_type].num_nodes)
    matrix = torch.sparse_coo_tensor(index, weight, shape).coalesce()  # sums repeated edges
    (rows, cols), values = matrix.indices(), matrix.values()
    if normalize:
        total = torch.zeros(shape[0], dtype=torch.float64).index_add_(0, rows, values)
        values = values / total[rows].clamp_min(1e-300)
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    return torch.sparse_csr_tensor(crow, cols, values, shape)


def _row_slice(matrix: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    crow = matrix.crow_indices()
    a, b = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(crow[start : stop + 1] - a, matrix.col_indices()[a:b], matrix.values()[a:b],
                                   (stop - start, matrix.shape[1]))


def topk_rows(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_rows: int, k: int):
    """Per row, the ``k`` largest positive entries of a sparse matrix given as COO triplets.

    Entries are ranked by their float32 value, ties (equal float32 values) by lower column first;
    ``rows < 2**31``, ``cols < 2**32``, ``values > 0``. Returns ``(counts (n_rows,), cols, values)``:
    row ``r``'s picks are the ``counts[r]`` consecutive entries after those of rows ``< r``, best first.
    """
    order = torch.argsort(rows * 2**32 + cols)  # (row, col) order; keys are distinct
    rows, cols, values = rows[order], cols[order], values[order].float()
    bits = values.view(torch.int32).long()  # the bits of a positive float32 increase with its value
    order = torch.sort(rows * 2**31 + (2**31 - 1 - bits), stable=True).indices  # by row, then value desc
    rows, cols, values = rows[order], cols[order], values[order]
    counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    keep = torch.arange(len(rows)) - starts[rows] < k
    return counts.clamp(max=k), cols[keep], values[keep]


def _known_keys(first: torch.Tensor, start: int, stop: int, n_dst: int) -> torch.Tensor:
    part = _row_slice(first, start, stop)
    rows = torch.repeat_interleave(torch.arange(stop - start), torch.diff(part.crow_indices()))
    return rows * n_dst + part.col_indices()


def _chunks(matrices: list[torch.Tensor], chunk_nnz: int) -> list[tuple[int, int]]:
    """Row ranges whose product has at most ``chunk_nnz`` entries (bound), one row at least."""
    n_dst = matrices[-1].shape[1]
    bound = torch.diff(matrices[-1].crow_indices()).double()
    for matrix in reversed(matrices[:-1]):
        ones = torch.sparse_csr_tensor(matrix.crow_indices(), matrix.col_indices(),
                                       torch.ones(matrix.col_indices().shape[0], dtype=torch.float64), matrix.shape)
        bound = torch.sparse.mm(ones, bound.clamp(max=n_dst)[:, None]).flatten()
    total = torch.cumsum(bound.clamp(max=n_dst), 0).numpy()
    ranges, start, n = [], 0, len(total)
    while start < n:
        before = total[start - 1] if start else 0.0
        stop = max(int(np.searchsorted(total, before + chunk_nnz, side="right")), start + 1)
        ranges.append((start, min(stop, n)))
        start = stop
    return ranges


def _expand_one(graph, metapath: str, k: int, chunk_nnz: int, normalize: bool, progress: bool) -> pa.Table:
    hops = parse_metapath(metapath, graph.edge_types)
    matrices = [transition_matrix(graph, hop, normalize=normalize) for hop in hops]
    src_type, dst_type = hops[0][0], hops[-1][2]
    exclude_first = len(hops) > 1 and hops[0][2] == dst_type
    n_dst = matrices[-1].shape[1]
    src_ids, offsets, dst_ids, scores = [], [np.zeros(1, np.int64)], [], []
    total = 0
    for start, stop in tqdm(_chunks(matrices, chunk_nnz), desc=f"expand {metapath}", unit="chunk", disable=not progress):
        product = _row_slice(matrices[0], start, stop)
        for matrix in matrices[1:]:
            product = torch.sparse.mm(product, matrix)  # (chunk, n_next) CSR
        rows = torch.repeat_interleave(torch.arange(stop - start), torch.diff(product.crow_indices()))
        cols, values = product.col_indices().long(), product.values()
        drop = values <= 0
        if src_type == dst_type:
            drop |= cols == rows + start
        if exclude_first:
            drop |= torch.isin(rows * n_dst + cols, _known_keys(matrices[0], start, stop, n_dst))
        rows, cols, values = rows[~drop], cols[~drop], values[~drop]
        counts, cols, values = topk_rows(rows, cols, values, stop - start, k)
        has = counts > 0
        src_ids.append((torch.nonzero(has).flatten() + start).numpy())
        counts = counts[has].numpy()
        offsets.append(total + np.cumsum(counts))
        total += int(counts.sum())
        dst_ids.append(cols.numpy())
        scores.append(values.numpy().astype(np.float32))
    src = np.concatenate(src_ids)
    offsets = pa.array(np.concatenate(offsets).astype(np.int32))
    return pa.table({
        "src_type": pa.array([src_type] * len(src), pa.string()),
        "src_id": pa.array(src, pa.int64()),
        "metapath": pa.array([metapath] * len(src), pa.string()),
        "dst_ids": pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(dst_ids), pa.int64())),
        "scores": pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(scores), pa.float32())),
    }, schema=EXPANSION_SCHEMA)


def expand_metapaths(
    graph: HeteroData,
    metapaths: str | Sequence[str] = DEFAULT_METAPATHS,
    k: int = 20,
    *,
    chunk_nnz: int = 1 << 23,
    normalize: bool = True,
    progress: bool = False,
) -> pa.Table:
    """Top-``k`` expanded neighbours of every source node along each metapath.

    Returns a table with columns ``src_type, src_id, metapath, dst_ids (list<int64>), scores
    (list<float32>)``, best first, one row per (metapath, source with at least one candidate).
    """
    if isinstance(metapaths, str):
        metapaths = (metapaths,)
    if not metapaths:
        raise UsageError("no metapath given")
    if k < 1 or chunk_nnz < 1:
        raise UsageError(f"k and chunk_nnz must be >= 1, got k={k}, chunk_nnz={chunk_nnz}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support is in beta|invariant checks)")
        return pa.concat_tables([_expand_one(graph, m, k, chunk_nnz, normalize, progress) for m in metapaths])


def write_expansions(table: pa.Table, path: str | Path) -> Path:
    """Write an expansion table atomically as Parquet (the offline store); returns the path."""
    if not table.schema.equals(EXPANSION_SCHEMA, check_metadata=False):
        raise UsageError(f"expansion table schema must be {EXPANSION_SCHEMA}, got {table.schema}")
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_expansions(path: str | Path) -> pa.Table:
    """Read an expansion store written by :func:`write_expansions`, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"expansion store not found: {path}")
    table = pq.read_table(path)
    missing = [f.name for f in EXPANSION_SCHEMA if f.name not in table.schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; have {table.schema.names}", field=missing[0])
    return table.select(EXPANSION_SCHEMA.names).cast(EXPANSION_SCHEMA)
