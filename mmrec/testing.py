"""Helpers for testing code built on mmrec (and mmrec itself): skips and generated shards.

``with_cuda`` / ``with_package(name)`` skip a test cleanly when CUDA or an optional package is
missing; ``sample_shards(folder)`` writes small SYNTHETIC shards with planted topics.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any


def with_cuda(fn: Callable) -> Callable:
    """Mark ``fn`` as a GPU test, skipped when CUDA is not available."""
    import pytest
    import torch

    fn = pytest.mark.gpu(fn)
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(fn)


def with_package(name: str) -> Callable[[Callable], Callable]:
    """Skip the decorated test when the importable package ``name`` is not installed."""
    import pytest

    return pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"needs package {name!r}")


def sample_shards(folder: str | Path, *, items: int = 32, segments: int = 8, seed: int = 0, **kwargs: Any) -> dict:
    """Write small SYNTHETIC sample shards into ``folder``; returns the summary of ``write_sample_data``."""
    from mmrec.synthetic.sample_data import write_sample_data

    return write_sample_data(folder, items=items, segments=segments, seed=seed, **kwargs)
