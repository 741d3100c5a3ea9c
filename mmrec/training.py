"""The one training loop: every model in mmrec trains through :func:`fit`.

A model plugs in three things: the batches of an epoch, a ``step`` that turns a batch into a loss,
and (optionally) an ``evaluate`` that scores the model on held-out data (higher is better). The loop
owns the rest:

- epochs, with an optional cap on steps per epoch and on wall-clock minutes;
- early stopping: after ``patience`` evaluations without a gain of more than ``min_delta`` it stops,
  and with ``restore_best`` the best evaluated weights are put back at the end;
- a NaN guard: a non-finite loss skips that update; more than ``max_bad_steps`` in a row stops the run
  with one :class:`TrainingError` line naming the epoch and step (the weights are never updated from
  a non-finite loss);
- device (:func:`mmrec.device.resolve_device`), AMP on CUDA (bfloat16 where supported, else float16
  with a gradient scaler), DDP under ``torchrun`` (below);
- an optional checkpoint file (model, optimizers, epoch, best score and history) written atomically
  after every epoch; with ``resume`` a rerun continues after the last completed epoch;
- a progress bar from the first step (epoch, loss and, on CPU, the torch threads in use), per-epoch
  mean of every logged value, seconds and samples/s.

Intermediate values (a tuner's pruning, :mod:`mmrec.pipelines.tune`): after every epoch ``on_epoch(epoch,
metrics)`` is called with the epoch (from 1) and a flat dict of floats: ``loss``, ``metric`` (the monitored
score, when evaluated) and every number ``evaluate`` returned (nested dicts as ``tail/ndcg@10``). Besides
``fit``'s argument, :func:`epoch_callback` installs one for every ``fit`` run inside a ``with`` block, so a
job reports without passing it down. A callback that raises :class:`StopTraining` ends the run after that
epoch (``stopped == "callback"``; checkpoint written, best weights restored) and ``fit`` returns normally.

``step(model, batch)`` returns the loss, or ``(loss, logs)`` with a dict of floats to average per
epoch. ``after_step(step_index, batch)`` runs after each update (RQ-VAE's dead-code restarts use it). A
model whose update is not a gradient step (k-means) does not come here.

Distributed data parallel (``torchrun --nproc_per_node N``, ``WORLD_SIZE`` > 1; the job holds the process
group, :func:`distributed`): the model is wrapped in ``DistributedDataParallel`` and the *whole step* runs as
its forward, so a loss computed through any method of the model (``model.loss(batch)``,
``model.interests_at(...)``) averages its gradients over the ranks -- a method called outside DDP's forward
would skip that silently. ``find_unused_parameters`` is on (a batch of one domain leaves the other domain's
parameters without gradient); buffers are synced from rank 0 once, not before every forward: they are data
every rank computes alike (counts, content tables), and BatchNorm statistics stay each rank's own. The caller's batches decide what each rank
sees: :func:`shuffled_batches` and :func:`rank_shares` give every rank its share (rows ``rank::N``) of each
global batch, so ``batch_size`` stays the global batch and an epoch has as many steps as on one process;
in-batch negatives are then the rank's own. Per step the ranks agree whether all have a batch (an uneven
last batch ends the epoch everywhere), whether the loss is finite on all (else all skip) and whether the time
is up; the epoch's loss, logs and samples are the ranks' means and sum. Every rank evaluates (the model is the
same on all) and rank 0's monitored score decides early stopping everywhere; rank 0 alone writes the
checkpoint and shows progress. :func:`on_rank0` runs a job's file writes once.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec.config import build_config
from mmrec.device import resolve_device
from mmrec.errors import MMRecError, UsageError


class TrainingError(MMRecError):
    """A run that cannot go on (the loss stayed non-finite): exit code 1."""


class StopTraining(Exception):  # noqa: N818 (a request, not an error)
    """Raised by an ``on_epoch`` callback: :func:`fit` stops after this epoch and returns normally."""


_END = object()  # the end of an epoch's batches
EpochCallback = Callable[[int, dict[str, float]], None]
_EPOCH_CALLBACKS: contextvars.ContextVar[tuple[EpochCallback, ...]] = contextvars.ContextVar("epoch_callbacks", default=())


@contextlib.contextmanager
def epoch_callback(callback: EpochCallback):
    """Call ``callback(epoch, metrics)`` after every epoch of every :func:`fit` run inside the block."""
    token = _EPOCH_CALLBACKS.set((*_EPOCH_CALLBACKS.get(), callback))
    try:
        yield callback
    finally:
        _EPOCH_CALLBACKS.reset(token)


def _flat(value: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of ``value`` (a number or nested dicts) as ``{"a/b": float}``."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}/").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix.rstrip("/"): float(value)}
    return {}


@dataclass
class LoopConfig:
    """How :func:`fit` runs; every field has a default that suits a small CPU run."""

    epochs: int = field(default=10, metadata={"help": "passes over the training data"})
    max_steps: int | None = field(default=None, metadata={"help": "most updates per epoch (default: all batches)"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop after this many minutes of training"})
    patience: int | None = field(default=None, metadata={"help": "evaluations without improvement before stopping (default: never stop early)"})
    min_delta: float = field(default=0.0, metadata={"help": "smallest gain of the validation metric that counts as improvement"})
    restore_best: bool = field(default=True, metadata={"help": "end with the weights of the best evaluation"})
    grad_clip: float | None = field(default=None, metadata={"help": "clip the gradient norm to this value"})
    max_bad_steps: int = field(default=3, metadata={"help": "non-finite losses in a row before the run stops"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    amp: str = field(default="auto", metadata={"help": "mixed precision: auto (on CUDA only), on or off", "choices": ("auto", "on", "off")})
    checkpoint: str | None = field(default=None, metadata={"help": "file written after every epoch (model, optimizers, epoch)"})
    resume: bool = field(default=False, metadata={"help": "continue from --checkpoint when it exists"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    desc: str = field(default="train", metadata={"help": "progress-bar label"})

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be >= 1, got {self.patience}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_bad_steps < 1:
            raise UsageError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")
        if self.amp not in ("auto", "on", "off"):
            raise UsageError(f"amp must be auto, on or off, got {self.amp!r}")
        if self.resume and not self.checkpoint:
            raise UsageError("resume needs a checkpoint path")


@dataclass
class FitResult:
    """What :func:`fit` did: one entry per epoch in ``history`` (``epoch``, ``loss``, logged means,
    ``seconds``, ``samples_per_s``, ``metric`` when evaluated)."""

    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    best_metrics: Any
    steps: int
    seconds: float
    samples: int
    stopped: str
    skipped_steps: int
    amp: str | None
    device: str

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "samples_per_s": self.samples_per_s}


def amp_dtype(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a gradient scaler)`` for ``mode`` on ``device``."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None, False
    if device.type != "cuda":
        raise UsageError("amp on needs CUDA; use auto or off on CPU")
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, a no-op context for None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process under torchrun, ``(0, 1)`` otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextlib.contextmanager
def distributed(device: torch.device):
    """Start the torchrun process group (NCCL on CUDA, gloo on CPU) for the block when ``WORLD_SIZE`` > 1
    and none is running; yields ``(rank, world size)``. A block that ends normally waits for every rank
    before the group goes (a rank leaving while another still receives would abort that one)."""
    import torch.distributed as dist

    rank, size = world()
    started = False
    if size > 1 and not dist.is_initialized():
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # NCCL's object collectives (scores, logs) run on the current device
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    try:
        yield (dist.get_rank() if size > 1 else 0), size
        if started:
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


def _group() -> bool:
    """Whether a process group of more than one rank is running."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _Steps(nn.Module):
    """What DDP wraps: its forward is a whole ``step(model, batch)`` (see the module docstring). Every sparse
    embedding table also looks up no row: DDP cannot skip a sparse parameter left without gradient (a table
    of the domain a batch is not from), so each gets an empty sparse one."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sparse = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse and m.weight.requires_grad]

    def forward(self, step: Callable[[nn.Module, Any], Any], batch: Any) -> Any:
        out = step(self.model, batch)
        if not self.sparse:
            return out
        loss, logs = _split(out)
        return loss + sum(m(torch.zeros(0, dtype=torch.long, device=m.weight.device)).sum() for m in self.sparse), logs


def _wrap(model: nn.Module, device: torch.device) -> nn.Module | None:
    """``DistributedDataParallel`` over :class:`_Steps` of ``model`` under a process group, else None."""
    if not _group():
        return None
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # buffers synced once at the start, not before every forward (torch < 2.14 has only broadcast_buffers)
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters \
        else "broadcast_buffers"
    steps = _Steps(model)
    # sparse buffers (graph / similarity tables, built alike on every rank from the data) cannot be broadcast
    sparse = [name for name, b in steps.named_buffers() if b.layout != torch.strided]
    if sparse:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(steps, sparse)
    return DistributedDataParallel(steps, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True, **{no_sync: False})


def _all(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank (itself without a process group)."""
    if not _group():
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (itself without a process group)."""
    if not _group():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _epoch_totals(sums: dict[str, float], n_samples: int) -> tuple[dict[str, float], int]:
    """The epoch's per-rank sums averaged over the ranks, the samples summed."""
    if not _group():
        return sums, n_samples
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (sums, n_samples))
    keys = sorted({k for s, _ in gathered for k in s})
    means = {k: sum(s.get(k, 0.0) for s, _ in gathered) / len(gathered) for k in keys}
    return means, sum(n for _, n in gathered)


def on_rank0(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on rank 0 only and its result on every rank (the others wait for it), under a
    process group; a plain call otherwise. For a job's writes (mined pairs, the run folder) done once."""
    if not _group():
        return fn(*args, **kwargs)
    return _from_rank0(fn(*args, **kwargs) if world()[0] == 0 else None)


def _length(batch: Any) -> int | None:
    """Rows of the first tensor / array in ``batch``."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return len(batch)
    values = batch.values() if isinstance(batch, dict) else (getattr(batch, f.name) for f in dataclasses.fields(batch)) \
        if dataclasses.is_dataclass(batch) else batch if isinstance(batch, (list, tuple)) else ()
    return next((n for v in values if (n := _length(v)) is not None), None)


def _rows(batch: Any, rank: int, size: int, keep: int) -> Any:
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return batch[rank::size][:keep]
    if isinstance(batch, dict):
        return {k: _rows(v, rank, size, keep) for k, v in batch.items()}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: _rows(getattr(batch, f.name), rank, size, keep)
                                             for f in dataclasses.fields(batch) if f.init})
    if isinstance(batch, (list, tuple)):
        return type(batch)(_rows(v, rank, size, keep) for v in batch)
    return batch


def rank_shares(batches: Iterable[Any]) -> Iterator[Any]:
    """This rank's share of each global batch under a process group (:func:`distributed`): rows ``rank::world``
    of every tensor / array in it (dicts, dataclasses, tuples are walked; every tensor holds the batch's rows
    first), the same number on every rank; a batch with fewer rows than ranks is skipped on all. The batches
    themselves without a group (one process, or a job under torchrun that does not synchronise its ranks:
    a share of the data without averaged gradients would train each rank on part of it)."""
    if not _group():
        yield from batches
        return
    import torch.distributed as dist

    rank, size = dist.get_rank(), dist.get_world_size()
    for batch in batches:
        n = _length(batch)
        if n is None or n < size:
            continue
        yield _rows(batch, rank, size, n // size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _split(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        loss, logs = out
        return loss, dict(logs or {})
    return out, {}


def _score(value: Any, monitor: str | None) -> float:
    if isinstance(value, dict):
        if monitor is None or monitor not in value:
            raise UsageError(f"evaluate returned {sorted(value)}; name the metric to monitor (known: {sorted(value)})")
        value = value[monitor]
    return float(value)


def _save(path: Path, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], state: dict[str, Any]) -> None:
    from mmrec.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers], **state}, tmp)


def fit(
    model: nn.Module,
    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    batches: Callable[[int], Iterable[Any]],
    step: Callable[[nn.Module, Any], Any],
    *,
    config: LoopConfig | dict | None = None,
    evaluate: Callable[[nn.Module], Any] | None = None,
    monitor: str | None = None,
    size: Callable[[Any], int] | None = None,
    after_step: Callable[[int, Any], None] | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` for ``config.epochs`` epochs on ``config.device`` (``auto``: the device the model is
    on; otherwise the model is moved there and ``step`` must move its batches alike); see the module docstring.

    ``batches(epoch)`` yields the epoch's batches (``epoch`` from 0); ``evaluate(model)`` returns a
    number or a dict (then ``monitor`` names the key), higher is better, called after every epoch;
    ``size(batch)`` counts samples for samples/s (default ``len(batch)``, else 1); ``on_epoch(epoch,
    metrics)`` after every epoch (with those of :func:`epoch_callback`), may raise :class:`StopTraining`.
    """
    config = build_config(LoopConfig, config, "loop")
    optimizers = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
    if not optimizers:
        raise UsageError("fit needs at least one optimizer")
    device = next(model.parameters()).device
    if config.device != "auto":  # an explicit device is honoured: the model moves there (auto: where the caller put it)
        device = resolve_device(config.device, what="loop.device")
        model.to(device)
    dtype, use_scaler = amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    net = _wrap(model, device)
    rank, _ = world()

    def run(batch: Any) -> Any:
        return step(model, batch) if net is None else net(step, batch)

    params = [p for o in optimizers for g in o.param_groups for p in g["params"]]

    history: list[dict[str, Any]] = []
    best, best_epoch, best_metrics, best_state = -math.inf, None, None, None
    steps = samples = skipped = stale = 0
    seconds = 0.0
    start_epoch = 0
    checkpoint = Path(config.checkpoint) if config.checkpoint else None
    if checkpoint is not None and config.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        for opt, s in zip(optimizers, saved["optimizers"]):
            opt.load_state_dict(s)
        history, start_epoch = list(saved["history"]), int(saved["epoch"])
        best = float(saved["best"]) if saved["best"] is not None else -math.inf
        best_epoch, stale, steps = saved["best_epoch"], int(saved["stale"]), int(saved["steps"])
        best_state = saved.get("best_state")
    stopped = "epochs"
    callbacks = (*_EPOCH_CALLBACKS.get(), *((on_epoch,) if on_epoch is not None else ()))
    deadline = None if config.max_minutes is None else time.perf_counter() + 60 * config.max_minutes
    bar = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(desc=config.desc, unit="step", leave=False)
    threads = {"threads": torch.get_num_threads()} if device.type == "cpu" else {}  # what --threads chose
    for epoch in range(start_epoch, config.epochs):
        model.train()
        sums: dict[str, float] = {}
        n_steps = n_samples = bad = 0
        _sync(device)
        t0 = time.perf_counter()
        epoch_batches = iter(batches(epoch))
        while True:
            batch = next(epoch_batches, _END)
            if not _all(batch is not _END, device):  # under DDP: every rank has a batch, else all end the epoch
                break
            if config.max_steps is not None and n_steps >= config.max_steps:
                break
            with autocast(device, dtype):
                loss, logs = _split(run(batch))
            loss = loss.float()
            if not _all(bool(torch.isfinite(loss.detach())), device):
                bad += 1
                skipped += 1
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                if bad >= config.max_bad_steps:
                    raise TrainingError(f"loss was non-finite for {bad} steps in a row (epoch {epoch + 1}, step "
                                        f"{n_steps + bad}); lower the learning rate or check the inputs for NaN/inf")
                continue
            bad = 0
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                for opt in optimizers:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
            n_steps += 1
            steps += 1
            n = size(batch) if size is not None else (len(batch) if hasattr(batch, "__len__") else 1)
            n_samples += n
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if after_step is not None:
                after_step(steps, batch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{float(loss.detach()):.4f}", **threads)
            if deadline is not None and not _all(time.perf_counter() <= deadline, device):
                break
        _sync(device)
        elapsed = time.perf_counter() - t0
        if n_steps == 0:
            raise TrainingError(f"epoch {epoch + 1} made no update: no batch (is the training data empty?)")
        sums, n_samples = _epoch_totals(sums, n_samples)
        seconds += elapsed
        samples += n_samples
        entry: dict[str, Any] = {"epoch": epoch + 1, **{k: v / n_steps for k, v in sums.items()},
                                 "steps": n_steps, "seconds": round(elapsed, 3),
                                 "samples_per_s": n_samples / elapsed if elapsed > 0 else None}
        metrics = None
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            model.train()
            score = _from_rank0(_score(metrics, monitor))  # one decision on every rank
            entry["metric"] = score
            if score > best + config.min_delta or best_epoch is None:
                best, best_epoch, best_metrics, stale = score, epoch + 1, metrics, 0
                if config.restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(entry)
        if checkpoint is not None and rank == 0:
            _save(checkpoint, model, optimizers, {"epoch": epoch + 1, "history": history, "stale": stale,
                                                  "best": None if best_epoch is None else best,
                                                  "best_epoch": best_epoch, "steps": steps, "best_state": best_state,
                                                  **(extra_state() if extra_state else {})})
        try:
            for callback in callbacks:
                callback(epoch + 1, {"loss": entry.get("loss", math.nan), **_flat(metrics),
                                     **({"metric": entry["metric"]} if "metric" in entry else {})})
        except StopTraining:
            stopped = "callback"
            break
        if config.patience is not None and stale >= config.patience:
            stopped = "early_stop"
            break
        if deadline is not None and not _all(time.perf_counter() <= deadline, device):
            stopped = "time"
            break
    if bar is not None:
        bar.close()
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(history=history, best_epoch=best_epoch, best_metric=None if best_epoch is None else best,
                     best_metrics=best_metrics, steps=steps, seconds=round(seconds, 3), samples=samples, stopped=stopped,
                     skipped_steps=skipped, amp=None if dtype is None else str(dtype).replace("torch.", ""),
                     device=str(device))


def shuffled_batches(n: int, batch_size: int, *, seed: int, drop_last: bool = False,
                     device: torch.device | str = "cpu", share: bool = True) -> Callable[[int], Iterable[torch.Tensor]]:
    """``batches(epoch)`` for :func:`fit`: a fresh permutation of ``range(n)`` per epoch (seeded by
    ``seed`` and the epoch, so a resumed run sees the same order), cut into index batches of ``batch_size``;
    under a process group each rank gets its share of every batch (:func:`rank_shares`; ``share`` False: the whole
    batches, for a caller that cuts its own batches from them and shares those)."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")

    def batches(epoch: int) -> Iterable[torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        parts = torch.randperm(n, generator=g).to(device).split(batch_size)
        if drop_last and len(parts) and len(parts[-1]) < batch_size:
            parts = parts[:-1]
        return rank_shares(parts) if share else iter(parts)

    return batches


__all__ = ["FitResult", "LoopConfig", "TrainingError", "amp_dtype", "autocast", "distributed", "fit", "on_rank0",
           "rank_shares", "resolve_device", "shuffled_batches", "world"]
