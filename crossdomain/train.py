"""Train a cross-domain model on a :class:`~mmrec.crossdomain.data.CDRData` through the shared loop.

:func:`train_model` builds ``config.model`` (registry :data:`~mmrec.crossdomain.registry.CDR_MODELS`)
and trains it with :func:`mmrec.training.fit` on both domains' training pairs (batches of one domain at a
time, the two domains interleaved at random), evaluates every epoch on the held-out pairs of the target
domains (:class:`~mmrec.crossdomain.evaluate.HeldoutEvaluator`), stops after ``patience`` epochs without
a better mean NDCG@10 and keeps the best epoch's weights ([I] model selection on valid, as the issue
allows; no test split is read). The model trains and is evaluated on ``config.device`` (through
:func:`mmrec.device.resolve_device`): batches are drawn on the CPU, so a run draws the same batches on any
device, and each moves to the device. Reading pair folders / logs and writing run folders is the job of
:mod:`mmrec.pipelines.cdr`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mmrec.config import build_config
from mmrec.crossdomain.config import CDRConfig
from mmrec.crossdomain.data import Batch, CDRData, domain_histories, make_batch, other_histories
from mmrec.crossdomain.evaluate import HeldoutEvaluator
from mmrec.crossdomain.registry import CDR_MODELS
from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.training import LoopConfig, fit, rank_shares


def build_model(config: CDRConfig | dict, data: CDRData, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The model named by ``config.model`` for ``data`` (``state``: tensors of a saved run)."""
    config = build_config(CDRConfig, config, "cdr")
    model = CDR_MODELS.get(config.model).from_config(config, data, state)
    model.objective, model.candidates = config.objective, config.softmax_candidates
    model.drop_cold_user = config.cold_drop_user
    if config.count_residual and model.cross_domain:
        from mmrec.crossdomain.residual import CountResidual

        model.residual = CountResidual(data, gate=config.residual_gate, init=config.residual_init,
                                       popularity=config.residual_popularity)
    return model


def make_optimizers(model: torch.nn.Module, config: CDRConfig) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters, SparseAdam for the sparse user tables (only touched rows move)."""
    sparse = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    out = [torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay)]
    if sparse:
        out.append(torch.optim.SparseAdam([p for p in model.parameters() if id(p) in sparse], lr=config.lr))
    return out


def mean_ndcg(metrics: dict[str, dict[str, float]]) -> float:
    """Mean NDCG@10 over the target domains: the selection metric."""
    return float(np.mean([m["NDCG@10"] for m in metrics.values()]))


def target_domains(data: CDRData, targets: tuple[str, ...] = ()) -> list[int]:
    """Indices of ``targets`` (default: every domain with held-out pairs); an error when one has none."""
    ids = [data.domain_index(t) for t in targets] if targets else \
        [d for d, dom in enumerate(data.domains) if dom.valid is not None]
    missing = [data.domains[d].name for d in ids if data.domains[d].valid is None]
    if missing:
        raise UsageError(f"no held-out file for target domain(s) {missing}")
    return ids


def train_model(data: CDRData, config: CDRConfig | dict | None = None, *, targets: tuple[str, ...] = (),
                progress: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``config.model`` on both domains of ``data``; select on the targets' held-out pairs.

    ``targets``: domain names to evaluate and select on (default: every domain with ``valid`` pairs).
    Returns the model (best epoch's weights, eval mode) and the report: ``best_epoch``, ``epochs_run``,
    ``seconds``, ``metrics`` (per target domain, best epoch), ``history`` (per epoch: ``seconds``,
    ``loss`` parts, ``valid_ndcg10``), ``stopped`` and ``config``. torch's thread count is set to
    ``config.threads`` while training and restored after.
    """
    config = build_config(CDRConfig, config, "cdr")
    previous = torch.get_num_threads()  # the process's thread count is the caller's: restored after
    torch.set_num_threads(config.threads)
    try:
        return _train_model(data, config, targets, progress)
    finally:
        torch.set_num_threads(previous)


def _epoch_batches(data: CDRData, config: CDRConfig, hist, gen: torch.Generator, device: torch.device | str = "cpu"):
    """``batches(epoch)`` for :func:`fit`: each domain's pairs permuted and cut, the batches shuffled
    together; negatives and masks are drawn from ``gen`` on the CPU as each batch is made, which then
    moves to ``device``. Under torchrun every rank makes the same batches (one ``gen``) and trains on its
    share of each (:func:`mmrec.training.rank_shares`). With ``config.eval_every`` a fit "epoch" is the
    next ``eval_every`` batches of one continuing stream of epochs (validation, early stopping and the kept
    weights at that granularity)."""
    other = other_histories(data, hist)
    train = [(torch.as_tensor(d.train[:, 0]), torch.as_tensor(d.train[:, 1]),
              None if d.labels is None else torch.as_tensor(d.labels)) for d in data.domains]

    def batches(epoch: int) -> Iterator[Batch]:
        chunks = []
        for d, (users, _, _) in enumerate(train):
            perm = torch.randperm(len(users), generator=gen)
            chunks += [(d, perm[i:i + config.batch_size]) for i in range(0, len(perm), config.batch_size)]
        for step in torch.randperm(len(chunks), generator=gen).tolist():
            d, idx = chunks[step]
            users, items, labels = train[d]
            yield make_batch(d, users[idx], items[idx], hist, data.domains[d].n_items, negatives=config.negatives,
                             interaction_mask=config.interaction_mask, domain_mask=config.domain_mask,
                             labels=None if labels is None else labels[idx], generator=gen, other_hist=other).to(device)

    if not config.eval_every:
        return lambda epoch: rank_shares(batches(epoch))
    stream = itertools.chain.from_iterable(batches(e) for e in itertools.count())
    return lambda part: rank_shares(itertools.islice(stream, config.eval_every))


def steps_per_epoch(data: CDRData, config: CDRConfig) -> int:
    """Batches in one pass over both domains' training pairs."""
    return sum(-(-len(d.train) // config.batch_size) for d in data.domains)


def _train_model(data: CDRData, config: CDRConfig, targets: tuple[str, ...], progress: bool):
    torch.manual_seed(config.seed)
    target_ids = target_domains(data, targets)
    hist = domain_histories(data, config.maxlen)
    evaluator = HeldoutEvaluator(data, hist, {d: data.domains[d].valid for d in target_ids}, config.eval_seed)
    started = time.perf_counter()
    device = resolve_device(config.device, what="cdr device")
    model = build_model(config, data).to(device)
    if not model.trainable:  # a baseline: its parameter is chosen on the held-out pairs, nothing to train
        metrics = model.select({d: heldout for d, (heldout, _) in evaluator.sets.items()}, config.eval_seed)
        return model, {"model": config.model, "seed": config.seed, "best_epoch": 0, "epochs_run": 0,
                       "seconds": round(time.perf_counter() - started, 1), "metrics": metrics, "history": [],
                       "stopped": "selected", "params": {data.domains[d].name: model.params[d] for d in range(2)},
                       "config": dataclasses.asdict(config)}
    optimizers = make_optimizers(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    evaluated: list[tuple[dict[str, dict[str, float]], float]] = []  # (metrics, seconds) per epoch

    def evaluate(net: torch.nn.Module) -> float:
        t0 = time.perf_counter()
        metrics = evaluator(net)
        evaluated.append((metrics, time.perf_counter() - t0))
        if progress:
            print(json.dumps({"epoch": len(evaluated), "valid_ndcg10": _ndcg10(metrics)}), flush=True)
        return mean_ndcg(metrics)

    rounds = config.epochs if not config.eval_every else -(-config.epochs * steps_per_epoch(data, config) // config.eval_every)
    # amp off: sparse user tables and the CSR item graph have no half-precision kernels, and these small models gain nothing
    loop = LoopConfig(epochs=rounds, patience=config.patience, restore_best=True, device=str(device), amp="off",
                      max_minutes=config.max_minutes, progress=progress, desc=f"cdr {config.model}")
    result = fit(model, optimizers, _epoch_batches(data, config, hist, gen, device), lambda net, batch: net.loss(batch),
                 config=loop, evaluate=evaluate if evaluator.sets else None, size=lambda batch: len(batch.users))
    history = []
    for i, entry in enumerate(result.history):
        metrics, eval_seconds = evaluated[i] if evaluator.sets else ({}, 0.0)
        parts = {k: v for k, v in entry.items()
                 if k not in ("epoch", "loss", "steps", "seconds", "samples_per_s", "metric")}
        history.append({"epoch": entry["epoch"], "seconds": round(entry["seconds"] + eval_seconds, 2), "loss": parts,
                        "steps": entry["steps"], "valid_ndcg10": _ndcg10(metrics)})
    # nothing held out: no selection, the last epoch is kept
    best_epoch = result.best_epoch if evaluator.sets else len(history)
    metrics = evaluated[best_epoch - 1][0] if evaluator.sets else {}
    report = {"model": config.model, "seed": config.seed, "best_epoch": best_epoch, "epochs_run": len(history),
              "seconds": round(time.perf_counter() - started, 1), "metrics": metrics,
              "history": history, "stopped": result.stopped, "config": dataclasses.asdict(config)}
    return model, report


def _ndcg10(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: round(v["NDCG@10"], 4) for k, v in metrics.items()}
