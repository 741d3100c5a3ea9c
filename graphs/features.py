"""Multimodal node attributes for GraphCL: author content vectors from ``mmrec extract`` Parquet.

Two layouts are read: a table keyed by ``author_id`` (one vector per author), or the segment
embeddings ``mmrec extract`` writes (``key`` + vector columns, read through :mod:`mmrec.store`), whose
keys are mapped to authors through a live log or ``segments.parquet`` (``item_id`` -> ``author_id``,
read through :func:`mmrec.logs.iter_log`) and averaged per author ([I] MMBee gives its nodes
"multimodal attributes" without saying how segments become an author vector; the mean of an author's
segment vectors is the simplest). Authors with no vector get zeros; rows without a vector (null) or
whose key or author is not in the graph are counted in ``rows_skipped``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from mmrec.errors import InputError, UsageError
from mmrec.logs import iter_log
from mmrec.store import embedding_files, embedding_shards, open_source

Logs = str | Path | Sequence[str | Path] | pa.Table


def _vector_column(path: Path, schema: pa.Schema, column: str | None) -> str:
    vector_columns = [f.name for f in schema if pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type)]
    if column is None:
        column = "fused" if "fused" in vector_columns else (vector_columns[0] if len(vector_columns) == 1 else None)
        if column is None:
            raise UsageError(f"{path}: say which vector column to use (have {vector_columns})")
    if column not in vector_columns:
        raise InputError(f"{path}: no vector column {column!r}; have {vector_columns}", field=column)
    return column


def _author_rows(path: Path, column: str):
    """``(author ids (m,), vectors (m, d), null rows)`` batches of an ``author_id``-keyed table."""
    for rb in pq.ParquetFile(path).iter_batches(columns=["author_id", column]):
        vectors = rb.column(column)
        valid = vectors.is_valid()
        authors = rb.column("author_id").filter(valid).to_numpy(zero_copy_only=False).astype(np.int64)
        vectors = vectors.filter(valid)
        matrix = np.stack(vectors.to_numpy(zero_copy_only=False)).astype(np.float32) if len(vectors) else None
        yield authors, matrix, rb.num_rows - len(authors)


def _segment_authors(files: list[Path], logs: Logs) -> tuple[pa.Array, np.ndarray]:
    """``(segment keys, their author ids or -1)`` for the keys of ``files``, from the log's rows."""
    keys = pa.array(sorted({k for ks in embedding_shards(files).values() for k in ks}), pa.string())
    authors = np.full(len(keys), -1, np.int64)
    for batch in iter_log(logs, ["item_id", "author_id"], kinds={"item_id": "string", "author_id": "integer"}):
        where = pc.index_in(pa.array(batch["item_id"], pa.string()), value_set=keys).fill_null(-1).to_numpy()
        hit = where >= 0
        authors[where[hit]] = batch["author_id"][hit]
    return keys, authors


def read_author_features(
    path: str | os.PathLike | Sequence[str | os.PathLike], num_authors: int, *, column: str | None = None,
    logs: Logs | None = None,
) -> tuple[torch.Tensor, dict]:
    """Author attribute matrix ``(num_authors, d)`` float32 and counts (``authors_with_vector``,
    ``authors``, ``rows_skipped``). ``path``: a folder of ``emb-*.parquet``, a file, a glob or a list;
    ``column``: the vector column (default ``fused``, or the only one); ``logs``: maps segment keys to
    authors (a live log, a folder holding one, or ``segments.parquet``)."""
    files = embedding_files(path)
    layouts = {f: pq.read_schema(f) for f in files}
    segment_files = [f for f, schema in layouts.items() if "author_id" not in schema.names]
    keys = key_authors = None
    if segment_files:
        if any("key" not in layouts[f].names for f in segment_files):
            bad = next(f for f in segment_files if "key" not in layouts[f].names)
            raise InputError(f"{bad}: needs an 'author_id' or a 'key' column; have {layouts[bad].names}", field="author_id")
        if logs is None:
            raise UsageError(f"{segment_files[0]} is keyed by segment 'key'; pass the live log (or segments.parquet) "
                             "to map segments to authors")
        keys, key_authors = _segment_authors(segment_files, logs)
    sums: np.ndarray | None = None
    counts = np.zeros(num_authors, np.int64)
    skipped = 0
    for file, schema in layouts.items():
        name = _vector_column(file, schema, column)
        if "author_id" in schema.names:
            rows = _author_rows(file, name)
        else:
            source = open_source(file, column=name)
            rows = ((key_authors[pc.index_in(b.keys, value_set=keys).to_numpy()], b.vectors, 0) for b in source.batches())
        for authors, vectors, nulls in rows:
            skipped += nulls
            if vectors is None:
                continue
            keep = (authors >= 0) & (authors < num_authors)
            skipped += int((~keep).sum())
            if sums is None:
                sums = np.zeros((num_authors, vectors.shape[1]), np.float64)
            if vectors.shape[1] != sums.shape[1]:
                raise InputError(f"{file}: vectors of width {vectors.shape[1]}, earlier files had {sums.shape[1]}", field=name)
            np.add.at(sums, authors[keep], vectors[keep])
            counts += np.bincount(authors[keep], minlength=num_authors)
        if "author_id" not in schema.names:
            skipped += source.skipped_null
    if sums is None or not counts.any():
        raise InputError(f"{path}: no vector belongs to an author of the graph (0..{num_authors - 1})")
    features = sums / np.maximum(counts, 1)[:, None]
    report = {"authors_with_vector": int((counts > 0).sum()), "authors": num_authors, "rows_skipped": skipped}
    return torch.from_numpy(features.astype(np.float32)), report
