"""``mmrec rank train``: train a ranker from a :class:`RankConfig`, evaluate it, save it.

:func:`train` is the whole job (the CLI calls it with the YAML path): read and split the log,
resolve every item's features once, build the ranker from ``RANKERS``, run ``optim.epochs`` passes
of masked multi-task BCE, then score the test rows and report AUC / UAUC / GAUC per task x domain.

- Devices: CUDA when present (``optim.device`` auto), CPU otherwise. The samples and the item
  table move to the device once; a batch is then a few index gathers there.
- AMP: on CUDA (``optim.amp`` auto|on), autocast to bfloat16 where supported, else float16 with a
  gradient scaler. CPU runs in float32.
- DDP: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group starts from the environment
  (NCCL on CUDA, gloo on CPU); every epoch all ranks draw one shared permutation and take every
  ``world``-th row of it, cut to equal lengths so ranks step in lockstep. Rank 0 evaluates, writes
  and reports. [I] No SyncBatchNorm: HoME's batch norms see each rank's batch.
- Output (``out``): ``model.safetensors`` (:mod:`mmrec.rankers.checkpoint`), ``metrics.json`` (the
  report), ``vocab.json`` (the raw ids behind each sparse field's rows).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from mmrec.errors import UsageError
from mmrec.features.collate import ItemTable, RankSamples, collate
from mmrec.io import write_json
from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.checkpoint import save_checkpoint
from mmrec.rankers.config import OptimConfig, RankConfig, load_config
from mmrec.rankers.data import prepare_data
from mmrec.rankers.losses import masked_bce
from mmrec.rankers.metrics import format_table, metrics_table


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present; ``cuda`` -> this process's GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"optim.device {name} asked, but CUDA is not available here")
    if name == "cuda":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return torch.device(name)


class _Distributed:
    """The torchrun process group, or a single process."""

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.started = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started = True
        self.rank = dist.get_rank() if self.world > 1 else 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.started:
            torch.distributed.destroy_process_group()


def _amp(optim: OptimConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a gradient scaler)``."""
    if optim.amp == "off" or (optim.amp == "auto" and device.type != "cuda"):
        return None, False
    if device.type != "cuda":
        raise UsageError("optim.amp on needs CUDA; use auto or off on CPU")
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


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


def epoch_rows(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """This rank's shuffled row batches for one epoch; every rank gets the same number of rows."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    mine = perm[rank::world][: n // world].to(device)
    yield from mine.split(batch_size)


@torch.no_grad()
def predict(model: nn.Module, samples: RankSamples, items: ItemTable, *, batch_size: int = 8192,
            amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Probabilities ``(N, K)`` for every row of ``samples`` (on the model's device)."""
    was_training = model.training
    model.eval()
    device = samples.item_row.device
    out = []
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    with autocast:
        for rows in torch.arange(len(samples), device=device).split(batch_size):
            out.append(torch.sigmoid(model(collate(samples, items, rows)).float()).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def train(config: RankConfig | dict[str, Any] | str | Path, *, out: str | Path | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train, evaluate and save the ranker ``config`` describes.

    Returns the report (also written as ``metrics.json``; NaN metrics as null) plus ``table``, the
    metrics as text; under DDP, ranks other than 0 return ``{}``.
    """
    cfg = load_config(config)
    out = Path(out or cfg.out or "rank-out")
    opt = cfg.optim
    device = resolve_device(opt.device)
    threads = torch.get_num_threads()
    if opt.threads:
        torch.set_num_threads(opt.threads)
    dist = _Distributed(device)
    try:
        return _train(cfg, out, device, dist, progress=progress and dist.rank == 0)
    finally:
        dist.close()
        torch.set_num_threads(threads)


def _train(cfg: RankConfig, out: Path, device: torch.device, dist: _Distributed, *, progress: bool) -> dict[str, Any]:
    opt = cfg.optim
    start = time.perf_counter()
    data = prepare_data(cfg.data, cfg.features)
    prepare_s = time.perf_counter() - start
    torch.manual_seed(opt.seed)
    model: Ranker = RANKERS.get(cfg.model.name)(data.schema, cfg.model).to(device)
    net = dist.wrap(model, device)
    optimizer = _optimizer(model, opt)
    amp_dtype, use_scaler = _amp(opt, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    weights = [(opt.task_weights or {}).get(t, 1.0) for t in data.schema.tasks]
    train_set, test_set, items = data.train.to(device), data.test.to(device), data.items.to(device)
    if len(train_set) < dist.world:
        raise UsageError(f"{len(train_set)} training rows cannot be split over {dist.world} processes")

    history: list[dict[str, Any]] = []
    seen, train_s = 0, 0.0
    for epoch in range(opt.epochs):
        net.train()
        batches = list(epoch_rows(len(train_set), opt.batch_size, seed=opt.seed, epoch=epoch, rank=dist.rank,
                                  world=dist.world, device=device))
        bar = _bar(len(batches), f"epoch {epoch + 1}/{opt.epochs}", progress)
        total = torch.zeros((), device=device)
        per_task = torch.zeros(len(weights), device=device)
        _sync(device)
        t0 = time.perf_counter()
        for rows in batches:
            batch = collate(train_set, items, rows)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                logits = net(batch)
            loss, task_losses = masked_bce(logits.float(), batch.labels, batch.label_mask, weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach()
            per_task += task_losses.detach()
            if bar is not None:
                bar.update(1)
        _sync(device)
        elapsed = time.perf_counter() - t0
        rows_done = sum(len(r) for r in batches)
        seen += rows_done
        train_s += elapsed
        if bar is not None:
            bar.set_postfix(loss=f"{float(total) / max(len(batches), 1):.4f}", samples_s=f"{rows_done / elapsed:.0f}")
            bar.close()
        history.append({"epoch": epoch + 1, "loss": float(total) / max(len(batches), 1), "seconds": round(elapsed, 3),
                        "task_loss": dict(zip(data.schema.tasks, (per_task / max(len(batches), 1)).tolist()))})

    report: dict[str, Any] = {}
    if dist.rank == 0:
        scores = predict(model, test_set, items, batch_size=opt.eval_batch_size, amp_dtype=amp_dtype)
        table = metrics_table(data.test.labels.numpy(), data.test.label_mask.numpy(), scores, data.test.domain.numpy(),
                              data.test.group.numpy(), data.schema.tasks, data.schema.domains)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = save_checkpoint(out / "model.safetensors", model)
        write_json(out / "vocab.json", data.vocabs)
        report = {
            "model": cfg.model.name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(device), "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
            "world_size": dist.world,
            "train": {"rows": len(data.train), "epochs": opt.epochs, "batch_size": opt.batch_size,
                      "seconds": round(train_s, 3), "samples_per_s": seen * dist.world / train_s if train_s else None,
                      "prepare_s": round(prepare_s, 3), "history": history},
            "test": {"rows": len(data.test)},
            "schema": data.schema.as_dict(),
            "features": data.features,
            "metrics": table,
            "checkpoint": str(checkpoint),
            "config": cfg.as_dict(),
        }
        report = _finite(report)
        write_json(out / "metrics.json", report)
        report["table"] = format_table(table)
    dist.barrier()
    return report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False)


def _finite(obj: Any) -> Any:
    """NaN -> None and tuples -> lists: the report equals its JSON file."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
