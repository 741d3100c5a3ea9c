"""Item features and the item-item graph of UniCDR+ (arXiv 2409.04540, aspects 1 and 2).

- Features ([I] on Amazon there is no content, so: id embedding + an embedding of the log2 training
  degree bucket; plus a linear projection of multimodal item embeddings when the data carries them,
  ``CDRData.item_content``, read by :func:`mmrec.crossdomain.files.read_item_embeddings` from the
  mmrec extract layout: ``key`` = ``"<domain>:<item id>"`` and a fixed-size-list vector column).
- Graph: items of both domains are nodes (domain 0 first); two items are linked when the same user
  interacted with both in training, weighted by the number of such users; each item keeps its
  ``topk`` heaviest partners and the graph is made undirected. [I] Cross-domain edges come from the
  users active in both domains (training files only) and carry the multi-hop signal a cold-start user
  needs: their other-domain items reach target items in one hop.
- Propagation: LightGCN (He et al. 2020) ``x_{k+1} = D^{-1/2} A D^{-1/2} x_k``, output the mean of
  layers 0..K, full-batch every step. :class:`SymmetricLGConv` is a PyG ``MessagePassing`` layer whose
  ``message_and_aggregate`` is one CSR sparse-dense product; [I] because the normalised adjacency is
  symmetric its backward reuses the same CSR matrix (PyG's ``LGConv`` on an ``edge_index`` scatters and
  transposes, 5-10x slower on CPU here: 2.5 s per step for two layers on the Sport-Cloth graph).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from mmrec.errors import UsageError


def degree_buckets(pairs: np.ndarray, n_items: int, *, buckets: int = 16) -> torch.Tensor:
    """``floor(log2(1 + degree))`` capped at ``buckets - 1``: ``(n_items,)`` int64."""
    deg = np.bincount(pairs[:, 1], minlength=n_items)
    return torch.as_tensor(np.minimum(np.floor(np.log2(1 + deg)), buckets - 1).astype(np.int64))


def co_interaction_graph(train: tuple[np.ndarray, np.ndarray], n_items: tuple[int, int], n_users: int, *,
                         topk: int = 10, cross: bool = True) -> torch.Tensor:
    """Undirected top-k co-interaction ``edge_index`` ``(2, E)`` over the items of both domains."""
    offset = np.array([0, n_items[0]])
    rows = np.concatenate([t[:, 0] for t in train])
    cols = np.concatenate([t[:, 1] + offset[d] for d, t in enumerate(train)])
    n = n_items[0] + n_items[1]
    pairs = np.unique(np.stack([rows, cols], 1), axis=0)
    x = scipy.sparse.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n))
    co = (x.T @ x).tocoo()  # (n, n) co-interaction counts
    src, dst, w = co.row.astype(np.int64), co.col.astype(np.int64), co.data
    keep = src != dst
    if not cross:
        keep &= (src < n_items[0]) == (dst < n_items[0])
    src, dst, w = src[keep], dst[keep], w[keep]
    order = np.lexsort((-w, src))  # by source, heaviest first
    src, dst = src[order], dst[order]
    first = np.r_[0, np.flatnonzero(np.diff(src)) + 1]
    rank = np.arange(len(src)) - np.repeat(first, np.diff(np.r_[first, len(src)]))
    top = rank < topk
    edges = np.concatenate([np.stack([src[top], dst[top]]), np.stack([dst[top], src[top]])], 1)
    edges = np.unique(edges, axis=1)
    return torch.as_tensor(edges, dtype=torch.int64)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the gradient ``Aᵀ g`` is ``A g``."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


def normalized_adjacency(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """``D^{-1/2} A D^{-1/2}`` of an undirected ``edge_index`` as a CSR tensor ``(n, n)``."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    index, weight = gcn_norm(edge_index, None, n, add_self_loops=False)
    with warnings.catch_warnings():  # "CSR support is in beta": products with dense matrices are what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(index, weight, (n, n), check_invariants=True).coalesce().to_sparse_csr()


class SymmetricLGConv(MessagePassing):
    """LightGCN propagation ``x' = Â x`` given the normalised symmetric adjacency ``Â`` (CSR)."""

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.propagate(adj, x=x)

    def message_and_aggregate(self, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _SymmetricSpMM.apply(adj, x)


class ItemEncoder(nn.Module):
    """Item vectors of both domains: features, then LightGCN over the co-interaction graph.

    ``forward()`` -> ``[(n_items_0, D), (n_items_1, D)]``.
    """

    def __init__(self, n_items: tuple[int, int], dim: int, *, degrees: tuple[torch.Tensor, torch.Tensor],
                 edge_index: torch.Tensor | None, layers: int = 2,
                 content: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.n_items = n_items
        self.ids = nn.Embedding(n_items[0] + n_items[1], dim)
        nn.init.normal_(self.ids.weight, std=0.1)
        self.degree = nn.Embedding(16, dim)
        nn.init.zeros_(self.degree.weight)
        self.register_buffer("buckets", torch.cat(degrees), persistent=False)
        self.content = None
        if content is not None:
            self.register_buffer("content_table", torch.cat(content), persistent=False)
            self.content = nn.Linear(content[0].shape[1], dim)
        self.layers = layers
        if layers:
            self.conv = SymmetricLGConv()
            self.register_buffer("adj", normalized_adjacency(edge_index, n_items[0] + n_items[1]), persistent=False)

    def forward(self) -> list[torch.Tensor]:
        x = self.ids.weight + self.degree(self.buckets)  # (N, D)
        if self.content is not None:
            x = x + self.content(self.content_table)
        if self.layers:
            out = [x]
            for _ in range(self.layers):
                x = self.conv(x, self.adj)
                out.append(x)
            x = torch.stack(out).mean(0)
        return list(torch.split(x, list(self.n_items)))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The fixed content tables per domain (buffers, not parameters), saved with a run."""
        if self.content is None:
            return {}
        c = torch.split(self.content_table, list(self.n_items))
        return {"content.0": c[0], "content.1": c[1]}


def item_encoder_inputs(config, data, state: dict[str, torch.Tensor] | None = None) -> dict:
    """Degrees, graph and content tables for :class:`ItemEncoder` from training data (and a saved run)."""
    n_items = tuple(d.n_items for d in data.domains)
    degrees = tuple(degree_buckets(d.train, d.n_items) for d in data.domains)
    edge_index = None
    if config.gnn_layers:  # a user not shared by the two domains is two people: two graph rows
        second = data.domains[1].train.copy()
        second[:, 0] += np.where(data.shared_mask()[second[:, 0]], 0, data.n_users)
        edge_index = co_interaction_graph((data.domains[0].train, second), n_items, 2 * data.n_users,
                                          topk=config.gnn_topk, cross=config.gnn_cross)
    content = None
    if state and "content.0" in state:
        content = (state["content.0"], state["content.1"])
    elif data.item_content is not None:
        content = tuple(torch.as_tensor(c, dtype=torch.float32) for c in data.item_content)
    elif config.item_emb:
        raise UsageError(f"item_emb={config.item_emb!r} but the data carries no item vectors; load it with "
                         "mmrec.crossdomain.files.load_data (which reads the embeddings) or set data.item_content")
    return {"degrees": degrees, "edge_index": edge_index, "content": content, "layers": config.gnn_layers}
