"""Benchmark peers in their own virtualenvs: the one helper every ``bench/`` script uses to make them.

A peer (cornac, RecBole, clip-retrieval, ...) never enters mmrec's environment: :func:`ensure_venv`
makes ``python3 -m venv DIR`` and ``pip install``s the peer's packages there (torch 2.14.1 resolves
from local disk), unless a venv that already imports the peer is
there. :func:`peer_python` runs code in it. The pinned package lists live here, once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "bench-out"

# name -> (pip requirements, module whose import proves the venv works, distributions whose versions are reported)
PEERS: dict[str, tuple[list[str], str, list[str]]] = {
    "torch-rechub": (["torch==2.14.1", "torchvision==0.29.1", "torch-rechub"], "torch_rechub",
                     ["torch-rechub", "torch", "numpy"]),
    "vector-quantize-pytorch": (["torch==2.14.1", "vector-quantize-pytorch"], "vector_quantize_pytorch",
                                ["vector-quantize-pytorch", "torch", "numpy"]),
    # transformers: cornac's TIGER imports it (its SASRec does not)
    "cornac": (["torch==2.14.1", "cornac==3.0.1", "transformers==5.24.0"], "cornac, cornac.models.tiger.tiger",
               ["cornac", "torch", "transformers", "numpy"]),
    "recbole": (["torch==2.14.1", "recbole==1.2.1", "numpy<2", "pandas<2.3", "scipy<1.14"], "recbole",
                ["recbole", "torch", "numpy", "pandas", "scipy"]),
}


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def default_venv(name: str) -> Path:
    """Where a peer's venv lives unless a script is told otherwise: ``bench-out/peer-NAME``."""
    return DEFAULT_DIR / f"peer-{name}"


def venv_versions(venv: Path, module: str, distributions: list[str]) -> dict[str, str] | None:
    """Versions of ``distributions`` in ``venv``, or None when it is missing or ``module`` does not import."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return None
    code = (f"import json, importlib.metadata as m, {module};"
            f"print(json.dumps({{p: m.version(p) for p in {distributions!r}}}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def ensure_venv(name: str, venv: Path | None = None, log_dir: Path | None = None,
                packages: list[str] | None = None, module: str | None = None,
                distributions: list[str] | None = None) -> dict[str, Any]:
    """Make peer ``name``'s venv unless a working one is there; returns where, whether installed now,
    install seconds and versions. Exits with the pip log's path when the install fails."""
    default_packages, default_module, default_dists = PEERS.get(name, ([], name, [name]))
    packages, module = packages or default_packages, module or default_module
    distributions = distributions or default_dists
    venv = Path(venv or default_venv(name))
    versions = venv_versions(venv, module, distributions)
    if versions is not None:
        _log(f"reusing peer venv {venv} ({name} {versions.get(name, '?')})")
        return {"venv": str(venv), "installed_now": False, "install_s": None, "versions": versions}
    log_path = Path(log_dir or venv.parent) / f"peer-{name}-install.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _log(f"making peer venv {venv}: pip install {' '.join(packages)} (torch from local disk; minutes, ~6 GB; log {log_path})")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        for cmd in (["python3", "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", *packages]):
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"peer install failed: {' '.join(cmd)}; see {log_path}")
    seconds = time.perf_counter() - start
    versions = venv_versions(venv, module, distributions)
    if versions is None:
        sys.exit(f"peer venv {venv} was made but {module} does not import; see {log_path}")
    _log(f"peer venv ready in {seconds:.0f} s: {versions}")
    return {"venv": str(venv), "installed_now": True, "install_s": round(seconds, 1), "versions": versions}


def peer_python(venv: Path | str) -> str:
    """The interpreter of a peer venv."""
    return str(Path(venv) / "bin" / "python")
