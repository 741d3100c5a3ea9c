"""Item features and the item-item graph of UniCDR+ (arXiv 2409.04540, aspects 1 and 2).

- Features ([I] on Amazon there is no content, so: id embedding + an embedding of the log2 training
  degree bucket; plus a linear projection of multimodal item embeddings when a Parquet of them is
  given, mmrec extract layout: ``key`` = ``"<domain>:<item id>"`` and a fixed-size-list vector column).
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
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from mmrec.errors import InputError, UsageError


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


def read_item_embeddings(path: str | Path, names: tuple[str, str], n_items: tuple[int, int], *,
                         column: str = "fused", vocab: tuple[list[str] | None, list[str] | None] = (None, None),
                         ) -> list[torch.Tensor]:
    """Per-domain ``(n_items, E)`` float32 tables from a Parquet of ``key`` + vector ``column``.

    Keys are ``"<domain>:<item id>"`` (raw ids of a Parquet log); items without a row get zeros.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"item embedding file not found: {path}")
    table = pq.read_table(path)
    for name in ("key", column):
        if name not in table.column_names:
            raise InputError(f"{path}: missing column {name!r}; have {table.column_names}", field=name)
    keys = table.column("key").to_pylist()
    try:
        vectors = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    except ValueError:
        raise InputError(f"{path}: column {column!r} is not a fixed-size vector column", field=column) from None
    if vectors.ndim != 2:
        raise InputError(f"{path}: column {column!r} is not a fixed-size vector column", field=column)
    out = [np.zeros((n, vectors.shape[1]), np.float32) for n in n_items]
    index = [{(str(v) if voc is not None else str(i)): i for i, v in enumerate(voc or range(n))}
             for voc, n in zip(vocab, n_items)]
    found = 0
    for key, vec in zip(keys, vectors):
        domain, _, item = str(key).partition(":")
        if domain in names:
            d = names.index(domain)
            if item in index[d]:
                out[d][index[d][item]] = vec
                found += 1
    if not found:
        raise InputError(f"{path}: no key matches '<domain>:<item>' for domains {list(names)}", field="key")
    return [torch.as_tensor(t) for t in out]


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
            self.adj = normalized_adjacency(edge_index, n_items[0] + n_items[1])

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
    if config.gnn_layers:
        edge_index = co_interaction_graph(tuple(d.train for d in data.domains), n_items, data.n_users,
                                          topk=config.gnn_topk, cross=config.gnn_cross)
    content = None
    if state and "content.0" in state:
        content = (state["content.0"], state["content.1"])
    elif config.item_emb:
        content = tuple(read_item_embeddings(config.item_emb, tuple(d.name for d in data.domains), n_items,
                                             column=config.emb_column,
                                             vocab=tuple(d.item_vocab for d in data.domains)))
    return {"degrees": degrees, "edge_index": edge_index, "content": content, "layers": config.gnn_layers}
