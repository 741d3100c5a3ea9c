"""The index kinds (:data:`INDEX_KINDS`: ``faiss``, ``tree``, imported on first use) and loading a saved
index folder of any kind. Building, adding to, searching and evaluating index folders are the jobs of
:mod:`mmrec.pipelines.index`.

``kind`` is ``"auto"`` (FAISS, factory chosen from the budgets), ``"faiss:<factory>"`` (a given FAISS
factory string such as ``faiss:IVF1024,Flat``), ``"faiss"`` (= auto) or ``"tree"`` (the MISS tree).
"""

from __future__ import annotations

from pathlib import Path

from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex, read_info
from mmrec.registry import Registry

INDEX_KINDS = Registry("index kind")
INDEX_KINDS.register("faiss", "mmrec.index.faiss_index:FaissIndex")
INDEX_KINDS.register("tree", "mmrec.index.tree:IndexTree")


def parse_kind(kind: str) -> tuple[type, str | None]:
    """``(index class, FAISS factory or None)`` of a ``kind`` string (see the module docstring)."""
    name, _, factory = kind.partition(":")
    if name == "auto" and not factory:
        name, factory = "faiss", "auto"
    cls = INDEX_KINDS.get(name)
    if name == "faiss":
        return cls, factory or "auto"
    if factory:
        raise UsageError(f"index kind {kind!r}: only 'faiss:<factory>' takes a factory string")
    return cls, None


def load_index(folder: str | Path, *, mmap: bool = True, gpu: bool = False) -> BaseIndex:
    """Load an index folder of any kind (its ``index.json`` says which)."""
    info = read_info(folder)
    cls = INDEX_KINDS.get(info.get("kind", "?"))
    if info["kind"] == "faiss":
        return cls.load(folder, mmap=mmap, gpu=gpu)
    return cls.load(folder)
