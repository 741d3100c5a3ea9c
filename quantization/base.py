"""What every code quantizer offers, and the ``QUANTIZERS`` registry.

A quantizer is sklearn-style: ``fit(x)``, ``transform(x) -> (n, L) int64 codes``, ``fit_transform``,
``reconstruct(codes) -> (n, d)``, ``save(path)`` / ``load(path)`` (one safetensors file: the
codebooks plus a JSON description under the metadata key ``mmrec``). :func:`load_quantizer` reads any
of them back by the method named in the file. Registered methods (imported on first use):
``rq-kmeans``, ``balanced``, ``vq``, ``rq-vae``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmrec.config import build_config, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.quantization.files import load_tensors, save_tensors
from mmrec.registry import Registry
from mmrec.store import check_vectors

QUANTIZERS = Registry("quantizer")
QUANTIZERS.register("rq-kmeans", "mmrec.quantization.rq_kmeans:RQKMeans")
QUANTIZERS.register("balanced", "mmrec.quantization.rq_kmeans:BalancedRQKMeans")
QUANTIZERS.register("vq", "mmrec.quantization.vq:VQCodes")
QUANTIZERS.register("rq-vae", "mmrec.quantization.rq_vae:RQVAEQuantizer")


class CodeQuantizer:
    """Base class; subclasses set ``method`` and ``config_class``, declare their fitted state as
    class attributes that default to None, and implement the hooks."""

    method: ClassVar[str] = ""
    config_class: ClassVar[type]

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        """``config``: the method's config dataclass, a dict or a YAML path; ``overrides`` replace fields
        (an unknown name is one :class:`UsageError` listing the known ones)."""
        what = self.method or self.config_class.__name__
        self.config = replace_config(build_config(self.config_class, config, what), what, **overrides)
        self.dim: int | None = None

    # ---- hooks ------------------------------------------------------------------------------
    def fit_transform(self, x: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Fit on ``(n, d)`` vectors and return their ``(n, L)`` codes."""
        raise NotImplementedError

    def _transform(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """``(n, L)`` codes -> ``(n, d)`` approximations of the vectors they stand for."""
        raise NotImplementedError

    @property
    def codebook_sizes(self) -> list[int]:
        """Number of distinct values of each code column."""
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # ---- shared behaviour -------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.dim is not None

    def fit(self, x: np.ndarray, *, progress: bool = False) -> CodeQuantizer:
        self.fit_transform(x, progress=progress)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(n, d)`` vectors -> ``(n, L)`` int64 codes."""
        if not self.fitted:
            raise UsageError(f"{self.method} quantizer is not fitted; call fit() or load() first")
        return self._transform(check_vectors(x, dim=self.dim))

    def _check_fit_input(self, x: np.ndarray, min_items: int) -> np.ndarray:
        x = check_vectors(x)
        if len(x) < min_items:
            raise UsageError(f"{self.method}: {len(x)} items are fewer than the codebook needs ({min_items}); "
                             "lower codebook_size/levels or quantize more items")
        return x

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        sizes = self.codebook_sizes
        if codes.ndim != 2 or codes.shape[1] != len(sizes):
            raise UsageError(f"codes must be (n, {len(sizes)}), got shape {codes.shape}")
        if (codes < 0).any() or (codes >= np.asarray(sizes)).any():
            raise UsageError(f"codes out of range for codebook sizes {sizes}")
        return codes

    def save(self, path: str | Path) -> None:
        """Write the codebooks and config to one safetensors file."""
        if not self.fitted:
            raise UsageError(f"{self.method} quantizer is not fitted; nothing to save")
        info = {"method": self.method, "config": asdict(self.config), "dim": self.dim,
                "codebook_sizes": self.codebook_sizes}
        save_tensors(path, self._state(), info)

    @classmethod
    def load(cls, path: str | Path) -> CodeQuantizer:
        """Read a file written by :meth:`save` (of this method)."""
        tensors, info = load_tensors(path)
        if info.get("method") != cls.method:
            raise InputError(f"{path}: holds a {info.get('method')!r} quantizer, not {cls.method!r}")
        quantizer = cls(info["config"])
        quantizer.dim = int(info["dim"])
        quantizer._load_state(tensors)
        return quantizer


def load_quantizer(path: str | Path) -> CodeQuantizer:
    """Load any quantizer saved by :meth:`CodeQuantizer.save`, by the method recorded in the file."""
    _, info = load_tensors(path)
    return QUANTIZERS.get(str(info.get("method"))).load(path)
