"""``mmrec quantize``: codes for every item of an embeddings folder, with their report (a job).

Reads one vector column of ``mmrec extract`` / ``mmrec align`` output (or any embeddings the store
reads: ``.npy`` matrices, a Parquet file with its own ``id_column``; :mod:`mmrec.store`), fits the chosen quantizer
(:data:`mmrec.quantization.QUANTIZERS`: ``rq-kmeans``, ``balanced``, ``vq``, ``rq-vae``; the job's
options are :class:`QuantizeJob`) and writes into ``out``:
``codebook.safetensors`` (:meth:`CodeQuantizer.save`), ``codes.parquet`` (``key, c1..cL``),
``report.json`` (:func:`code_report` plus method, timings and, for RQ-VAE, the training history) and
``usage.png``. ``dedup="suffix"`` appends a collision counter column to the saved codes;
``dedup="level"`` (residual k-means methods) trains a collision-aware extra level
(:mod:`mmrec.quantization.collisions`); either way the report's ``before_dedup`` holds
:func:`~mmrec.quantization.report.collision_stats` of the codes without that column.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.io import output_folder, write_json
from mmrec.quantization.base import QUANTIZERS
from mmrec.quantization.collisions import DEDUP_METHODS, add_suffix
from mmrec.quantization.files import save_codes
from mmrec.quantization.report import code_report, collision_stats, plot_usage
from mmrec.store import ID_COLUMN_HELP, check_vectors, read_embeddings
from mmrec.threads import THREADS_HELP, use_threads


@dataclass
class QuantizeJob:
    """Options of ``mmrec quantize``. ``levels`` / ``codebook_size`` None keep the method's defaults;
    ``options`` are further fields of the method's config (``{"niter": 5}``, ``{"epochs": 10}`` ...)."""

    method: str = field(default="rq-kmeans", metadata={"help": "quantizer: rq-kmeans, balanced, vq or rq-vae"})
    column: str = field(default="fused", metadata={"help": "vector column to quantize (Parquet input)", "aliases": ("--vector-column",)})
    id_column: str = field(default="key", metadata={"help": ID_COLUMN_HELP})
    levels: int | None = field(default=None, metadata={"help": "code levels (for vq: the K nearest items); none keeps the method's"})
    codebook_size: int | None = field(default=None, metadata={
        "help": "codes per level (for vq: the bank size); none keeps the method's"})
    dedup: str | None = field(default=None, metadata={
        "help": "resolve collisions: suffix (a counter column) or level (a collision-aware extra level)",
        "choices": DEDUP_METHODS})
    seed: int = field(default=0, metadata={"help": "seed of the quantizer"})
    threads: int | None = field(default=None, metadata={"help": THREADS_HELP})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "further fields of the method's config"})

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.dedup not in (None, *DEDUP_METHODS):
            raise UsageError(f"dedup must be one of {DEDUP_METHODS} or None, got {self.dedup!r}")
        QUANTIZERS.get(self.method)
        if self.dedup == "level" and self.method not in ("rq-kmeans", "balanced"):
            raise UsageError(f"dedup 'level' needs a residual k-means method (rq-kmeans, balanced), not {self.method!r}; "
                             "use 'suffix'")

    def build_quantizer(self):
        """The method's quantizer with this job's sizes, seed and options (unknown options fail)."""
        sizes = {k: v for k, v in (("levels", self.levels), ("codebook_size", self.codebook_size)) if v is not None}
        level = {"dedup": "level"} if self.dedup == "level" else {}
        return QUANTIZERS.build(self.method, seed=self.seed, **sizes, **level, **self.options)


def quantize(emb: str | Path, out: str | Path, config: QuantizeJob | dict | str | Path | None = None, *,
             progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Quantize ``column`` of the embeddings folder ``emb`` into ``out``; returns the report.

    ``config``: a :class:`QuantizeJob`, a dict or a YAML path; keyword ``overrides`` replace its
    fields (``quantize(emb, out, method="vq", levels=4)``). ``out`` is claimed first
    (:func:`mmrec.io.output_folder`): an unwritable folder fails before fitting, a failed job leaves
    nothing there.
    """
    job = replace_config(build_config(QuantizeJob, config, "quantize"), "quantize", **overrides)
    quantizer = job.build_quantizer()
    with output_folder(out) as out, use_threads(job.threads, what="quantize threads"):
        return _quantize(emb, out, job, quantizer, progress)


def _quantize(emb: str | Path, out: Path, job: QuantizeJob, quantizer: Any, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    keys, x = read_embeddings(emb, job.column, id_column=job.id_column)
    x = check_vectors(x, name=f"embeddings {job.column!r} in {emb}")
    codes = quantizer.fit_transform(x, progress=progress)
    fit_s = time.perf_counter() - start
    x_hat = quantizer.reconstruct(codes)
    code_sizes = quantizer.codebook_sizes
    if job.dedup == "suffix":
        codes = add_suffix(codes, x - x_hat)
        code_sizes = [*code_sizes, int(codes[:, -1].max()) + 1]
    quantizer.save(out / "codebook.safetensors")
    info = {"method": job.method, "column": job.column, "codebook_sizes": code_sizes, "dedup": job.dedup, "source": str(emb)}
    save_codes(out / "codes.parquet", keys, codes, info=info)
    report = {
        **info, **code_report(codes, code_sizes, x=x, x_hat=x_hat),
        "dim": int(x.shape[1]), "fit_s": round(fit_s, 3), "config": vars(quantizer.config).copy(),
    }
    if job.dedup is not None:
        report["before_dedup"] = collision_stats(codes[:, :-1])
    if hasattr(quantizer, "history"):
        report["training"] = quantizer.history
    plot_usage(codes, code_sizes, out / "usage.png", title=f"{job.method}: {len(keys)} items, {len(code_sizes)} levels")
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
