"""The files quantization reads and writes (docs/file-contracts.md).

- Embeddings: read and written by the one embedding store, :mod:`mmrec.store`.
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
from mmrec.io import atomic_path, read_safetensors


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


def codebook_sizes(codes: np.ndarray, info: dict[str, Any], path: str | Path = "codes") -> list[int]:
    """Each level's code count: ``codebook_sizes`` of the codes file's metadata (what ``mmrec quantize``
    wrote), else the largest code per level + 1 (files from elsewhere). ``codes`` ``(n, L)``, ``-1`` = no code."""
    observed = (codes.max(axis=0) + 1).clip(min=1).tolist() if len(codes) else [1] * codes.shape[1]
    sizes = info.get("codebook_sizes")
    if not sizes or len(sizes) != codes.shape[1]:
        return [int(s) for s in observed]
    if any(o > s for o, s in zip(observed, sizes)):
        raise InputError(f"{path}: codes exceed the codebook sizes {sizes} in its metadata")
    return [int(s) for s in sizes]


def save_tensors(path: str | Path, tensors: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """Write ``tensors`` (contiguous arrays) and ``info`` (JSON) to a safetensors file, atomically."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata={"mmrec": json.dumps(info)})


def load_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a safetensors file written by :func:`save_tensors` -> ``(tensors, info)``."""
    tensors, info = read_safetensors(path, "codebook file")
    if not isinstance(info, dict):
        raise InputError(f"{path}: no mmrec metadata; not written by mmrec")
    return {k: v.numpy() for k, v in tensors.items()}, info
