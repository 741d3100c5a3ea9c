"""MMBee GIE: gifting graphs, Swing, metapath expansion and GraphCL node pre-training (docs/papers.md, "MMBee").

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

The torch-geometric parts import on first use, so ``import mmrec.graphs`` stays light. That first
import is quiet: torch-geometric scripts helpers with ``torch.jit.script`` at import time, which torch
>= 2.10 answers with a FutureWarning its users cannot act on; only that warning, only during that
import, is dropped (a one-shot import hook; the filters of the caller are left as they were).
"""

import importlib.abc
import importlib.machinery
import sys
import warnings
from importlib import import_module

_JIT_WARNING = r"`torch\.jit\.script` is (deprecated|not supported)"


class _QuietLoader(importlib.abc.Loader):
    """Runs torch-geometric's ``__init__`` with the ``torch.jit.script`` FutureWarning ignored."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self._loader
        module.__spec__.loader = self._loader
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_JIT_WARNING, category=FutureWarning)
            self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietPyG)]


class _QuietPyG(importlib.abc.MetaPathFinder):
    """Finds ``torch_geometric`` with :class:`_QuietLoader`; leaves ``sys.meta_path`` once it is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch_geometric" or name in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "torch_geometric" not in sys.modules and not any(isinstance(f, _QuietPyG) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietPyG())

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
