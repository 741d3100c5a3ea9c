"""Cached embeddings from ``mmrec extract`` (or ``mmrec align``) output, memory-mapped.

Parquet is encoded, so it cannot be memory-mapped as vectors. On first use,
:class:`EmbeddingProvider` streams one fixed-size-list column of every ``emb-*.parquet`` file, row
group by row group, into a float32 ``.npy`` cache file and then opens that with
``np.load(mmap_mode="r")``: memory holds the key index and the rows a lookup touches, never the
whole matrix. The cache (``<column>.npy``, ``<column>.keys.parquet``, ``<column>.json``) lives in
``cache_dir`` (default ``<folder>/.mmrec-cache``) and is rebuilt when the source files change (names,
sizes, modification times). Rows whose column is null (a sample without that modality) and keys
missing from the folder get the zero vector, counted as misses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, write_json
from mmrec.rankers.features.base import IndexedProvider, ProviderStats
from mmrec.store import column_dim as check_vector_column
from mmrec.store import embedding_files, open_source


def _fingerprint(files: list[Path], column: str) -> dict:
    return {"column": column, "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


class EmbeddingProvider(IndexedProvider):
    """Dense vectors of one column of an embeddings folder, by key (see the module docstring).

    ``dim``: the width the caller expects; a folder with another width fails here with one line.
    """

    kind = "dense"

    def __init__(self, folder: str | Path, *, column: str = "fused", name: str | None = None,
                 dim: int | None = None, cache_dir: str | Path | None = None) -> None:
        files = embedding_files(folder)
        dims = {check_vector_column(p, column) for p in files}  # checks key and a float list column
        if len(dims) != 1:
            raise InputError(f"{folder}: column {column!r} has different dims across files: {sorted(dims)}")
        self.width = dims.pop()
        self.name = name or column
        if dim is not None and dim != self.width:
            raise UsageError(f"feature {self.name!r}: column {column!r} in {folder} has dim {self.width}, expected {dim}")
        self.column = column
        self.stats = ProviderStats()
        base = Path(folder) if Path(folder).is_dir() else Path(folder).parent
        self.cache_dir = Path(cache_dir) if cache_dir is not None else base / ".mmrec-cache"
        self.vectors, keys, present = self._open_cache(files)
        self.index = {k: i for i, (k, ok) in enumerate(zip(keys, present)) if ok}
        if len(self.index) != int(np.count_nonzero(present)):
            raise InputError(f"{folder}: duplicate keys in column {column!r}")

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        rows, found = self.stats.rows(self.index, keys)
        out = np.zeros((len(rows), self.width), np.float32)
        if found.any():
            take = rows[found]
            order = np.argsort(take)  # sorted reads are sequential on the memory map
            out[np.flatnonzero(found)[order]] = self.vectors[take[order]]
        return out

    # ---- the cache ---------------------------------------------------------------------------
    def _open_cache(self, files: list[Path]) -> tuple[np.ndarray, list[str], np.ndarray]:
        npy = self.cache_dir / f"{self.column}.npy"
        keys_file = self.cache_dir / f"{self.column}.keys.parquet"
        meta_file = self.cache_dir / f"{self.column}.json"
        fingerprint = _fingerprint(files, self.column)
        fresh = meta_file.is_file() and npy.is_file() and keys_file.is_file()
        if not fresh or json.loads(meta_file.read_text()) != fingerprint:
            self._build_cache(files, npy, keys_file)
            write_json(meta_file, fingerprint)  # last: the cache counts only once this exists
        table = pq.read_table(keys_file)
        return (np.load(npy, mmap_mode="r"), table.column("key").to_pylist(),
                table.column("present").to_numpy(zero_copy_only=False))

    def _build_cache(self, files: list[Path], npy: Path, keys_file: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        source = open_source(files, column=self.column)  # the one embedding store: checked, streamed
        keys: list[str] = []
        present: list[np.ndarray] = []
        with atomic_path(npy) as tmp:
            matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(source.max_rows, self.width))
            row = 0
            for batch in source.batches():  # null vectors (a modality the sample lacked) are passed over
                matrix[row:row + len(batch.vectors)] = batch.vectors
                row += len(batch.vectors)
                keys += batch.keys.to_pylist()
                present.append(np.ones(len(batch.vectors), bool))
            matrix.flush()
            del matrix
        mask = np.concatenate(present) if present else np.zeros(0, bool)
        with atomic_path(keys_file) as tmp:
            pq.write_table(pa.table({"key": pa.array(keys, pa.string()), "present": pa.array(mask)}), tmp)
