"""User-side dense features: one vector per user, keyed by raw user id.

:class:`UserVectorProvider` reads one Parquet file, or a folder of ``emb-*.parquet`` files (through
:func:`mmrec.store.embedding_files`), with a key column and a fixed-size-list float column: the
``key, fused`` file ``mmrec cdr export`` writes (keys ``user-<id>``), an ``mmrec extract``-layout
folder, or ``mmrec graph export``'s ``node_type, node_id, vector`` file (``key_column="node_id"``,
``column="vector"``, ``node_type="user"``). ``key_format`` turns a raw user id of the log into a key
of the file (``"user-{}"``: 7 -> ``user-7``). Users the file lacks get the zero vector and are
counted in ``stats.misses``, as unknown items are by the item providers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.rankers.features.base import IndexedProvider, ProviderStats
from mmrec.store import embedding_files


class UserVectorProvider(IndexedProvider):
    """Dense vectors ``(n, width)`` by user key; see the module docstring. ``dim``: the expected width."""

    kind = "dense"

    def __init__(self, path: str | Path, *, column: str = "fused", key_column: str = "key", key_format: str = "{}",
                 node_type: str | None = None, name: str | None = None, dim: int | None = None) -> None:
        self.name = name or column
        self.key_format = key_format
        keys: list[str] = []
        parts: list[np.ndarray] = []
        for file in embedding_files(path):
            schema = pq.read_schema(file)
            wanted = [key_column, column, *(["node_type"] if node_type is not None else [])]
            for c in wanted:
                if c not in schema.names:
                    raise InputError(f"{file}: no column {c!r}; columns: {', '.join(schema.names)}")
            vector_type = schema.field(column).type
            if not (pa.types.is_fixed_size_list(vector_type) or pa.types.is_list(vector_type)) or not pa.types.is_floating(vector_type.value_type):
                raise InputError(f"{file}: column {column!r} has type {vector_type}, expected a list of floats")
            table = pq.read_table(file, columns=wanted)
            if node_type is not None:
                table = table.filter(pc.equal(table.column("node_type"), node_type))
            table = table.filter(table.column(column).is_valid())
            values = table.column(column).combine_chunks()
            width = len(values[0]) if len(values) else (vector_type.list_size if pa.types.is_fixed_size_list(vector_type) else 0)
            flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            if len(values) and flat.size != len(values) * width:
                raise InputError(f"{file}: column {column!r} holds vectors of different lengths")
            parts.append(flat.reshape(len(values), width))
            keys += [str(k) for k in table.column(key_column).to_pylist()]
        widths = {p.shape[1] for p in parts if len(p)}
        if len(widths) > 1:
            raise InputError(f"{path}: column {column!r} has different dims across files: {sorted(widths)}")
        if not widths:
            raise InputError(f"{path}: no user vectors in column {column!r}" + (f" for node_type {node_type!r}" if node_type else ""))
        self.width = widths.pop()
        if dim is not None and dim != self.width:
            raise UsageError(f"feature {self.name!r}: column {column!r} in {path} has dim {self.width}, expected {dim}")
        self.vectors = np.concatenate([p for p in parts if len(p)])
        if not np.isfinite(self.vectors).all():
            raise InputError(f"{path}: column {column!r} has NaN or infinite values")
        self.index = {k: i for i, k in enumerate(keys)}
        if len(self.index) != len(keys):
            raise InputError(f"{path}: duplicate keys in column {key_column!r}")
        self.stats = ProviderStats()

    def keys_of(self, user_ids: np.ndarray) -> list[str]:
        """The file keys of raw user ids, through ``key_format``."""
        try:
            return [self.key_format.format(u.item() if isinstance(u, np.generic) else u) for u in user_ids]
        except (ValueError, IndexError, KeyError) as err:
            raise UsageError(f"feature {self.name!r}: key_format {self.key_format!r} cannot format user id "
                             f"{user_ids[0]!r}: {err}") from None

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        rows, found = self.stats.rows(self.index, keys)
        out = np.zeros((len(rows), self.width), np.float32)
        out[found] = self.vectors[rows[found]]
        return out
