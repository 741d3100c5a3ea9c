"""The one-call functions a Python user (and the CLI) calls: build, load, add to and search an index.

Index kinds are registered in :data:`INDEX_KINDS` (``faiss``, ``tree``), imported on first use.
``kind`` is ``"auto"`` (FAISS, factory chosen from the budgets), ``"faiss:<factory>"`` (a given FAISS
factory string such as ``faiss:IVF1024,Flat``), ``"faiss"`` (= auto) or ``"tree"`` (the MISS tree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex, read_info
from mmrec.registry import Registry

INDEX_KINDS = Registry("index kind")
INDEX_KINDS.register("faiss", "mmrec.index.faiss_index:FaissIndex")
INDEX_KINDS.register("tree", "mmrec.index.tree:IndexTree")


def build_index(
    data: Any,
    out: str | Path | None,
    kind: str = "auto",
    *,
    column: str = "fused",
    keys: Sequence[str] | None = None,
    progress: bool = True,
    **options: Any,
) -> BaseIndex:
    """Build an index over ``data`` (a folder of ``emb-*.parquet``, Parquet files, or an ``(n, d)``
    array with optional ``keys``) and write it to the folder ``out`` (skipped when None).

    ``options`` go to the kind's config: for FAISS ``max_memory="1G"``, ``max_query_ms=10``,
    ``target_recall=0.95``, ``k=10``, ``metric="ip"``, ``gpu=None`` …
    (:class:`~mmrec.index.faiss_index.FaissConfig`); for the tree ``branching=16`` …
    (:class:`~mmrec.index.tree.TreeConfig`).
    """
    name, _, factory = kind.partition(":")
    if name == "auto" and not factory:
        name, factory = "faiss", "auto"
    cls = INDEX_KINDS.get(name)
    if name == "faiss":
        options["factory"] = factory or options.get("factory", "auto")
    elif factory:
        raise UsageError(f"index kind {kind!r}: only 'faiss:<factory>' takes a factory string")
    return cls.build(data, out, column=column, keys=keys, progress=progress, **options)


def load_index(folder: str | Path, *, mmap: bool = True, gpu: bool = False) -> BaseIndex:
    """Load an index folder of any kind (its ``index.json`` says which)."""
    info = read_info(folder)
    cls = INDEX_KINDS.get(info.get("kind", "?"))
    if info["kind"] == "faiss":
        return cls.load(folder, mmap=mmap, gpu=gpu)
    return cls.load(folder)


def add_to_index(folder: str | Path, data: Any, *, column: str | None = None, keys: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Add new embeddings (e.g. new ``emb-*.parquet`` shards) to a saved index and rewrite it."""
    index = load_index(folder, mmap=False)
    event = index.add(data, column=column, keys=keys, progress=progress)
    index.save(folder)
    return {**event, "n": index.n}


def search_index(
    index: BaseIndex | str | Path, queries: np.ndarray | None = None, *, keys: Sequence[str] | None = None, k: int = 10
) -> list[list[dict[str, Any]]]:
    """Top-``k`` neighbours, per query, as ``[{"key", "row", "score"}, ...]``: by ``queries``
    vectors ``(q, d)`` or by the ``keys`` of indexed items (exactly one of the two)."""
    if (queries is None) == (keys is None):
        raise UsageError("search by vectors or by keys: give exactly one of them")
    if not isinstance(index, BaseIndex):
        index = load_index(index)
    scores, rows = index.search(queries, k) if keys is None else index.search_keys(list(keys), k)
    names = index.keys_of(rows)
    return [
        [{"key": key, "row": int(r), "score": float(s)} for key, r, s in zip(kk, rr, ss) if r >= 0]
        for kk, rr, ss in zip(names, rows, scores)
    ]
