"""The contract every feature provider keeps, and a chain that asks several in turn.

A provider turns item keys (the ``key`` of ``mmrec extract`` / ``mmrec quantize`` files) into model
inputs: ``kind == "dense"`` gives float32 vectors ``(n, width)``, ``kind == "codes"`` gives int64
code tuples ``(n, width)`` and also has ``codebook_sizes``. A key the provider does not know gets a
defined fallback (a zero vector; the code ``-1``, which :class:`mmrec.quantization.CodeEmbedding`
embeds to zero) and is counted in ``stats.misses``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from mmrec.errors import UsageError

KINDS = ("dense", "codes")


@dataclass
class ProviderStats:
    """Keys asked for, and how many of them got the fallback."""

    requests: int = 0
    misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def rows(self, index: dict[str, int], keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)`` of ``keys`` in ``index`` (row -1 where not found), counted here."""
        rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        found = rows >= 0
        self.requests += len(rows)
        self.misses += int((~found).sum())
        return rows, found


@runtime_checkable
class FeatureProvider(Protocol):
    """Keys -> model inputs; see the module docstring."""

    name: str
    kind: str  # "dense" or "codes"
    width: int  # vector dim, or code levels
    stats: ProviderStats

    def __contains__(self, key: object) -> bool: ...

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """``(len(keys), width)`` float32 (dense) or int64 (codes); unknown keys get the fallback."""
        ...


class IndexedProvider:
    """Shared part of providers that hold a ``key -> row`` dict, ``self.index``."""

    index: dict[str, int]

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: object) -> bool:
        return key in self.index


def fallback_rows(kind: str, n: int, width: int) -> np.ndarray:
    """``n`` fallback rows: zeros for dense vectors, ``-1`` (no code) for codes."""
    if kind == "dense":
        return np.zeros((n, width), np.float32)
    return np.full((n, width), -1, np.int64)


class ChainProvider:
    """Ask providers in order; a key goes to the first one that has it (e.g. cached, then encoder).

    All providers must agree on kind and width; a key none of them has gets the fallback.
    """

    def __init__(self, providers: Sequence[FeatureProvider], *, name: str | None = None) -> None:
        if not providers:
            raise UsageError("ChainProvider needs at least one provider")
        first = providers[0]
        for p in providers[1:]:
            if (p.kind, p.width) != (first.kind, first.width):
                raise UsageError(
                    f"cannot chain {first.name!r} ({first.kind}, width {first.width}) with "
                    f"{p.name!r} ({p.kind}, width {p.width})"
                )
        self.providers = list(providers)
        self.name = name or first.name
        self.kind = first.kind
        self.width = first.width
        self.stats = ProviderStats()
        if first.kind == "codes":
            self.codebook_sizes = list(first.codebook_sizes)

    def __contains__(self, key: object) -> bool:
        return any(key in p for p in self.providers)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        keys = list(keys)
        out = fallback_rows(self.kind, len(keys), self.width)
        todo = np.arange(len(keys))
        for provider in self.providers:
            if not len(todo):
                break
            has = np.array([keys[i] in provider for i in todo], dtype=bool)
            if has.any():
                out[todo[has]] = provider.lookup([keys[i] for i in todo[has]])
            todo = todo[~has]
        self.stats.requests += len(keys)
        self.stats.misses += len(todo)
        return out
