"""mmrec.index: FAISS indexes with automatic choice and recall reports, the MISS index tree,
lifelong-sequence search (Co-GSU / MM-GSU), an HTTP server and evaluation."""

from mmrec.index.api import INDEX_KINDS, add_to_index, build_index, load_index, search_index
from mmrec.index.select import Choice, choose_index, parse_memory

__all__ = [
    "INDEX_KINDS",
    "Choice",
    "add_to_index",
    "build_index",
    "choose_index",
    "load_index",
    "parse_memory",
    "search_index",
]
