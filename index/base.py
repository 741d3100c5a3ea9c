"""What every index kind shares: row ↔ key mapping, search by key, the index folder's files.

An index folder (docs/file-contracts.md) holds the index itself (``index.faiss`` or ``tree.safetensors``),
``ids.parquet`` (``row`` int64, ``key`` string: row ``i`` of the index is the item ``key``) and
``index.json`` (kind, parameters, measured recall@k, QPS, build time), written last so that a folder
with an ``index.json`` is complete. Subclasses implement ``search``, ``vectors``, ``save`` and
``load``, and name their one search-time knob (``nprobe``, ``efSearch``, ``beam``) for tuning;
:meth:`BaseIndex.build` checks the config and opens the input for every kind, which implements
``_build_from``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.io import atomic_path, write_json
from mmrec.store import open_source

INDEX_JSON = "index.json"
IDS_PARQUET = "ids.parquet"


def read_info(folder: str | Path) -> dict[str, Any]:
    """The ``index.json`` of an index folder, or a :class:`UsageError` when it is not one."""
    path = Path(folder) / INDEX_JSON
    if not path.is_file():
        raise UsageError(f"not an index folder (no {INDEX_JSON}): {folder}")
    return json.loads(path.read_text())


def check_unique(keys: pa.Array) -> None:
    """A :class:`UsageError` naming a duplicated key, if any."""
    if pc.count_distinct(keys).as_py() == len(keys):
        return
    counts = pc.value_counts(keys)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
    raise UsageError(f"key {dup!r} appears more than once; keys must be unique across the index")


class BaseIndex:
    """Keys, metadata and key lookups around a concrete index; see the module docstring."""

    kind = "base"
    param_name: str | None = None  # the search-time knob tuned for recall
    config_class: ClassVar[type]  # the kind's build config dataclass (``k``, ``target_recall``, ...)

    def __init__(self, keys: pa.Array, info: dict[str, Any]) -> None:
        self.keys = keys
        self.info = info
        self._row_of: dict[str, int] | None = None
        self._lock = threading.Lock()

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def metric(self) -> str:
        return self.info.get("metric", "ip")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (q, k), rows (q, k))`` best first; rows -1 past the end of a short list."""
        raise NotImplementedError

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors ``(r, d)`` of index rows (decoded, for compressed indexes)."""
        raise NotImplementedError

    def param_grid(self) -> list[int]:
        """Increasing values of ``param_name`` to tune over (empty when there is no knob)."""
        return []

    def set_param(self, value: int) -> None:
        raise UsageError(f"{self.kind} index has no search parameter to set")

    def rows_of(self, keys: list[str]) -> np.ndarray:
        """Index rows of ``keys``; a :class:`UsageError` listing the unknown ones."""
        with self._lock:
            if self._row_of is None:  # built on first use: one dict lookup per key afterwards
                self._row_of = {key: row for row, key in enumerate(self.keys.to_pylist())}
        rows = [self._row_of.get(key, -1) for key in keys]
        missing = [key for key, row in zip(keys, rows) if row < 0]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UsageError(f"unknown key(s): {', '.join(map(repr, missing[:5]))}{more}")
        return np.asarray(rows, dtype=np.int64)

    def keys_of(self, rows: np.ndarray) -> list[list[str | None]]:
        """Keys of a ``(q, k)`` row matrix; None where a row is -1."""
        flat = np.asarray(rows).reshape(-1)
        taken = self.keys.take(pa.array(np.where(flat >= 0, flat, 0))).to_pylist()
        named = [key if r >= 0 else None for key, r in zip(taken, flat)]
        width = rows.shape[1] if rows.ndim == 2 else len(named)
        return [named[i : i + width] for i in range(0, len(named), width)]

    def search_keys(self, keys: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of items already in the index, by key (each item is usually its own first hit)."""
        return self.search(self.vectors(self.rows_of(keys)), k)

    def neighbours(self, queries: np.ndarray | None = None, *, keys: Sequence[str] | None = None, k: int = 10) -> list[list[dict[str, Any]]]:
        """Top-``k`` neighbours, per query, as ``[{"key", "row", "score"}, ...]``: by ``queries``
        vectors ``(q, d)`` or by the ``keys`` of indexed items (exactly one of the two)."""
        if (queries is None) == (keys is None):
            raise UsageError("search by vectors or by keys: give exactly one of them")
        scores, rows = self.search(queries, k) if keys is None else self.search_keys(list(keys), k)
        names = self.keys_of(rows)
        return [
            [{"key": key, "row": int(r), "score": float(s)} for key, r, s in zip(kk, rr, ss) if r >= 0]
            for kk, rr, ss in zip(names, rows, scores)
        ]

    @classmethod
    def build(
        cls,
        data: Any,
        out: str | Path | None = None,
        config: Any = None,
        *,
        column: str = "fused",
        keys: Sequence[str] | None = None,
        progress: bool = True,
        **overrides: Any,
    ) -> BaseIndex:
        """Build over Parquet embeddings (``column``) or an ``(n, d)`` array (optional ``keys``), tune
        the search knob for ``target_recall``; saved to ``out`` when given. ``config``: the kind's
        config dataclass or a dict; ``overrides`` replace its fields."""
        config = replace_config(build_config(cls.config_class, config, cls.kind), cls.kind, **overrides)
        start = time.perf_counter()
        built = cls._build_from(open_source(data, column=column, keys=keys), config, column=column,
                                progress=progress, start=start)
        if out is not None:
            built.save(out)
        return built

    @classmethod
    def _build_from(cls, source: Any, config: Any, *, column: str, progress: bool, start: float) -> BaseIndex:
        """The index over the opened ``source``, tuned (:meth:`_tune`); ``start``: when the build began."""
        raise NotImplementedError

    def _tune(self, queries: np.ndarray, truth: np.ndarray, exclude: np.ndarray, config: Any) -> float:
        """Tune the search knob for ``config.target_recall`` and measure recall into ``info``; the seconds taken."""
        from mmrec.index.tune import measure, tune

        t = time.perf_counter()
        self.info["tuning"] = tune(self, queries, truth, k=config.k, target=config.target_recall, exclude=exclude)
        tune_s = time.perf_counter() - t
        self.info["measured"] = {**measure(self, queries, truth, ks=(1, config.k), exclude=exclude), "k": config.k,
                                 "n_at_measure": self.n}
        return tune_s

    def _write_common(self, folder: Path) -> None:
        table = pa.table({"row": pa.array(np.arange(self.n, dtype=np.int64)), "key": self.keys})
        with atomic_path(folder / IDS_PARQUET) as tmp:
            pq.write_table(table, tmp)
        write_json(folder / INDEX_JSON, self.info)

    @staticmethod
    def _read_keys(folder: Path, n: int) -> pa.Array:
        path = folder / IDS_PARQUET
        if not path.is_file():
            raise UsageError(f"index folder {folder} has no {IDS_PARQUET}")
        keys = pq.read_table(path, columns=["key"]).column("key").combine_chunks()
        if len(keys) != n:
            raise UsageError(f"{path} has {len(keys)} rows, the index has {n}")
        return keys
