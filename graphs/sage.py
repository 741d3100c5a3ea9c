"""A GraphSAGE-style encoder over the heterogeneous gifting graph (MMBee GIE node encoder).

GraphSAGE (Hamilton et al. 2017, eq. 1 with the mean aggregator): ``h_v' = W_r h_v + W_n mean_{u in N(v)} h_u``
per edge type (torch-geometric's ``SAGEConv``), summed over the edge types that end at a node type
(as ``HeteroConv`` with aggr ``sum`` does), ReLU between layers. MMBee pre-trains its graph nodes with
GraphCL on multimodal node attributes; [I] the paper names neither the encoder nor its size, so: node
inputs are a linear projection of the given attributes (author content embeddings from ``mmrec
extract``) or, for a node type without attributes, a learnable id embedding (``sparse=True``: only
the rows of a batch get gradients, so users scale to millions); edge weights are not used by the
aggregation.

On a sampled subgraph (:class:`NeighborSampler`, nodes and edges ordered by hop) layer ``l`` of ``L``
computes outputs only for the nodes within ``L - 1 - l`` hops of the seeds, over the edges into them —
the rest cannot reach the seeds' final vectors (torch-geometric's ``trim_to_layer`` idea, done here by
slicing, since the layers are called one edge type at a time with ``(x_src, x_dst)`` pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.nn import SAGEConv

EdgeType = tuple[str, str, str]


class HeteroSAGE(nn.Module):
    """``layers`` rounds of per-edge-type SAGE convolutions; :meth:`forward` maps inputs to ``(N_t, dim)``."""

    def __init__(self, num_nodes: dict[str, int], edge_types: Sequence[EdgeType], *, dim: int = 64,
                 layers: int = 2, feature_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        feature_dims = feature_dims or {}
        self.edge_types = [tuple(e) for e in edge_types]
        self.inputs = nn.ModuleDict({
            t: nn.Linear(feature_dims[t], dim) if t in feature_dims else nn.Embedding(n, dim, sparse=True)
            for t, n in num_nodes.items()
        })
        for module in self.inputs.values():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=dim**-0.5)
        self.convs = nn.ModuleList(
            nn.ModuleDict({"__".join(e): SAGEConv((dim, dim), dim) for e in self.edge_types}) for _ in range(layers)
        )

    def embed_inputs(self, node_ids: dict[str, torch.Tensor], features: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Input vectors ``(N_t, dim)`` of the nodes ``node_ids[t]`` (graph rows)."""
        out = {}
        for t, ids in node_ids.items():
            module = self.inputs[t]
            if isinstance(module, nn.Embedding):
                out[t] = module(ids)
            else:
                out[t] = module(features[t][ids.to(features[t].device)].to(ids.device))
        return out

    def forward(self, x: dict[str, torch.Tensor], edge_index: dict[EdgeType, torch.Tensor],
                num_sampled_nodes: dict[str, list[int]] | None = None,
                num_sampled_edges: dict[EdgeType, list[int]] | None = None) -> dict[str, torch.Tensor]:
        """Node vectors after the last layer: all nodes, or with the per-hop counts only the seeds' hop 0."""
        layers = len(self.convs)
        for i, convs in enumerate(self.convs):
            keep = layers - i  # hops still needed as destinations: 0 .. keep - 1
            size = {t: (sum(num_sampled_nodes[t][:keep]) if num_sampled_nodes else len(v)) for t, v in x.items()}
            out = {t: None for t in x}
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                index = edge_index[edge_type]
                if num_sampled_edges:
                    index = index[:, : sum(num_sampled_edges[edge_type][:keep])]
                h = convs["__".join(edge_type)]((x[src], x[dst][: size[dst]]), index)  # (size[dst], dim)
                out[dst] = h if out[dst] is None else out[dst] + h
            x = {t: (v if v is not None else x[t][: size[t]]) for t, v in out.items()}
            if i < layers - 1:
                x = {t: torch.relu(v) for t, v in x.items()}
        return x
