"""A GraphSAGE-style encoder over the heterogeneous gifting graph (MMBee GIE node encoder).

GraphSAGE (Hamilton et al. 2017, eq. 1 with the mean aggregator): ``h_v' = W_r h_v + W_n mean_{u in N(v)} h_u``
per edge type (torch-geometric's ``SAGEConv``), summed over the edge types that end at a node type
(``HeteroConv``, aggr ``sum``), ReLU between layers. MMBee pre-trains its graph nodes with GraphCL on
multimodal node attributes; [I] the paper names neither the encoder nor its size, so: node inputs
are a linear projection of the given attributes (author content embeddings from ``mmrec extract``)
or, for a node type without attributes, a learnable id embedding (``sparse=True``: only the rows of
a batch get gradients, so users scale to millions); edge weights are not used by the aggregation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv


class HeteroSAGE(nn.Module):
    """``layers`` rounds of per-edge-type SAGE convolutions; :meth:`forward` maps inputs to ``(N_t, dim)``."""

    def __init__(self, num_nodes: dict[str, int], edge_types: Sequence[tuple[str, str, str]], *, dim: int = 64,
                 layers: int = 2, feature_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        feature_dims = feature_dims or {}
        self.node_types = list(num_nodes)
        self.inputs = nn.ModuleDict({
            t: nn.Linear(feature_dims[t], dim) if t in feature_dims else nn.Embedding(n, dim, sparse=True)
            for t, n in num_nodes.items()
        })
        for t, module in self.inputs.items():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=dim**-0.5)
        self.convs = nn.ModuleList(
            HeteroConv({tuple(e): SAGEConv((dim, dim), dim) for e in edge_types}, aggr="sum") for _ in range(layers)
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

    def forward(self, x: dict[str, torch.Tensor], edge_index: dict[tuple[str, str, str], torch.Tensor]) -> dict[str, torch.Tensor]:
        for i, conv in enumerate(self.convs):
            out = conv(x, edge_index)
            x = {t: out.get(t, torch.zeros_like(x[t])) for t in x}  # a type no edge reaches keeps zeros
            if i < len(self.convs) - 1:
                x = {t: torch.relu(v) for t, v in x.items()}
        return x
