"""Multimodal node attributes for GraphCL: author content vectors from ``mmrec extract`` Parquet.

Two layouts are read: a table keyed by ``author_id`` (one vector per author), or the segment
embeddings ``mmrec extract`` writes (``key`` + vector columns), whose keys are mapped to authors
through the live log (``item_id`` -> ``author_id``) and averaged per author ([I] MMBee gives its
nodes "multimodal attributes" without saying how segments become an author vector; the mean of an
author's segment vectors is the simplest). Authors with no vector get zeros and are counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmrec.errors import InputError, UsageError
from mmrec.logs import iter_log


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("emb-*.parquet")) or sorted(path.glob("*.parquet"))
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise UsageError(f"no embedding Parquet at {path}")
    return files


def _vector_column(path: Path, schema: pa.Schema, column: str | None) -> str:
    vector_columns = [f.name for f in schema if pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type)]
    if column is None:
        column = "fused" if "fused" in vector_columns else (vector_columns[0] if len(vector_columns) == 1 else None)
        if column is None:
            raise UsageError(f"{path}: say which vector column to use (have {vector_columns})")
    if column not in vector_columns:
        raise InputError(f"{path}: no vector column {column!r}; have {vector_columns}", field=column)
    return column


def read_author_features(
    path: str | Path, num_authors: int, *, column: str | None = None,
    logs: str | Path | Sequence[str | Path] | pa.Table | None = None,
) -> tuple[torch.Tensor, dict]:
    """Author attribute matrix ``(num_authors, d)`` float32 and counts (``authors_with_vector``, ...)."""
    sums: np.ndarray | None = None
    counts = np.zeros(num_authors, np.int64)
    key_author: dict[str, int] | None = None
    skipped = 0
    for file in _files(Path(path)):
        schema = pq.read_schema(file)
        name = _vector_column(file, schema, column)
        if "author_id" in schema.names:
            table = pq.read_table(file, columns=["author_id", name])
            authors = table.column("author_id").to_numpy(zero_copy_only=False).astype(np.int64)
        elif "key" in schema.names:
            if logs is None:
                raise UsageError(f"{file} is keyed by segment 'key'; pass the live log to map segments to authors")
            if key_author is None:
                key_author = {}
                for batch in iter_log(logs, ["item_id", "author_id"], kinds={"item_id": "string", "author_id": "integer"}):
                    key_author.update(zip(batch["item_id"].tolist(), batch["author_id"].tolist()))
            table = pq.read_table(file, columns=["key", name])
            authors = np.array([key_author.get(k, -1) for k in table.column("key").to_pylist()], np.int64)
        else:
            raise InputError(f"{file}: needs an 'author_id' or a 'key' column; have {schema.names}", field="author_id")
        present = table.column(name).is_valid().to_numpy(zero_copy_only=False)
        keep = present & (authors >= 0) & (authors < num_authors)
        skipped += int((~keep).sum())
        if not keep.any():
            continue
        vectors = np.stack(table.column(name).filter(pa.array(keep)).to_numpy(zero_copy_only=False)).astype(np.float32)
        if sums is None:
            sums = np.zeros((num_authors, vectors.shape[1]), np.float64)
        if vectors.shape[1] != sums.shape[1]:
            raise InputError(f"{file}: vectors of width {vectors.shape[1]}, earlier files had {sums.shape[1]}", field=name)
        np.add.at(sums, authors[keep], vectors)
        counts += np.bincount(authors[keep], minlength=num_authors)
    if sums is None:
        raise InputError(f"{path}: no vector belongs to an author of the graph (0..{num_authors - 1})")
    features = sums / np.maximum(counts, 1)[:, None]
    report = {"authors_with_vector": int((counts > 0).sum()), "authors": num_authors, "rows_skipped": skipped}
    return torch.from_numpy(features.astype(np.float32)), report
