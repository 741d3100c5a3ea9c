"""The files quantization reads and writes (docs/file-contracts.md).

- Embeddings: read and written by the one embedding store, :mod:`mmrec.store`.
- Codes: ``codes.parquet`` with ``key`` and ``c1..cL`` (int32), the quantizer and level sizes in the
  file metadata (:func:`save_codes`, :func:`load_codes`).
- Codes exchanged with LC-Rec / LETTER / MiniOneRec: ``<DS>.index.json``, ``{"item index": ["<a_12>",
  "<b_3>", "<c_200>"]}`` (level j's token is ``<{letter j}_{code}>``, letters a, b, c ...), with
  mmrec's id map ``<DS>.keys.json`` beside it (``{"keys": {index: key}, "info": {...}}``, which those
  projects ignore) (:func:`save_index_json`). :func:`load_codes` reads it too: keys from the id map,
  or, for a file made elsewhere, ``item_key.format(index)`` (``item-000012``, the keys ``mmrec seq
  import`` gives LC-Rec item 12).
- Codebooks: ``codebook.safetensors``, tensors plus a JSON description under the metadata key
  ``mmrec`` (:func:`save_tensors`, :func:`load_tensors`).
Every write is atomic; every read checks the schema and names the file and column at fault.
"""

from __future__ import annotations

import json
import re
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


INDEX_SUFFIX = ".index.json"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def id_map_path(path: str | Path) -> Path:
    """The id map beside an ``.index.json``: ``Scientific.index.json`` -> ``Scientific.keys.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(INDEX_SUFFIX) + ".keys.json")


def code_tokens(codes: np.ndarray) -> list[list[str]]:
    """LC-Rec's level tokens of code tuples ``(n, L)``: ``[12, 3, 200]`` -> ``["<a_12>", "<b_3>", "<c_200>"]``."""
    if codes.shape[1] > len(_LETTERS):
        raise UsageError(f"LC-Rec tokens name at most {len(_LETTERS)} levels, got {codes.shape[1]}")
    return [[f"<{_LETTERS[j]}_{int(c)}>" for j, c in enumerate(row)] for row in codes]


def save_index_json(path: str | Path, ids: list[str], keys: list[str], codes: np.ndarray, *, info: dict[str, Any]) -> Path:
    """Write ``codes`` (n, L) as LC-Rec's ``.index.json`` under item indexes ``ids``, and the id map
    ``ids -> keys`` (with ``info``) beside it; returns the id map's path."""
    path = Path(path)
    if not path.name.endswith(INDEX_SUFFIX):
        raise UsageError(f"an LC-Rec codes file is named <DS>{INDEX_SUFFIX}, got {path.name}")
    codes = np.asarray(codes)
    if codes.ndim != 2 or not len(ids) == len(keys) == len(codes):
        raise UsageError(f"codes must be (n, L) with n = {len(keys)} keys and ids, got shape {codes.shape}")
    if len(codes) and codes.min() < 0:
        raise UsageError("codes must be >= 0 to be written as LC-Rec tokens")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(zip(ids, code_tokens(codes)))))
    ids_path = id_map_path(path)
    with atomic_path(ids_path) as tmp:
        tmp.write_text(json.dumps({"format": "mmrec-id-map", "version": 1, "keys": dict(zip(ids, keys)), "info": info}))
    return ids_path


def _load_index_json(path: Path, item_key: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(index, dict) or not index:
        raise InputError(f"{path}: expected a non-empty object {{item index: [tokens]}}")
    width = None
    codes = np.zeros((len(index), 0), np.int64)
    for n, (item, tokens) in enumerate(index.items()):
        parsed = [_TOKEN.fullmatch(t) if isinstance(t, str) else None for t in tokens] if isinstance(tokens, list) else [None]
        if not parsed or None in parsed or [m.group(1) for m in parsed] != list(_LETTERS[: len(parsed)]):
            raise InputError(f"{path}: item {item!r} has tokens {tokens!r}, expected [\"<a_N>\", \"<b_N>\", ...]")
        if width is None:
            width = len(parsed)
            codes = np.zeros((len(index), width), np.int64)
        elif len(parsed) != width:
            raise InputError(f"{path}: item {item!r} has {len(parsed)} levels, the first item {width}")
        codes[n] = [int(m.group(2)) for m in parsed]
    ids = list(index)
    ids_path = id_map_path(path)
    if ids_path.is_file():
        mapping = json.loads(ids_path.read_text(encoding="utf-8"))
        keys_of = mapping.get("keys", {}) if isinstance(mapping, dict) else {}
        missing = [i for i in ids if i not in keys_of]
        if missing:
            raise InputError(f"{ids_path}: no key for {len(missing)} item(s) of {path.name}, e.g. {missing[0]!r}")
        return [keys_of[i] for i in ids], codes, mapping.get("info", {})
    if not all(re.fullmatch(r"\d+", i) for i in ids):
        raise InputError(f"{path}: item indexes must be integers without an id map ({ids_path.name}), got e.g. "
                         f"{next(i for i in ids if not i.isdigit())!r}")
    return [item_key.format(int(i)) for i in ids], codes, {"format": "lcrec"}


def load_codes(path: str | Path, *, item_key: str = "item-{:06d}") -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Read ``codes.parquet``, or LC-Rec's ``<DS>.index.json`` -> ``(keys, codes (n, L) int64, info)``.

    An ``.index.json`` without mmrec's id map beside it names item ``i`` ``item_key.format(i)``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"codes file not found: {path}")
    if path.name.endswith(INDEX_SUFFIX):
        return _load_index_json(path, item_key)
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
