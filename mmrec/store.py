"""The one embedding store: vectors read in batches from the Parquet files of ``mmrec extract`` /
``mmrec align`` (or an in-memory array); every stage that reads ``emb-*.parquet`` reads it here.

A Parquet source is a folder (its ``emb-*.parquet``), one file, a glob or a list of files, each with a
string ``key`` column and a fixed-size-list float column (``fused``, ``image``, ``text``, ``audio`` or
any other). Files are read row group by row group, so memory is the batch size, not the input size.
Rows whose vector is null (a modality the sample lacked) are skipped and counted; a NaN or infinite
vector is an error that names the file and the key. A file that is not Parquet (or is cut short) is
an :class:`~mmrec.errors.InputError` that names it. Index row ids are positions in the stream of
non-null rows, in file order.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, open_parquet, write_json

BATCH_ROWS = 65536


@dataclass
class Batch:
    """``keys`` (m,) strings and ``vectors`` (m, d) contiguous float32 of consecutive index rows."""

    keys: pa.Array
    vectors: np.ndarray


def embedding_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The Parquet files of ``spec``: a folder (its ``emb-*.parquet``), a file, a glob or a list of them."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for s in map(str, specs):
        if os.path.isdir(s):
            found = sorted(Path(s).glob("emb-*.parquet"))
            if not found:
                raise UsageError(f"no emb-*.parquet files in folder {s}")
            files += found
        elif glob.has_magic(s):
            files += sorted(Path(p) for p in glob.glob(s))
        elif os.path.isfile(s):
            files.append(Path(s))
        else:
            raise UsageError(f"embeddings {'file' if s.endswith('.parquet') else 'folder'} not found: {s}")
    if not files:
        raise UsageError(f"no Parquet files match {spec!r}")
    return list(dict.fromkeys(files))


def column_dim(path: Path, column: str) -> int:
    """Width of the fixed-size float list ``column`` of an embedding file; errors name the file and column."""
    schema = open_parquet(path, "embeddings file").schema_arrow
    if "key" not in schema.names:
        raise UsageError(f"{path}: no 'key' column (columns: {', '.join(schema.names)})")
    if column not in schema.names:
        vectors = [f.name for f in schema if pa.types.is_fixed_size_list(f.type)]
        raise UsageError(f"{path}: no column {column!r}; vector columns: {', '.join(vectors) or '(none)'}")
    kind = schema.field(column).type
    if not (pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type)):
        raise UsageError(f"{path}: column {column!r} is {kind}, expected a fixed-size list of floats")
    return kind.list_size


class EmbeddingSource:
    """Batches of ``(keys, vectors)`` from Parquet files or an array; :func:`open_source` makes one."""

    def __init__(self, *, dim: int, column: str, files: list[Path] | None = None, array: np.ndarray | None = None, keys: pa.Array | None = None) -> None:
        self.dim = dim
        self.column = column
        self.files = files or []
        self._array = array
        self._keys = keys
        self.skipped_null = 0  # null vectors passed over by the last full read

    @property
    def max_rows(self) -> int:
        """Rows in the input, nulls included (from the Parquet footers)."""
        if self._array is not None:
            return len(self._array)
        return sum(open_parquet(f, "embeddings file").metadata.num_rows for f in self.files)

    def describe(self) -> dict:
        """What was read, for ``index.json``."""
        if self._array is not None:
            return {"type": "array", "rows": len(self._array), "column": self.column}
        return {"type": "parquet", "files": [str(f.resolve()) for f in self.files], "column": self.column}

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
        """Every non-null row once, in order, ``batch_rows`` at most per batch."""
        self.skipped_null = 0
        if self._array is not None:
            for start in range(0, len(self._array), batch_rows):
                yield Batch(self._keys[start : start + batch_rows], self._array[start : start + batch_rows])
            return
        for path in self.files:
            for rb in _record_batches(path, batch_rows, ["key", self.column]):
                col, keys = rb.column(self.column), rb.column("key")
                if col.null_count:
                    valid = col.is_valid()
                    self.skipped_null += col.null_count
                    col, keys = col.filter(valid), keys.filter(valid)
                if len(col) == 0:
                    continue
                vectors = np.ascontiguousarray(np.asarray(col.flatten()).reshape(-1, self.dim), dtype=np.float32)
                bad = ~np.isfinite(vectors).all(axis=1)
                if bad.any():
                    raise UsageError(f"{path}: column {self.column!r} of key {keys[int(np.argmax(bad))].as_py()!r} has NaN or inf")
                yield Batch(keys.cast(pa.string()), vectors)


def _record_batches(path: Path, batch_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The record batches of ``path``; a file that breaks while read is an InputError naming it."""
    batches = open_parquet(path, "embeddings file").iter_batches(batch_size=batch_rows, columns=columns)
    while True:
        try:
            rb = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: unreadable Parquet data ({err})") from None
        yield rb


def open_source(
    data: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray,
    *,
    column: str = "fused",
    keys: Sequence[str] | None = None,
    key_offset: int = 0,
    dim: int | None = None,
) -> EmbeddingSource:
    """An :class:`EmbeddingSource` over Parquet files (folder, file, glob, list) or an ``(n, d)`` array.

    For an array, ``keys`` name its rows (default: their index row numbers, ``key_offset + i``).
    ``dim`` checks the vectors' dimension (adding to an existing index).
    """
    if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike))):
        if keys is not None:
            raise UsageError("keys= is for array input; Parquet input carries its own 'key' column")
        files = embedding_files(data)
        found = None
        for f in files:
            d = column_dim(f, column)
            if found is not None and d != found:
                raise InputError(f"{f}: column {column!r} has dim {d}, other files have {found}")
            found = d
        if dim is not None and found != dim:
            raise UsageError(f"column {column!r} has dim {found}, the index has dim {dim}")
        source = EmbeddingSource(dim=found, column=column, files=files)
        if source.max_rows == 0:
            raise UsageError(f"no rows in {len(files)} Parquet file(s) of {data!r}")
        return source
    from mmrec.quantization.kmeans import check_vectors  # mmrec.quantization imports this module

    array = check_vectors(data, dim=dim)
    if keys is None:
        key_array = pa.array([str(key_offset + i) for i in range(len(array))], pa.string())
    else:
        key_array = pa.array(list(keys), pa.string())
        if len(key_array) != len(array):
            raise UsageError(f"got {len(key_array)} keys for {len(array)} vectors")
    return EmbeddingSource(dim=array.shape[1], column=column, array=array, keys=key_array)


def sample_rows(source: EmbeddingSource, size: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """A uniform sample of ``size`` rows in one streaming pass: ``(rows (s,), vectors (s, d), n)``.

    Each row draws a random key and the ``size`` smallest keys are kept (bottom-k sampling), so memory
    is ``size`` vectors. Rows come back in key order (a random order); ``n`` counts the non-null rows.
    """
    rng = np.random.default_rng(seed)
    keep_u = np.empty(0)
    keep_rows = np.empty(0, dtype=np.int64)
    keep_vec = np.empty((0, source.dim), dtype=np.float32)
    n = 0
    for batch in source.batches():
        m = len(batch.vectors)
        u = rng.random(m)
        take = np.flatnonzero(u < keep_u.max()) if len(keep_u) >= size else np.arange(m)
        keep_u = np.concatenate([keep_u, u[take]])
        keep_rows = np.concatenate([keep_rows, n + take])
        keep_vec = np.concatenate([keep_vec, batch.vectors[take]])
        if len(keep_u) > size:
            best = np.argpartition(keep_u, size)[:size]
            keep_u, keep_rows, keep_vec = keep_u[best], keep_rows[best], keep_vec[best]
        n += m
    if n == 0:
        raise UsageError(f"no non-null vectors in column {source.column!r} ({source.skipped_null} null rows)")
    order = np.argsort(keep_u, kind="stable")
    return keep_rows[order], np.ascontiguousarray(keep_vec[order]), n


def read_embeddings(data: str | os.PathLike | Sequence[str | os.PathLike], column: str = "fused") -> tuple[list[str], np.ndarray]:
    """``(keys, vectors (n, d) float32)`` of every non-null row of ``column``, in file order; keys must be unique."""
    source = open_source(data, column=column)
    keys: list[str] = []
    chunks = []
    for batch in source.batches():
        keys += batch.keys.to_pylist()
        chunks.append(batch.vectors)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, source.dim), np.float32)
    if len(set(keys)) != len(keys):
        raise InputError(f"{data}: duplicate keys in column {column!r}")
    return keys, vectors


def embedding_shards(folder: str | Path) -> dict[str, list[str]]:
    """``{shard: keys in file order}`` of an extract output folder (``emb-X.parquet`` -> ``X``)."""
    return {
        path.stem.removeprefix("emb-"): [k for rb in _record_batches(path, BATCH_ROWS, ["key"]) for k in rb.column("key").to_pylist()]
        for path in embedding_files(folder)
    }


def write_embeddings(
    out: str | Path, shards: dict[str, list[str]], vectors: dict[str, np.ndarray], column: str, *, info: dict[str, Any]
) -> dict[str, Any]:
    """Write ``vectors`` (key -> (d,) float32) as ``column`` in extract's layout: ``out/emb-X.parquet``.

    ``shards`` maps each shard name ``X`` to its keys in order; keys without a vector are left out.
    ``info`` goes into each file's metadata under ``mmrec`` and into ``out/manifest.json``. Returns
    the manifest.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dim = len(next(iter(vectors.values())))
    done, total = [], 0
    for shard, shard_keys in shards.items():
        keys = [k for k in shard_keys if k in vectors]
        matrix = np.stack([vectors[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, dim), np.float32)
        meta = {**info, "shard": shard, "rows": len(keys), "errors": 0, "rank": 0}
        schema = pa.schema(
            [pa.field("key", pa.string(), nullable=False), pa.field(column, pa.list_(pa.float32(), dim))],
            metadata={"mmrec": json.dumps(meta), "model": json.dumps(info), "dim": json.dumps({column: dim})},
        )
        column_array = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
        with atomic_path(out / f"emb-{shard}.parquet") as tmp:
            pq.write_table(pa.Table.from_arrays([pa.array(keys, pa.string()), column_array], schema=schema), tmp)
        done.append({"shard": shard, "rows": len(keys), "errors": 0, "rank": 0})
        total += len(keys)
    manifest = {"input_shards": len(done), "done": done, "pending": [], "samples": total, "errors": 0, **info}
    write_json(out / "manifest.json", manifest)
    return manifest
