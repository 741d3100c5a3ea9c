"""Helpers for testing code built on mmrec (and mmrec itself): skips and generated shards.

``with_cuda`` / ``with_package(name)`` / ``with_gloo`` skip a test cleanly when CUDA, an optional package
or torch's gloo backend is missing; ``torchrun(argv, cwd)`` runs an ``mmrec`` command under torchrun on CPU
processes; ``sample_shards(folder)`` writes small SYNTHETIC shards with planted topics.
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


def with_gloo(fn: Callable) -> Callable:
    """Mark ``fn`` slow and skip it where torch.distributed's gloo backend (DDP on CPU) or a local TCP port
    for the processes' rendezvous is missing."""
    import socket

    import pytest
    import torch.distributed as dist

    usable = dist.is_available() and dist.is_gloo_available()
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
    except OSError:
        usable = False
    return pytest.mark.skipif(not usable, reason="needs torch.distributed with gloo and a local TCP port")(pytest.mark.slow(fn))


def torchrun(argv: list[str], *, cwd: str | Path, nproc: int = 2, timeout: float = 300) -> dict:
    """``mmrec ARGV --json`` under ``torchrun --standalone --nproc-per-node NPROC`` (CPU, one thread per
    process); returns rank 0's report (the other ranks print nothing). A failed run is an AssertionError
    with the end of its stderr (the workers' last lines, then torchrun's summary of exit codes).

    A run whose first failed worker was killed by a signal (torchrun's root cause has a negative exit code:
    no Python error, e.g. the OS ending a process on a loaded CI machine) is run once more, from an empty
    ``--out``, with a warning that carries the first run's stderr; a worker that raised is never retried."""
    import json
    import os
    import re
    import shutil
    import subprocess
    import sys
    import warnings

    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "mmrec", "--", *argv, "--json"]  # "--": torchrun would read --log as its own --log-dir
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    root = done.stderr[done.stderr.rfind("Root Cause"):] if "Root Cause" in done.stderr else ""
    if done.returncode != 0 and re.search(r"exitcode\s*:\s*-\d+", root):
        warnings.warn(f"torchrun: a worker was killed by a signal; running once more. First run:\n{done.stderr[-3000:]}",
                      stacklevel=2)
        if "--out" in argv:
            shutil.rmtree(Path(cwd) / argv[argv.index("--out") + 1], ignore_errors=True)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"torchrun exited {done.returncode}:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout[done.stdout.index("{"):])


def sample_shards(folder: str | Path, *, items: int = 32, segments: int = 8, seed: int = 0, **kwargs: Any) -> dict:
    """Write small SYNTHETIC sample shards into ``folder``; returns the summary of ``write_sample_data``."""
    from mmrec.synthetic.sample_data import write_sample_data

    return write_sample_data(folder, items=items, segments=segments, seed=seed, **kwargs)
