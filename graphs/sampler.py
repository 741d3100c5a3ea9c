"""Vectorised neighbour sampling over a ``HeteroData`` in plain torch (GraphSAGE mini-batches).

GraphSAGE (Hamilton et al. 2017, Algorithm 2) trains on mini-batches: for a batch of seed nodes,
sample up to ``fanout[h]`` neighbours per node at hop ``h`` and run the layers on that subgraph only,
so memory depends on the batch and the fanouts, not on the graph. Neighbours are the sources of
the edges *into* a node (messages flow along ``edge_index`` from source to destination).

Why not torch-geometric's ``NeighborLoader``: it needs ``pyg-lib`` (not on PyPI) or ``torch-sparse``
(a ~10-minute source build every CI run); without them it raises an ImportError (checked with
torch-geometric 2.8). So this sampler keeps a CSC index per edge type and samples with ``torch.rand``
and pointer arithmetic, all nodes of a hop at once:

- a node with at most ``fanout`` in-neighbours keeps all of them;
- otherwise ``fanout`` picks are drawn with replacement and duplicates dropped ([I] GraphSAGE samples
  a fixed-size set with replacement; dropping repeats keeps each edge once, so a node may get fewer);
- every node is expanded once, at the first hop that reaches it; nodes are relabelled per type in
  order of discovery, so the seeds are the first ``batch_size`` nodes of their type, then the nodes
  first reached at hop 1, and so on; edges are stored hop by hop too. ``num_sampled_nodes[t][h]`` and
  ``num_sampled_edges[e][h]`` give the counts per hop (as in torch-geometric's loaders), so a layer
  can skip the outer hops it does not need (:class:`HeteroSAGE`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from mmrec.errors import UsageError

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData


class NeighborSampler:
    """Sample multi-hop neighbourhoods of seed nodes of a heterogeneous graph.

    ``fanouts[h]``: the most in-neighbours per node and edge type at hop ``h``. ``edge_types``
    defaults to all of the graph's. :meth:`sample` returns a ``HeteroData`` subgraph with ``node_id``
    (the graph's row of each local node) and ``num_sampled_nodes`` per node type, ``edge_index``
    (local ids) and ``num_sampled_edges`` per edge type, and ``batch_size`` on the seed type.
    """

    def __init__(self, graph: HeteroData, fanouts: Sequence[int], *,
                 edge_types: Iterable[tuple[str, str, str]] | None = None, seed: int = 0) -> None:
        if not fanouts or any(f < 1 for f in fanouts):
            raise UsageError(f"fanouts must be a non-empty list of ints >= 1, got {list(fanouts)}")
        self.fanouts = [int(f) for f in fanouts]
        self.num_nodes = {t: int(graph[t].num_nodes) for t in graph.node_types}
        self.edge_types = [tuple(e) for e in (edge_types if edge_types is not None else graph.edge_types)]
        self.csc: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for edge_type in self.edge_types:
            src, dst = graph[edge_type].edge_index
            order = torch.argsort(dst, stable=True)
            counts = torch.bincount(dst, minlength=self.num_nodes[edge_type[2]])
            colptr = torch.zeros(len(counts) + 1, dtype=torch.int64)
            colptr[1:] = torch.cumsum(counts, 0)
            self.csc[edge_type] = (colptr, src[order].contiguous())
        self.generator = torch.Generator().manual_seed(seed)
        self._local = {t: torch.full((n,), -1, dtype=torch.int64) for t, n in self.num_nodes.items()}

    def degree(self, node_type: str) -> torch.Tensor:
        """In-degree of every node of ``node_type``, summed over the sampled edge types."""
        out = torch.zeros(self.num_nodes[node_type], dtype=torch.int64)
        for (_, _, dst), (colptr, _) in self.csc.items():
            if dst == node_type:
                out += torch.diff(colptr)
        return out

    def _neighbours(self, edge_type, dst: torch.Tensor, fanout: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(position in dst, source node)`` of the sampled edges into ``dst``."""
        colptr, sources = self.csc[edge_type]
        start = colptr[dst]
        degree = colptr[dst + 1] - start
        take = degree.clamp(max=fanout)
        owner = torch.repeat_interleave(torch.arange(len(dst)), take)  # (E,) which dst node
        within = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(take, 0) - take, take)
        drawn = (torch.rand(len(owner), generator=self.generator) * degree[owner]).long()
        offset = torch.where(degree[owner] <= fanout, within, drawn)
        src = sources[start[owner] + offset]
        pairs = torch.unique(owner * self.num_nodes[edge_type[0]] + src)  # drop repeated draws
        return pairs // self.num_nodes[edge_type[0]], pairs % self.num_nodes[edge_type[0]]

    def sample(self, seed_type: str, seeds: torch.Tensor) -> HeteroData:
        """The sampled subgraph around ``seeds`` (distinct node rows of ``seed_type``)."""
        from torch_geometric.data import HeteroData

        seeds = torch.as_tensor(seeds, dtype=torch.int64)
        if seed_type not in self.num_nodes:
            raise UsageError(f"unknown node type {seed_type!r}; the graph has {list(self.num_nodes)}")
        if len(seeds) and (seeds.min() < 0 or seeds.max() >= self.num_nodes[seed_type]):
            raise UsageError(f"seed ids must be in 0..{self.num_nodes[seed_type] - 1}")
        if len(torch.unique(seeds)) != len(seeds):
            raise UsageError("seed ids must be distinct")
        nodes = {t: [] for t in self.num_nodes}
        count = dict.fromkeys(self.num_nodes, 0)
        edges: dict[tuple[str, str, str], list[torch.Tensor]] = {e: [] for e in self.edge_types}
        nodes[seed_type].append(seeds)
        self._local[seed_type][seeds] = torch.arange(len(seeds))
        count[seed_type] = len(seeds)
        frontier = {seed_type: seeds}
        per_hop_nodes = {t: [len(seeds) if t == seed_type else 0] for t in self.num_nodes}
        per_hop_edges: dict[tuple[str, str, str], list[int]] = {e: [] for e in self.edge_types}
        try:
            for fanout in self.fanouts:
                found: dict[str, list[torch.Tensor]] = {}
                for edge_type in self.edge_types:
                    per_hop_edges[edge_type].append(0)
                for edge_type in self.edge_types:
                    src_type, _, dst_type = edge_type
                    if dst_type not in frontier or not len(frontier[dst_type]):
                        continue
                    dst = frontier[dst_type]
                    owner, src = self._neighbours(edge_type, dst, fanout)
                    local = self._local[src_type]
                    new = torch.unique(src[local[src] < 0])
                    local[new] = count[src_type] + torch.arange(len(new))
                    count[src_type] += len(new)
                    nodes[src_type].append(new)
                    found.setdefault(src_type, []).append(new)
                    edges[edge_type].append(torch.stack([local[src], self._local[dst_type][dst[owner]]]))
                    per_hop_edges[edge_type][-1] = len(src)
                frontier = {t: torch.cat(v) for t, v in found.items()}
                for node_type in self.num_nodes:
                    per_hop_nodes[node_type].append(len(frontier.get(node_type, ())))
            data = HeteroData()
            for node_type, parts in nodes.items():
                data[node_type].node_id = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
                data[node_type].num_nodes = count[node_type]
                data[node_type].num_sampled_nodes = per_hop_nodes[node_type]
            for edge_type, parts in edges.items():
                data[edge_type].edge_index = torch.cat(parts, 1) if parts else torch.zeros((2, 0), dtype=torch.int64)
                data[edge_type].num_sampled_edges = per_hop_edges[edge_type]
            data[seed_type].batch_size = len(seeds)
            return data
        finally:
            for node_type, parts in nodes.items():
                for part in parts:
                    self._local[node_type][part] = -1
