"""RQ-Kmeans semantic IDs (QARM step 2; OneRec), plain and balanced.

Residual quantization with k-means codebooks, no training beyond k-means (QARM [3P]; reference
implementation: alibaba/TorchEasyRec ``sid_rqkmeans``): ``r_1 = x``; at level ``l`` fit ``K``
centroids ``C_l`` on ``r_l`` (FAISS, GPU when faiss-gpu and CUDA are present), ``c_l = argmin_k
||r_l - C_l[k]||``, ``r_{l+1} = r_l - C_l[c_l]``. The code of ``x`` is ``(c_1, ..., c_L)`` and
``x ≈ sum_l C_l[c_l]``.

``BalancedRQKMeans`` uses OneRec v1's balanced k-means at every level (:func:`balanced_kmeans`:
each centroid takes ``n/K`` items), so on the fitted items every level's code sizes differ by at
most one. [I] ``transform`` of new vectors assigns each to its nearest centroid (balancing needs the
whole set); ``fit_transform`` returns the balanced codes of the fitted items. ``dedup="level"`` adds
a collision-aware level (:mod:`mmrec.quantization.collisions`) that ``transform`` assigns plainly.
[I] Level ``l`` uses seed ``seed + l``; FAISS's subsampling is off (every vector trains).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from mmrec.errors import UsageError
from mmrec.quantization.base import CodeQuantizer
from mmrec.quantization.collisions import extra_level
from mmrec.quantization.kmeans import assign, balanced_kmeans, kmeans


@dataclass
class RQKMeansConfig:
    levels: int = 3
    codebook_size: int = 256
    niter: int = 20
    nredo: int = 1
    seed: int = 0
    dedup: str | None = None  # None or "level"; "suffix" is added outside the quantizer
    gpu: bool | None = None  # None: use faiss-gpu when present

    def __post_init__(self) -> None:
        if self.levels < 1 or self.codebook_size < 2 or self.niter < 1 or self.nredo < 1:
            raise UsageError(f"need levels >= 1, codebook_size >= 2, niter >= 1, nredo >= 1; got {self}")
        if self.dedup not in (None, "level"):
            raise UsageError(f"RQ-Kmeans dedup must be None or 'level', got {self.dedup!r}")


class RQKMeans(CodeQuantizer):
    """Residual k-means codes; ``codebooks`` is ``(L, K, d)`` (``L + 1`` levels with ``dedup='level'``)."""

    method = "rq-kmeans"
    config_class = RQKMeansConfig
    balanced: ClassVar[bool] = False  # OneRec's balanced k-means at every level (BalancedRQKMeans)
    codebooks: np.ndarray | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        levels = self.config.levels + (self.config.dedup == "level")
        return [self.config.codebook_size] * levels

    def fit_transform(self, x: np.ndarray, *, progress: bool = False) -> np.ndarray:
        cfg = self.config
        x = self._check_fit_input(x, cfg.codebook_size)
        residual = x.copy()
        codes = np.empty((len(x), cfg.levels), dtype=np.int64)
        books = []
        for level in tqdm(range(cfg.levels), desc=self.method, unit="level", disable=not progress):
            seed = cfg.seed + level
            if self.balanced:
                centroids, labels = balanced_kmeans(residual, cfg.codebook_size, niter=cfg.niter, seed=seed)
            else:
                centroids = kmeans(residual, cfg.codebook_size, niter=cfg.niter, nredo=cfg.nredo, seed=seed, gpu=cfg.gpu)
                labels, _ = assign(residual, centroids)
            residual -= centroids[labels]
            codes[:, level] = labels
            books.append(centroids)
        if cfg.dedup == "level":
            codes, centroids = extra_level(residual, codes, cfg.codebook_size, niter=cfg.niter, seed=cfg.seed + cfg.levels)
            books.append(centroids)
        self.codebooks = np.stack(books).astype(np.float32)  # (L, K, d)
        self.dim = x.shape[1]
        return codes

    def _transform(self, x: np.ndarray) -> np.ndarray:
        residual = x.copy()
        codes = np.empty((len(x), len(self.codebooks)), dtype=np.int64)
        for level, centroids in enumerate(self.codebooks):
            codes[:, level], _ = assign(residual, centroids)
            residual -= centroids[codes[:, level]]
        return codes

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        codes = self.check_codes(codes)
        return sum(book[codes[:, level]] for level, book in enumerate(self.codebooks))

    def _state(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks}

    def _load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.codebooks = tensors["codebooks"]


class BalancedRQKMeans(RQKMeans):
    """RQ-Kmeans with OneRec's balanced k-means at every level."""

    method = "balanced"
    balanced = True
