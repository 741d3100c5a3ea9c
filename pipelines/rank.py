"""``mmrec rank train``: train a ranker from a :class:`RankConfig`, evaluate it, save it.

:func:`train` is the whole job (the CLI calls it with the YAML path): read and split the log
(:func:`mmrec.rankers.prepare_data`), resolve every item's and user's features once, build the
ranker from ``RANKERS``, train it with masked multi-task BCE through the one loop,
:func:`mmrec.training.fit`, then score the test rows and report AUC / UAUC / GAUC per task x domain.

- Devices: :func:`mmrec.device.resolve_device` (``optim.device`` auto = CUDA when present). The
  samples and the item table move to the device once; a batch is then a few index gathers there.
- AMP (CUDA only, ``optim.amp``) and DDP under ``torchrun`` come from :func:`mmrec.training.fit`;
  :func:`mmrec.training.distributed` holds the process group, :func:`mmrec.training.shuffled_batches`
  gives every rank its share of each global batch (``optim.batch_size`` is the global batch: an epoch
  has as many steps as on one process). Rank 0 tests, writes and reports. [I] No SyncBatchNorm: HoME's
  batch norms see each rank's batch.
- Early stopping: with ``data.validation_fraction`` the latest training rows are held out and scored
  after every epoch (mean AUC over the tasks, every rank; rank 0's decides for all); ``optim.patience``
  stops the run and the best epoch's weights are kept.
- Saved runs: :func:`evaluate_run` (``mmrec rank evaluate``), :func:`predict_run` (``mmrec rank
  predict``) and :func:`export_run` (``mmrec rank export``: ``torch.export`` program, ONNX where
  the exporter and ``onnx`` allow; :mod:`mmrec.rankers.export` holds the serving inputs).
- Output (``out``): a run folder of kind ``rank`` (:mod:`mmrec.runs`, :mod:`mmrec.rankers.checkpoint`):
  ``config.json`` (ranker config, input schema, the RankConfig), ``model.safetensors``, ``metrics.json``
  (the report), ``vocab.json`` (the raw ids behind each sparse field's rows); and ``checkpoint.pt``
  (:func:`mmrec.training.fit`'s state after the last epoch, what ``resume`` continues from).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.io import atomic_path, finite_json, open_parquet, output_folder, write_json
from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.checkpoint import ranker_from_run, save_checkpoint
from mmrec.rankers.config import OptimConfig, RankConfig, load_config
from mmrec.rankers.data import prepare_data, prepare_scoring
from mmrec.rankers.features.collate import collate
from mmrec.rankers.losses import masked_bce
from mmrec.rankers.metrics import auc, format_table, metrics_table
from mmrec.rankers.predict import predict
from mmrec.runs import WEIGHTS
from mmrec.runs import load_run as load_run_folder
from mmrec.threads import announce_threads, use_threads
from mmrec.training import LoopConfig, amp_dtype, distributed, fit, shuffled_batches

__all__ = ["RankConfig", "RankEvaluateJob", "RankExportJob", "RankPredictJob", "RankRun", "evaluate_run", "export_run",
           "load_config", "load_run", "predict_run", "train"]

CHECKPOINT = "checkpoint.pt"  # fit's resumable state (weights, optimizer, epoch, history) in the run folder


def _optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over all parameters instead of a dozen small ops per tensor (CPU and CUDA)
    if optim.optimizer == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=True)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=True)
    if optim.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, weight_decay=optim.weight_decay, momentum=0.9)


def train(config: RankConfig | dict[str, Any] | str | Path, *, out: str | Path | None = None,
          progress: bool = True, threads: int | None = None, overrides: Sequence[str] = (),
          resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and save the ranker ``config`` describes.

    ``threads`` (else ``optim.threads``; None for both: :func:`mmrec.threads.default_threads`) torch CPU
    threads for the run. ``overrides``: ``KEY=VALUE`` strings with dotted RankConfig paths
    (``optim.lr=0.01``, ``model.tower=[32,16]``), applied after the YAML. ``resume``: continue from
    ``out/checkpoint.pt`` (written after every epoch) when it exists, after its last completed epoch.
    ``out`` is claimed first (:func:`mmrec.io.output_folder`): an unwritable folder fails before training
    and a failed run leaves nothing there. Returns the report (also written as ``metrics.json``; NaN
    metrics as null) plus ``table``, the metrics as text; under DDP, ranks other than 0 return ``{}``.
    """
    cfg = load_config(config, overrides)
    out = Path(out or cfg.out or "rank-out")
    device = resolve_device(cfg.optim.device, what="optim.device")
    asked = threads if threads is not None else cfg.optim.threads
    with output_folder(out), use_threads(asked, what="optim.threads"), distributed(device) as (rank, world):
        report = _train(cfg, out, device, rank, world, progress=progress and rank == 0, threads_asked=asked,
                        resume=resume)
        if world > 1:
            torch.distributed.barrier()
        return report


def _mean_auc(model: nn.Module, samples, items, opt: OptimConfig, dtype) -> float:
    """Mean over the tasks of the AUC on ``samples`` (tasks without both classes left out)."""
    scores = predict(model, samples, items, batch_size=opt.eval_batch_size, amp_dtype=dtype)
    labels, mask = samples.labels.cpu().numpy(), samples.label_mask.cpu().numpy()
    values = [auc(labels[mask[:, k], k], scores[mask[:, k], k]) for k in range(labels.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else 0.5


def _train(cfg: RankConfig, out: Path, device: torch.device, rank: int, world: int, *, progress: bool,
           threads_asked: int | None = None, resume: bool = False) -> dict[str, Any]:
    opt = cfg.optim
    start = time.perf_counter()
    data = prepare_data(cfg.data, cfg.features)
    prepare_s = time.perf_counter() - start
    torch.manual_seed(opt.seed)
    model: Ranker = RANKERS.get(cfg.model.name)(data.schema, cfg.model).to(device)
    weights = [(opt.task_weights or {}).get(t, 1.0) for t in data.schema.tasks]
    tasks = data.schema.tasks
    train_set, test_set, items = data.train.to(device), data.test.to(device), data.items.to(device)
    valid_set = data.valid.to(device) if data.valid is not None else None
    if len(train_set) < world:
        raise UsageError(f"{len(train_set)} training rows cannot be split over {world} processes")
    dtype, _ = amp_dtype(opt.amp, device)

    def step(net: nn.Module, rows: torch.Tensor):
        batch = collate(train_set, items, rows)
        loss, per_task = masked_bce(net(batch).float(), batch.labels, batch.label_mask, weights)
        logs = dict(zip((f"task_loss/{t}" for t in tasks), per_task.detach().tolist()))
        aux = model.auxiliary_loss()  # e.g. SMES's load balancing; the unwrapped model under DDP
        if aux is not None:
            loss = loss + aux
            logs["aux_loss"] = float(aux.detach())
        return loss, logs

    evaluate = None if valid_set is None else (lambda m: _mean_auc(m, valid_set, items, opt, dtype))
    if progress:  # the data are checked: training starts
        announce_threads(torch.get_num_threads(), threads_asked)
    out.mkdir(parents=True, exist_ok=True)
    loop = LoopConfig(epochs=opt.epochs, patience=opt.patience, min_delta=opt.min_delta, device=str(device), amp=opt.amp,
                      progress=progress, desc=f"rank {cfg.model.name}", restore_best=valid_set is not None,
                      checkpoint=str(out / CHECKPOINT), resume=resume)
    resumed = resume and (out / CHECKPOINT).is_file()
    result = fit(model, _optimizer(model, opt), shuffled_batches(len(train_set), opt.batch_size, seed=opt.seed, device=device),
                 step, config=loop, evaluate=evaluate, size=len)
    history = []
    for entry in result.history:
        entry = dict(entry)
        entry["task_loss"] = {t: entry.pop(f"task_loss/{t}") for t in tasks}
        if "metric" in entry:
            entry["valid_auc"] = entry.pop("metric")
        history.append(entry)

    report: dict[str, Any] = {}
    if rank == 0:
        scores = predict(model, test_set, items, batch_size=opt.eval_batch_size, amp_dtype=dtype)
        table = metrics_table(data.test.labels.numpy(), data.test.label_mask.numpy(), scores, data.test.domain.numpy(),
                              data.test.group.numpy(), data.schema.tasks, data.schema.domains)
        checkpoint = out / WEIGHTS
        report = {
            "model": cfg.model.name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(device), "amp": result.amp,
            "world_size": world,
            "train": {"rows": len(data.train), "epochs": len(result.history), "batch_size": opt.batch_size,
                      "seconds": result.seconds,
                      "samples_per_s": result.samples_per_s,  # every rank's samples
                      "prepare_s": round(prepare_s, 3), "stopped": result.stopped, "best_epoch": result.best_epoch, "resumed": resumed,
                      "skipped_steps": result.skipped_steps, "history": history},
            "validation": {"rows": len(data.valid) if data.valid is not None else 0, "best_auc": result.best_metric},
            "test": {"rows": len(data.test)},
            "schema": data.schema.as_dict(),
            "features": data.features,
            "metrics": table,
            "checkpoint": str(checkpoint),
            "config": cfg.as_dict(),
        }
        report = finite_json(report)
        save_checkpoint(out, model, job=cfg.as_dict(), vocab=data.vocabs, metrics=report)
        report["table"] = format_table(table)
    return report


@dataclass(kw_only=True)
class _Scoring:
    """How a saved run scores rows: the options :class:`RankEvaluateJob` and :class:`RankPredictJob` share."""

    batch_size: int = field(default=8192, metadata={"help": "rows per forward pass"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu, cuda or cuda:N"})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class RankEvaluateJob(_Scoring):
    """What ``mmrec rank evaluate`` scores."""

    run: str = field(metadata={"help": "run folder written by mmrec rank train (model.safetensors, vocab.json, metrics.json)"})
    log: str | None = field(default=None, metadata={
        "help": "behaviour log to score, every row (none = the test rows of the run's own log)"})


@dataclass
class RankPredictJob(_Scoring):
    """What ``mmrec rank predict`` writes."""

    run: str = field(metadata={"help": "run folder written by mmrec rank train"})
    log: str = field(metadata={"help": "behaviour log to score; label columns may be missing (the history's positive one aside)"})
    out: str = field(metadata={"help": "output Parquet: the log's id columns and ts, then probs_<task> per task, in the log's row order"})


@dataclass
class RankRun:
    """A saved run: the model (eval mode), its training config and the id vocabularies."""

    path: Path
    model: Ranker
    config: RankConfig
    vocabs: dict[str, list]


def load_run(run: str | Path, *, device: str = "cpu") -> RankRun:
    """Read a ``mmrec rank train`` folder (:func:`mmrec.runs.load_run`, kind ``rank``)."""
    run = Path(run)
    if not (run / WEIGHTS).is_file():
        raise UsageError(f"{run}: no {WEIGHTS}; not a run folder written by mmrec rank train")
    config, state, vocabs, _ = load_run_folder(run, kind="rank")
    model = ranker_from_run(config, state, device=resolve_device(device, what="device"))
    return RankRun(path=run, model=model, config=load_config(config["job"]), vocabs=vocabs)


def _score(job_run: RankRun, log: str | Path | None, *, batch_size: int, labels: bool):
    cfg = job_run.config
    samples, items, stats = prepare_scoring(cfg.data, cfg.features, vocabs=job_run.vocabs,
                                            domains=job_run.model.schema.domains, log=log, labels=labels)
    device = next(job_run.model.parameters()).device
    scores = predict(job_run.model, samples.to(device), items.to(device), batch_size=batch_size)
    return samples, scores, stats


def evaluate_run(run: str | Path | RankRun, log: str | Path | None = None, *, batch_size: int = 8192,
                 device: str = "cpu") -> dict[str, Any]:
    """AUC / UAUC / GAUC per task x domain of a saved run on ``log`` (every row; None = the test rows of
    the run's own log, the numbers of its ``metrics.json``). Returns the report plus ``table`` (text)."""
    loaded = run if isinstance(run, RankRun) else load_run(run, device=device)
    samples, scores, stats = _score(loaded, log, batch_size=batch_size, labels=True)
    schema = loaded.model.schema
    table = metrics_table(samples.labels.numpy(), samples.label_mask.numpy(), scores, samples.domain.numpy(),
                          samples.group.numpy(), schema.tasks, schema.domains)
    report = finite_json({"run": str(loaded.path), "model": loaded.config.model.name,
                          "log": str(log if log is not None else loaded.config.data.log),
                          "split": "all" if log is not None else "test", "rows": len(samples),
                          "features": stats, "metrics": table})
    report["table"] = format_table(table)
    return report


def predict_run(run: str | Path | RankRun, log: str | Path, out: str | Path, *, batch_size: int = 8192,
                device: str = "cpu") -> dict[str, Any]:
    """Write ``probs_<task>`` for every row of ``log`` to the Parquet file ``out`` (atomically), beside
    the log's user, item, author, domain, further sparse and ts columns, rows in the log's order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    loaded = run if isinstance(run, RankRun) else load_run(run, device=device)
    samples, scores, stats = _score(loaded, log, batch_size=batch_size, labels=False)
    data = loaded.config.data
    keep = list(dict.fromkeys([data.user, data.item, *([data.author] if data.author else []), data.domain, *data.sparse, data.ts]))
    table = open_parquet(log, "behaviour log").read(columns=keep)
    # the samples are in time order (read_log sorts stably by ts): put the scores back in file order
    order = np.argsort(table.column(data.ts).to_numpy(), kind="stable")
    in_file_order = np.empty_like(scores)
    in_file_order[order] = scores
    for k, task in enumerate(loaded.model.schema.tasks):
        table = table.append_column(f"probs_{task}", pa.array(in_file_order[:, k].astype(np.float32)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return finite_json({"run": str(loaded.path), "model": loaded.config.model.name, "log": str(log), "out": str(out),
                        "rows": len(table), "columns": [f"probs_{t}" for t in loaded.model.schema.tasks],
                        "features": stats})


@dataclass
class RankExportJob:
    """What ``mmrec rank export`` writes."""

    run: str = field(metadata={"help": "run folder written by mmrec rank train"})
    out: str = field(metadata={"help": "output folder: ranker.pt2 (torch.export), ranker.onnx, vocab.json, export.json"})
    onnx: bool = field(default=True, metadata={"help": "also write ranker.onnx (needs the onnx extra; skipped with the reason otherwise)"})
    rows: int = field(default=256, metadata={"help": "test rows of the run scored by eager and exported models to check they agree"})

    def __post_init__(self) -> None:
        if self.rows < 2:
            raise UsageError(f"rows must be >= 2, got {self.rows}")


def export_run(run: str | Path | RankRun, out: str | Path, *, onnx: bool = True, rows: int = 256) -> dict[str, Any]:
    """Export a saved run for serving (:mod:`mmrec.rankers.export`): ``ranker.pt2`` (``torch.export.save``),
    ``ranker.onnx`` when ``onnx`` and the exporter allow, ``vocab.json`` (raw id -> input row) and
    ``export.json`` (inputs, tasks, files, and the largest gap between the exported and the eager
    probabilities on ``rows`` test rows of the run's log). Returns ``export.json``'s content."""
    import shutil

    from mmrec.rankers.export import batch_inputs, export_onnx, export_program
    from mmrec.rankers.features.collate import collate

    loaded = run if isinstance(run, RankRun) else load_run(run)
    model = loaded.model.cpu().eval()
    samples, items, _ = prepare_scoring(loaded.config.data, loaded.config.features, vocabs=loaded.vocabs,
                                        domains=model.schema.domains)
    if len(samples) < 2:
        raise UsageError(f"{loaded.path}: the run's log has {len(samples)} test rows; export needs 2 to trace a batch")
    check = collate(samples, items, torch.arange(min(rows, len(samples))))
    example = collate(samples, items, torch.arange(min(64, len(samples) - 1)))  # another batch size than the check's
    program, _ = export_program(model, example)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "ranker.pt2") as tmp:
        torch.export.save(program, str(tmp))
    inputs = batch_inputs(check, history=model.schema.history > 0)
    with torch.no_grad():
        eager = torch.sigmoid(model(check).float())
        exported = program.module()(inputs)
    report: dict[str, Any] = {
        "run": str(loaded.path), "model": loaded.config.model.name, "tasks": list(model.schema.tasks),
        "output": "probabilities (batch, tasks)", "program": "ranker.pt2", "torch": torch.__version__,
        "inputs": {name: {"dtype": str(t.dtype).replace("torch.", ""),
                          "shape": ["history_items" if name.startswith("history/") and d == 0 else "batch" if d == 0 else int(s)
                                    for d, s in enumerate(t.shape)]} for name, t in inputs.items()},
        "check_rows": len(check), "max_abs_diff": float((exported - eager).abs().max()),
        "onnx": None, "onnx_skipped": "not asked (onnx off)",
    }
    if onnx:
        skipped = export_onnx(program, out / "ranker.onnx")
        report.update(onnx=None if skipped else "ranker.onnx", onnx_skipped=skipped)
    shutil.copyfile(loaded.path / "vocab.json", out / "vocab.json")
    write_json(out / "export.json", report)
    return report
