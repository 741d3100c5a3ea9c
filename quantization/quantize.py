"""``mmrec quantize``: codes for every item of an embeddings folder, with their report.

Reads one vector column of ``mmrec extract`` / ``mmrec align`` output, fits the chosen quantizer
(``QUANTIZERS``: ``rq-kmeans``, ``balanced``, ``vq``, ``rq-vae``) and writes into ``out``:
``codebook.safetensors`` (:meth:`CodeQuantizer.save`), ``codes.parquet`` (``key, c1..cL``),
``report.json`` (:func:`code_report` plus method, timings and, for RQ-VAE, the training history) and
``usage.png``. ``dedup="suffix"`` appends a collision counter column to the saved codes;
``dedup="level"`` (residual k-means methods) trains a collision-aware extra level
(:mod:`mmrec.quantization.collisions`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.errors import UsageError
from mmrec.io import write_json
from mmrec.quantization.base import QUANTIZERS
from mmrec.quantization.collisions import DEDUP_METHODS, add_suffix
from mmrec.quantization.files import save_codes
from mmrec.store import read_embeddings
from mmrec.quantization.kmeans import check_vectors
from mmrec.quantization.report import code_report, plot_usage


def quantize(emb: str | Path, out: str | Path, *, method: str = "rq-kmeans", levels: int | None = None,
             codebook_size: int | None = None, column: str = "fused", dedup: str | None = None,
             seed: int = 0, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Quantize ``column`` of the embeddings folder ``emb`` into ``out``; returns the report.

    ``levels``/``codebook_size`` None keep the method's defaults; ``options`` are further fields
    of the method's config (``niter=``, ``epochs=`` ...).
    """
    if dedup not in (None, *DEDUP_METHODS):
        raise UsageError(f"dedup must be one of {DEDUP_METHODS} or None, got {dedup!r}")
    builder = QUANTIZERS.get(method)
    if dedup == "level":
        if method not in ("rq-kmeans", "balanced"):
            raise UsageError(f"dedup 'level' needs a residual k-means method (rq-kmeans, balanced), not {method!r}; use 'suffix'")
        options["dedup"] = "level"
    sizes = {k: v for k, v in (("levels", levels), ("codebook_size", codebook_size)) if v is not None}
    quantizer = builder(seed=seed, **sizes, **options)
    start = time.perf_counter()
    keys, x = read_embeddings(emb, column)
    x = check_vectors(x, name=f"embeddings {column!r} in {emb}")
    codes = quantizer.fit_transform(x, progress=progress)
    fit_s = time.perf_counter() - start
    x_hat = quantizer.reconstruct(codes)
    code_sizes = quantizer.codebook_sizes
    if dedup == "suffix":
        codes = add_suffix(codes, x - x_hat)
        code_sizes = [*code_sizes, int(codes[:, -1].max()) + 1]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quantizer.save(out / "codebook.safetensors")
    info = {"method": method, "column": column, "codebook_sizes": code_sizes, "dedup": dedup, "source": str(emb)}
    save_codes(out / "codes.parquet", keys, codes, info=info)
    report = {
        **info, **code_report(codes, code_sizes, x=x, x_hat=x_hat),
        "dim": int(x.shape[1]), "fit_s": round(fit_s, 3), "config": vars(quantizer.config).copy(),
    }
    if hasattr(quantizer, "history"):
        report["training"] = quantizer.history
    plot_usage(codes, code_sizes, out / "usage.png", title=f"{method}: {len(keys)} items, {len(code_sizes)} levels")
    write_json(out / "report.json", _jsonable(report))
    return _jsonable(report)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
