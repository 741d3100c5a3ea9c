"""Quantized item codes from ``mmrec quantize`` (``codes.parquet``: ``key, c1..cL``) or LC-Rec's ``<DS>.index.json``.

Codes are small (L int32 per item), so :class:`CodeProvider` holds them in memory. Codebook sizes
come from the file's metadata (``codebook_sizes``, written by ``mmrec quantize``), else from the
largest code per level. A key without codes gets ``-1`` on every level, which
:class:`mmrec.quantization.CodeEmbedding` embeds to the zero vector, counted as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmrec.errors import InputError, UsageError
from mmrec.quantization.files import codebook_sizes, load_codes
from mmrec.rankers.features.base import IndexedProvider, ProviderStats


class CodeProvider(IndexedProvider):
    """Code tuples ``(n, L)`` int64 by key; ``path`` is ``codes.parquet``, an ``.index.json`` or the quantize output folder.

    ``levels``: the level count the caller expects; a file with another count fails here.
    """

    kind = "codes"

    def __init__(self, path: str | Path, *, name: str | None = None, levels: int | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "codes.parquet"
        keys, codes, info = load_codes(path)
        self.name = name or "codes"
        self.width = codes.shape[1]
        if levels is not None and levels != self.width:
            raise UsageError(f"feature {self.name!r}: {path} has {self.width} code levels, expected {levels}")
        if len(codes) and codes.min() < 0:
            raise InputError(f"{path}: negative codes")
        self.codebook_sizes = codebook_sizes(codes, info, path)
        self.codes = codes
        self.index = {k: i for i, k in enumerate(keys)}
        if len(self.index) != len(keys):
            raise InputError(f"{path}: duplicate keys")
        self.path = path
        self.stats = ProviderStats()

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        rows, found = self.stats.rows(self.index, keys)
        out = np.full((len(rows), self.width), -1, np.int64)
        out[found] = self.codes[rows[found]]
        return out
