"""MMBee GIE: gifting graphs, Swing, metapath expansion and GraphCL node pre-training (PAPERS.md, MMBee).

- Graphs: :func:`build_graphs` (U2A gifting/watching + A2A Swing ``HeteroData`` from a streamed log,
  :class:`GraphConfig`), :func:`save_graph` / :func:`load_graph` (safetensors + JSON),
  :func:`swing_scores` (the Swing core QARM's pairs share).
- Expansion: :func:`expand_metapaths` (top-k per source by path-weight product, torch sparse),
  :func:`write_expansions` / :func:`read_expansions` (the offline Parquet store).
- Pre-training: :func:`train_graphcl` (GraphCL over a GraphSAGE-style heterogeneous encoder,
  trained through :func:`mmrec.training.fit`, mini-batched by :class:`NeighborSampler`, author
  attributes from :func:`read_author_features`), :func:`export_embeddings` / :func:`read_node_embeddings`.

The file-in / file-out ``mmrec graph`` jobs (build, expand, train, export, run folders) live in
:mod:`mmrec.pipelines.graph`.

The torch-geometric parts import on first use, so ``import mmrec.graphs`` stays light.
"""

from importlib import import_module

_LAZY = {
    "GraphConfig": "build", "build_graphs": "build",
    "swing_scores": "swing",
    "save_graph": "store", "load_graph": "store",
    "DEFAULT_METAPATHS": "metapath", "expand_metapaths": "metapath", "read_expansions": "metapath",
    "write_expansions": "metapath",
    "NeighborSampler": "sampler", "HeteroSAGE": "sage",
    "GraphCL": "graphcl", "GraphCLConfig": "graphcl", "build_model": "graphcl", "embed_nodes": "graphcl",
    "fit_graphcl": "graphcl", "nt_xent": "graphcl", "train_graphcl": "graphcl",
    "export_embeddings": "export", "read_node_embeddings": "export", "read_author_features": "features",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mmrec.graphs' has no attribute {name!r}")
    value = getattr(import_module(f"mmrec.graphs.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
