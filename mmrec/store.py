"""The one embedding store: vectors read in batches from the Parquet files of ``mmrec extract`` /
``mmrec align``, from ``.npy`` matrices (clip-retrieval's layout) or an in-memory array; every stage
that reads embeddings reads them here.

A source is a folder, one file, a glob or a list of files. A folder means its ``emb-*.parquet``;
without any, its ``*.npy``; without those, its ``*.parquet``.

- Parquet: an id column (``id_column``, default ``key``; integers are read as their decimal strings)
  and a float list column (``column``: ``fused``, ``image``, ... in extract's files, ``embedding`` in
  autofaiss's), fixed-size or variable-length lists all of one length. Files are read row group by
  row group, so memory is the batch size, not the input size.
- ``.npy``: one ``(n, d)`` float matrix per file, memory-mapped and read in blocks; ``column`` does
  not apply. [I] Its ids come from the sibling metadata file of clip-retrieval's layout
  (``ROOT/img_emb/img_emb_3.npy`` -> ``ROOT/metadata/metadata_3.parquet``, column ``id_column``; a
  boolean column ``has_img_emb`` there marks rows without a vector, as a null does in Parquet) and,
  without one, are row numbers across the source's ``.npy`` files (``"0"``, ``"1"`` ...), as for an
  array.

Rows whose vector is null (a modality the sample lacked) are skipped and counted; a NaN or infinite
vector is an error that names the file and the key. A file that is not Parquet (or is cut short) is
an :class:`~mmrec.errors.InputError` that names it. Index row ids are positions in the stream of
non-null rows, in file order.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, open_parquet, write_json

BATCH_ROWS = 65536
ID_COLUMN_HELP = ("id column of Parquet embeddings (autofaiss users: their own id column); for .npy input, the column of "
                  "the sibling metadata/metadata_I.parquet (row numbers without one)")


@dataclass
class Batch:
    """``keys`` (m,) strings and ``vectors`` (m, d) contiguous float32 of consecutive index rows."""

    keys: pa.Array
    vectors: np.ndarray


def _natural(path: Path) -> tuple:
    """Sort key that puts ``img_emb_2.npy`` before ``img_emb_10.npy``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _folder_files(folder: Path) -> list[Path]:
    for pattern in ("emb-*.parquet", "*.npy", "*.parquet"):
        found = sorted(folder.glob(pattern), key=_natural)
        if found:
            return found
    raise UsageError(f"no emb-*.parquet, .npy or .parquet files in folder {folder}")


def embedding_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The embedding files of ``spec``: a folder (its ``emb-*.parquet``, else its ``*.npy``, else its
    ``*.parquet``), a file, a glob or a list of them."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for s in map(str, specs):
        if os.path.isdir(s):
            files += _folder_files(Path(s))
        elif glob.has_magic(s):
            files += sorted((Path(p) for p in glob.glob(s)), key=_natural)
        elif os.path.isfile(s):
            files.append(Path(s))
        else:
            kind = "file" if s.endswith((".parquet", ".npy")) else "folder"
            raise UsageError(f"embeddings {kind} not found: {s}")
    if not files:
        raise UsageError(f"no embedding files match {spec!r}")
    return list(dict.fromkeys(files))


def _is_npy(path: Path) -> bool:
    return path.suffix == ".npy"


def _open_npy(path: Path) -> np.ndarray:
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy file ({err})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise InputError(f"{path}: expected a 2-d float matrix, got shape {matrix.shape} of {matrix.dtype}")
    return matrix


def npy_metadata(path: Path) -> Path:
    """The metadata file of clip-retrieval's layout beside ``ROOT/X_emb/X_emb_I.npy``:
    ``ROOT/metadata/metadata_I.parquet`` (it may not exist); ``I`` is a number, or a shard name in
    ``mmrec extract``'s files."""
    part = path.stem.removeprefix(f"{path.parent.name}_")
    return path.parent.parent / "metadata" / f"metadata_{part}.parquet"


def column_dim(path: Path, column: str, id_column: str = "key") -> int:
    """Width of the float list ``column`` of a Parquet embedding file (of the matrix of a ``.npy``
    file); errors name the file and column."""
    if _is_npy(path):
        return _open_npy(path).shape[1]
    schema = open_parquet(path, "embeddings file").schema_arrow
    if id_column not in schema.names:
        raise UsageError(f"{path}: no id column {id_column!r} (columns: {', '.join(schema.names)}); pick one with --id-column")
    if column not in schema.names:
        vectors = [f.name for f in schema if _is_float_list(f.type)]
        raise UsageError(f"{path}: no column {column!r}; vector columns: {', '.join(vectors) or '(none)'}")
    kind = schema.field(column).type
    if not _is_float_list(kind):
        raise UsageError(f"{path}: column {column!r} is {kind}, expected a list of floats")
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    for rb in _record_batches(path, BATCH_ROWS, [column]):
        lengths = pc.list_value_length(rb.column(column)).drop_null()
        if len(lengths):
            return int(lengths[0].as_py())
    raise UsageError(f"{path}: column {column!r} has no non-null vector to take its dim from")


def _is_float_list(kind: pa.DataType) -> bool:
    return (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_floating(kind.value_type)


class EmbeddingSource:
    """Batches of ``(keys, vectors)`` from Parquet or ``.npy`` files or an array; :func:`open_source` makes one."""

    def __init__(self, *, dim: int, column: str, files: list[Path] | None = None, array: np.ndarray | None = None,
                 keys: pa.Array | None = None, id_column: str = "key", key_offset: int = 0) -> None:
        self.dim = dim
        self.column = column
        self.id_column = id_column
        self.files = files or []
        self._array = array
        self._keys = keys
        self._key_offset = key_offset
        self.skipped_null = 0  # null vectors passed over by the last full read

    @property
    def max_rows(self) -> int:
        """Rows in the input, nulls included (from the Parquet footers and ``.npy`` headers)."""
        if self._array is not None:
            return len(self._array)
        return sum(len(_open_npy(f)) if _is_npy(f) else open_parquet(f, "embeddings file").metadata.num_rows for f in self.files)

    def describe(self) -> dict:
        """What was read, for ``index.json``."""
        if self._array is not None:
            return {"type": "array", "rows": len(self._array), "column": self.column}
        kind = "npy" if all(map(_is_npy, self.files)) else "parquet"
        return {"type": kind, "files": [str(f.resolve()) for f in self.files], "column": self.column, "id_column": self.id_column}

    def matrix(self) -> tuple[pa.Array, np.ndarray]:
        """Every non-null row at once: ``(keys, vectors (n, d))``. An array source returns its array itself (no
        copy: a 10M-item index build holds one copy fewer); files are read and concatenated."""
        if self._array is not None:
            self.skipped_null = 0
            return self._keys, self._array
        batches = list(self.batches())
        if not batches:
            return pa.array([], pa.string()), np.zeros((0, self.dim), dtype=np.float32)
        return pa.concat_arrays([b.keys for b in batches]), np.concatenate([b.vectors for b in batches])

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
        """Every non-null row once, in order, ``batch_rows`` at most per batch."""
        self.skipped_null = 0
        if self._array is not None:
            for start in range(0, len(self._array), batch_rows):
                yield Batch(self._keys[start : start + batch_rows], self._array[start : start + batch_rows])
            return
        row = self._key_offset  # row-number ids of .npy files without metadata
        for path in self.files:
            if _is_npy(path):
                yield from self._npy_batches(path, batch_rows, row)
                row += len(_open_npy(path))
                continue
            for rb in _record_batches(path, batch_rows, [self.id_column, self.column]):
                col, keys = rb.column(self.column), rb.column(self.id_column)
                if col.null_count:
                    valid = col.is_valid()
                    self.skipped_null += col.null_count
                    col, keys = col.filter(valid), keys.filter(valid)
                if len(col) == 0:
                    continue
                if not pa.types.is_fixed_size_list(col.type):
                    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
                    if (lengths != self.dim).any():
                        wrong = int(np.argmax(lengths != self.dim))
                        raise InputError(f"{path}: column {self.column!r} of key {keys[wrong].as_py()!r} has "
                                         f"{lengths[wrong]} values, other rows {self.dim}")
                yield self._checked(path, keys.cast(pa.string()), np.asarray(col.flatten()).reshape(-1, self.dim))

    def _npy_batches(self, path: Path, batch_rows: int, first_row: int) -> Iterator[Batch]:
        matrix = _open_npy(path)  # (n, d), memory-mapped
        keys, present = self._npy_keys(path, len(matrix), first_row)
        for start in range(0, len(matrix), batch_rows):
            block_keys, block = keys[start : start + batch_rows], matrix[start : start + batch_rows]
            if present is not None:
                keep = present[start : start + batch_rows]
                self.skipped_null += int((~keep).sum())
                block_keys, block = block_keys.filter(pa.array(keep)), block[keep]
            if len(block):
                yield self._checked(path, block_keys, block)

    def _npy_keys(self, path: Path, rows: int, first_row: int) -> tuple[pa.Array, np.ndarray | None]:
        meta = npy_metadata(path)
        if not meta.is_file():
            return pa.array([str(first_row + i) for i in range(rows)], pa.string()), None
        names = open_parquet(meta, "metadata file").schema_arrow.names
        if self.id_column not in names:
            raise UsageError(f"{meta}: no id column {self.id_column!r} for {path} (columns: {', '.join(names)}); pick one with --id-column")
        flag = f"has_{path.parent.name}"
        table = pq.read_table(meta, columns=[self.id_column, *([flag] if flag in names else [])])
        if table.num_rows != rows:
            raise InputError(f"{meta} has {table.num_rows} rows, {path} has {rows}")
        present = table.column(flag).to_numpy(zero_copy_only=False).astype(bool) if flag in names else None
        return table.column(self.id_column).combine_chunks().cast(pa.string()), present

    def _checked(self, path: Path, keys: pa.Array, vectors: np.ndarray) -> Batch:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise UsageError(f"{path}: column {self.column!r} of key {keys[int(np.argmax(bad))].as_py()!r} has NaN or inf")
        return Batch(keys, vectors)


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
    data: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray | EmbeddingSource,
    *,
    column: str = "fused",
    id_column: str = "key",
    keys: Sequence[str] | None = None,
    key_offset: int = 0,
    dim: int | None = None,
) -> EmbeddingSource:
    """An :class:`EmbeddingSource` over Parquet / ``.npy`` files (folder, file, glob, list) or an ``(n, d)``
    array; an :class:`EmbeddingSource` passes through (``dim`` checked).

    ``column`` / ``id_column``: the vector and id columns of Parquet files. For an array (and for
    ``.npy`` files without metadata) rows are named ``key_offset + i``, or by ``keys`` for an array.
    ``dim`` checks the vectors' dimension (adding to an existing index).
    """
    if isinstance(data, EmbeddingSource):
        if dim is not None and data.dim != dim:
            raise UsageError(f"the embeddings have dim {data.dim}, the index has dim {dim}")
        return data
    if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike))):
        if keys is not None:
            raise UsageError("keys= is for array input; files carry their own ids")
        files = embedding_files(data)
        found = None
        for f in files:
            d = column_dim(f, column, id_column)
            if found is not None and d != found:
                raise InputError(f"{f}: column {column!r} has dim {d}, other files have {found}")
            found = d
        if dim is not None and found != dim:
            raise UsageError(f"column {column!r} has dim {found}, the index has dim {dim}")
        source = EmbeddingSource(dim=found, column=column, files=files, id_column=id_column, key_offset=key_offset)
        if source.max_rows == 0:
            raise UsageError(f"no rows in {len(files)} embedding file(s) of {data!r}")
        return source
    from mmrec.store import check_vectors  # mmrec.quantization imports this module

    array = check_vectors(data, dim=dim)
    if keys is None:
        key_array = pa.array([str(key_offset + i) for i in range(len(array))], pa.string())
    else:
        key_array = pa.array(list(keys), pa.string())
        if len(key_array) != len(array):
            raise UsageError(f"got {len(key_array)} keys for {len(array)} vectors")
    return EmbeddingSource(dim=array.shape[1], column=column, array=array, keys=key_array)


def check_vectors(x: np.ndarray, *, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Validate a ``(n, d)`` float matrix and return it as contiguous float32."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise UsageError(f"{name} must be a non-empty (n, d) matrix, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise UsageError(f"{name} have dim {x.shape[1]}, expected {dim}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UsageError(f"{name} row {int(np.argmax(bad))} has NaN or inf ({int(bad.sum())} bad rows)")
    return x


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


def read_embeddings(data: str | os.PathLike | Sequence[str | os.PathLike], column: str = "fused", *,
                    id_column: str = "key") -> tuple[list[str], np.ndarray]:
    """``(keys, vectors (n, d) float32)`` of every non-null row of ``column``, in file order; keys must be unique."""
    key_array, vectors = open_source(data, column=column, id_column=id_column).matrix()
    keys = key_array.to_pylist()
    if len(set(keys)) != len(keys):
        raise InputError(f"{data}: duplicate keys in column {column!r}")
    return keys, vectors


def embedding_shards(folder: str | Path) -> dict[str, list[str]]:
    """``{shard: keys in file order}`` of an extract output folder (``emb-X.parquet`` -> ``X``)."""
    return {
        path.stem.removeprefix("emb-"): [k for rb in _record_batches(path, BATCH_ROWS, ["key"]) for k in rb.column("key").to_pylist()]
        for path in embedding_files(folder)
    }


def vector_array(matrix: np.ndarray, present: np.ndarray | None = None) -> pa.FixedSizeListArray:
    """An ``(n, d)`` matrix as the emb schema's fixed-size ``list<float32>[d]`` column; rows where
    ``present`` is False are null (a sample without that modality)."""
    n, dim = matrix.shape
    mask = None if present is None else pa.array(~np.asarray(present, bool))
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix, np.float32).reshape(-1)), dim, mask=mask)


def write_emb_file(path: str | Path, keys: Sequence[str], vectors: dict[str, pa.Array | np.ndarray], dims: dict[str, int], *,
                   meta: dict[str, Any], model: Any, extra: dict[str, pa.Array] | None = None) -> None:
    """The one writer of the ``emb-*.parquet`` schema (docs/file-contracts.md), atomically.

    Columns: ``key`` (string, not null), one fixed-size ``list<float32>[dims[name]]`` per entry of
    ``vectors`` (a matrix, or an Arrow array such as :func:`vector_array` gives), then ``extra``
    (extract's ``json``). File metadata: ``mmrec`` = ``meta``, ``model`` = ``model``, ``dim`` = ``dims``.
    """
    fields, arrays = [pa.field("key", pa.string(), nullable=False)], [pa.array(list(keys), pa.string())]
    for name, column in vectors.items():
        fields.append(pa.field(name, pa.list_(pa.float32(), dims[name])))
        arrays.append(vector_array(column) if isinstance(column, np.ndarray) else column)
    for name, column in (extra or {}).items():
        fields.append(pa.field(name, column.type))
        arrays.append(column)
    schema = pa.schema(fields, metadata={"mmrec": json.dumps(meta), "model": json.dumps(model), "dim": json.dumps(dims)})
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), tmp)


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
        write_emb_file(out / f"emb-{shard}.parquet", keys, {column: matrix}, {column: dim}, meta=meta, model=info)
        done.append({"shard": shard, "rows": len(keys), "errors": 0, "rank": 0})
        total += len(keys)
    manifest = {"input_shards": len(done), "done": done, "pending": [], "samples": total, "errors": 0, **info}
    write_json(out / "manifest.json", manifest)
    return manifest
