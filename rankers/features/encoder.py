"""On-the-fly embeddings for items no extract job has seen yet: an encoder behind an LRU cache.

:class:`EncoderProvider` looks up each key's raw content in ``source`` (a mapping, or a callable
that raises ``KeyError`` for an unknown key), embeds the ones not in its cache with
``encoder.embed`` in batches, and keeps the newest ``cache_size`` vectors (least recently used out
first). A key without content, or whose content the encoder rejects (:class:`InputError`), gets the
zero vector, counted as a miss and not cached. Chain it behind an :class:`EmbeddingProvider` with
:class:`ChainProvider` so that only new items are encoded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.rankers.features.base import ProviderStats


def parquet_source(path: str | Path, column: str) -> dict[str, Any]:
    """``{key: raw}`` from a Parquet file with ``key`` and ``column`` (strings or bytes)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"encoder source not found: {path}")
    names = pq.read_schema(path).names
    for needed in ("key", column):
        if needed not in names:
            raise InputError(f"{path}: no column {needed!r}; columns: {', '.join(names)}")
    table = pq.read_table(path, columns=["key", column])
    return dict(zip(table.column("key").to_pylist(), table.column(column).to_pylist()))


class EncoderProvider:
    """Dense vectors from an encoder, for keys whose raw content ``source`` holds.

    ``encoder``: an :class:`mmrec.encoders.Encoder` or a spec for :func:`mmrec.encoders.load_encoder`
    (any object with ``dim`` and ``embed(raws) -> (n, dim)`` works). ``dim``: the width the caller
    expects; an encoder of another width fails here with one line.
    """

    kind = "dense"

    def __init__(self, encoder: Any, source: Mapping[str, Any] | Callable[[str], Any], *, name: str | None = None,
                 cache_size: int = 4096, batch_size: int = 64, dim: int | None = None, weights: str | None = None) -> None:
        if isinstance(encoder, str):
            from mmrec.encoders import load_encoder

            encoder = load_encoder(encoder, weights=weights)
        if cache_size < 0 or batch_size < 1:
            raise UsageError(f"cache_size must be >= 0 and batch_size >= 1, got {cache_size}, {batch_size}")
        self.encoder = encoder
        self.source = source
        self.name = name or getattr(encoder, "name", "encoder")
        self.width = int(encoder.dim)
        if dim is not None and dim != self.width:
            raise UsageError(f"feature {self.name!r}: encoder {self.name} gives dim {self.width}, expected {dim}")
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.stats = ProviderStats()
        self.encoded = 0  # vectors computed by the encoder (cache misses that had content)

    def __contains__(self, key: object) -> bool:
        if isinstance(self.source, Mapping):
            return key in self.source
        try:
            self.source(key)
        except KeyError:
            return False
        return True

    def _raw(self, key: str) -> Any:
        try:
            return self.source[key] if isinstance(self.source, Mapping) else self.source(key)
        except KeyError:
            return None

    def _embed(self, raws: list[Any]) -> list[np.ndarray | None]:
        try:
            return list(np.asarray(self.encoder.embed(raws).detach().cpu().float(), np.float32))
        except InputError:
            if len(raws) == 1:
                return [None]
            return [v for raw in raws for v in self._embed([raw])]  # find the bad sample(s)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self.cache[key] = vector
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(keys), self.width), np.float32)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
                out[i] = hit
            else:
                todo.setdefault(key, []).append(i)
        pending = [(k, raw) for k in todo if (raw := self._raw(k)) is not None]
        misses = sum(len(todo[k]) for k in todo) - sum(len(todo[k]) for k, _ in pending)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start:start + self.batch_size]
            for (key, _), vector in zip(chunk, self._embed([raw for _, raw in chunk])):
                if vector is None:
                    misses += len(todo[key])
                    continue
                self.encoded += 1
                out[todo[key]] = vector
                self._remember(key, vector)
        self.stats.requests += len(keys)
        self.stats.misses += misses
        return out
