"""VQ codes (QARM step 2): an item's code is the ids of its K nearest items in the aligned space.

QARM [3P] takes the indices of the K (about 25) most similar items as an item's codes, by exact
nearest-neighbour search (FAISS inner product on L2-normalised vectors = cosine). Here ``levels`` is
K, and code column ``j`` holds the bank row of the ``j``-th nearest bank item. [I] The bank is every
fitted item, or a seeded random subset of ``codebook_size`` of them; a fitted item never lists
itself (``fit_transform`` excludes it), since its own id would make the code an item id.
[I] ``reconstruct`` is the normalised mean of the K neighbours' vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmrec.errors import UsageError
from mmrec.quantization.base import CodeQuantizer
from mmrec.quantization.kmeans import _faiss


@dataclass
class VQConfig:
    levels: int = 25  # K nearest items
    codebook_size: int | None = None  # bank size; None = every fitted item
    seed: int = 0
    block: int = 16384  # queries per FAISS search call

    def __post_init__(self) -> None:
        if self.levels < 1 or (self.codebook_size is not None and self.codebook_size < 2) or self.block < 1:
            raise UsageError(f"need levels >= 1, codebook_size None or >= 2, block >= 1; got {self}")


def _unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)


class VQCodes(CodeQuantizer):
    """K-nearest-item codes; ``bank`` ``(B, d)`` (normalised) is the codebook, ``bank_rows`` its fitted rows."""

    method = "vq"
    config_class = VQConfig
    bank: np.ndarray | None = None
    bank_rows: np.ndarray | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [len(self.bank)] * self.config.levels

    def fit_transform(self, x: np.ndarray, *, progress: bool = False) -> np.ndarray:
        cfg = self.config
        size = cfg.codebook_size or len(np.asarray(x))
        x = self._check_fit_input(x, max(size, cfg.levels + 1))
        rows = np.arange(len(x))
        if cfg.codebook_size is not None:
            rows = np.sort(np.random.default_rng(cfg.seed).choice(len(x), size=size, replace=False))
        self.bank, self.bank_rows, self.dim = _unit(x[rows]), rows, x.shape[1]
        own = np.full(len(x), -1, dtype=np.int64)
        own[rows] = np.arange(len(rows))
        return self._search(x, exclude=own)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return self._search(x, exclude=None)

    def _search(self, x: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        faiss = _faiss()
        k = self.config.levels
        if len(self.bank) < k + (exclude is not None):
            raise UsageError(f"vq: bank of {len(self.bank)} items is too small for {k} neighbours")
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.bank)
        extra = int(exclude is not None)
        codes = np.empty((len(x), k), dtype=np.int64)
        for start in range(0, len(x), self.config.block):
            _, found = index.search(_unit(x[start : start + self.config.block]), k + extra)  # (b, k + extra)
            if extra:
                mine = exclude[start : start + self.config.block, None]
                keep = found != mine
                keep[keep.sum(1) > k, -1] = False  # the item was not among its own neighbours
                found = found[keep].reshape(len(found), k)
            codes[start : start + len(found)] = found
        return codes

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        return _unit(self.bank[self.check_codes(codes)].mean(axis=1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "bank_rows": self.bank_rows}

    def _load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.bank, self.bank_rows = tensors["bank"], tensors["bank_rows"]
