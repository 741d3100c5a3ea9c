"""The files quantization reads and writes (DESIGN.md, "Data contracts").

- Embeddings: a folder of ``emb-*.parquet`` files as ``mmrec extract`` writes them (``key`` and one
  fixed-size float32 list column per modality plus ``fused``). :func:`read_embeddings` loads one
  column of all of them; :func:`write_embeddings` writes vectors back in the same layout, one output
  file per shard, plus ``manifest.json``.
- Codes: ``codes.parquet`` with ``key`` and ``c1..cL`` (int32), the quantizer and level sizes in the
  file metadata (:func:`save_codes`, :func:`load_codes`).
- Codebooks: ``codebook.safetensors``, tensors plus a JSON description under the metadata key
  ``mmrec`` (:func:`save_tensors`, :func:`load_tensors`).
Every write is atomic; every read checks the schema and names the file and column at fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, write_json


def embedding_files(folder: str | Path) -> list[Path]:
    """The ``emb-*.parquet`` files of an extract output folder (or one such file), sorted."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise UsageError(f"embeddings folder not found: {folder}")
    files = sorted(folder.glob("emb-*.parquet"))
    if not files:
        raise UsageError(f"no emb-*.parquet files in {folder}; run `mmrec extract` first")
    return files


def check_vector_column(path: Path, column: str) -> int:
    """Width of the fixed-size float list ``column`` of an embedding file; errors name the file and column."""
    schema = pq.read_schema(path)
    if column not in schema.names:
        vectors = [f.name for f in schema if pa.types.is_fixed_size_list(f.type)]
        raise UsageError(f"{path}: no column {column!r}; vector columns: {', '.join(vectors) or '(none)'}")
    field = schema.field(column)
    if not pa.types.is_fixed_size_list(field.type) or not pa.types.is_floating(field.type.value_type):
        raise InputError(f"{path}: column {column!r} is {field.type}, expected a fixed-size float list")
    if "key" not in schema.names:
        raise InputError(f"{path}: no 'key' column")
    return field.type.list_size


def read_embeddings(folder: str | Path, column: str = "fused") -> tuple[list[str], np.ndarray]:
    """``(keys, vectors (n, d) float32)`` of ``column`` over every embedding file of ``folder``.

    Rows where the column is null (a sample without that modality) are left out. Keys must be unique.
    """
    keys: list[str] = []
    chunks: list[np.ndarray] = []
    dim = None
    for path in embedding_files(folder):
        d = check_vector_column(path, column)
        if dim is not None and d != dim:
            raise InputError(f"{path}: column {column!r} has dim {d}, other files have {dim}")
        dim = d
        table = pq.read_table(path, columns=["key", column])
        values = table.column(column).combine_chunks()
        present = values.is_valid().to_numpy(zero_copy_only=False)
        flat = values.flatten().to_numpy(zero_copy_only=False) if len(values) else np.zeros(0, np.float32)
        # flatten() skips null lists, so its rows line up with the present ones
        chunks.append(flat.reshape(-1, d).astype(np.float32, copy=False))
        keys += [k for k, ok in zip(table.column("key").to_pylist(), present) if ok]
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim or 0), np.float32)
    if len(set(keys)) != len(keys):
        raise InputError(f"{folder}: duplicate keys in column {column!r}")
    return keys, vectors


def embedding_shards(folder: str | Path) -> dict[str, list[str]]:
    """``{shard: keys in file order}`` of an extract output folder (``emb-X.parquet`` -> ``X``)."""
    return {
        path.stem.removeprefix("emb-"): pq.read_table(path, columns=["key"]).column("key").to_pylist()
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


def save_codes(path: str | Path, keys: list[str], codes: np.ndarray, *, info: dict[str, Any]) -> None:
    """Write ``codes.parquet``: ``key`` then ``c1..cL`` int32; ``info`` in the file metadata."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(keys):
        raise UsageError(f"codes must be (n, L) with n = {len(keys)} keys, got shape {codes.shape}")
    arrays = [pa.array(keys, pa.string())] + [pa.array(codes[:, j].astype(np.int32)) for j in range(codes.shape[1])]
    names = ["key"] + [f"c{j + 1}" for j in range(codes.shape[1])]
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({"mmrec": json.dumps(info)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_codes(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Read ``codes.parquet`` -> ``(keys, codes (n, L) int64, info)``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"codes file not found: {path}")
    table = pq.read_table(path)
    levels = [n for n in table.column_names if n != "key"]
    expected = [f"c{j + 1}" for j in range(len(levels))]
    if "key" not in table.column_names or levels != expected or not levels:
        raise InputError(f"{path}: columns {table.column_names}, expected key, c1..cL")
    codes = np.stack([table.column(n).to_numpy() for n in levels], axis=1).astype(np.int64)
    raw = (table.schema.metadata or {}).get(b"mmrec")
    return table.column("key").to_pylist(), codes, json.loads(raw) if raw else {}


def save_tensors(path: str | Path, tensors: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """Write ``tensors`` (contiguous arrays) and ``info`` (JSON) to a safetensors file, atomically."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata={"mmrec": json.dumps(info)})


def load_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a safetensors file written by :func:`save_tensors` -> ``(tensors, info)``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"codebook file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            info = json.loads((f.metadata() or {}).get("mmrec", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from None
    if not isinstance(info, dict):
        raise InputError(f"{path}: no mmrec metadata; not written by mmrec")
    return tensors, info
