"""mmrec.index: FAISS indexes with automatic choice and recall reports, the MISS index tree and its
node scorer, lifelong-sequence search (Co-GSU / MM-GSU), exact search, tuning and an HTTP server.

The jobs over index folders (build, add, search, eval, tree training) are :mod:`mmrec.pipelines.index`;
``build_index``, ``add_to_index``, ``search_index`` and ``evaluate_index`` are re-exported from there
(imported on first use) so that ``from mmrec.index import build_index`` keeps working.
"""

from typing import Any

from mmrec.index.kinds import INDEX_KINDS, load_index, parse_kind
from mmrec.index.select import Choice, choose_index, parse_memory

_LAZY = {
    "FaissConfig": "mmrec.index.faiss_index", "FaissIndex": "mmrec.index.faiss_index",
    "IndexTree": "mmrec.index.tree", "NodeScorer": "mmrec.index.tree", "ScorerConfig": "mmrec.index.tree",
    "TreeConfig": "mmrec.index.tree", "LifelongInterest": "mmrec.index.gsu",
    "add_to_index": "mmrec.pipelines.index", "build_index": "mmrec.pipelines.index",
    "evaluate_index": "mmrec.pipelines.index", "search_index": "mmrec.pipelines.index",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrec.index' has no attribute {name!r}")


__all__ = [
    "INDEX_KINDS", "Choice", "FaissConfig", "FaissIndex", "IndexTree", "LifelongInterest", "NodeScorer", "ScorerConfig",
    "TreeConfig", "add_to_index", "build_index", "choose_index", "evaluate_index", "load_index", "parse_kind",
    "parse_memory", "search_index",
]
