"""``mmrec retrieve train --model generative``: the generative retriever's part of :mod:`mmrec.pipelines.retrieve`.

:func:`train_generative` trains :class:`~mmrec.retrieval.generative.GenerativeRetriever` on the
training part of a ``mmrec seq import`` folder, with the item codes of ``--codes`` (``codes.parquet``
of ``mmrec quantize``, keyed ``item-NNNNNN``). Samples are every position of every training sequence
(GRID's and cornac's sliding window): the item at position ``t >= 1`` is the target, the
``max_len`` items before it the history; targets without codes are left out. Training runs through
:func:`mmrec.training.fit` with validation NDCG@10 from constrained beam search
(:func:`~mmrec.retrieval.generative_beam.evaluate_generative`) after every epoch, the best epoch
restored; ``loop.patience`` stops early. Beam search over every validation user is the costly part of an
epoch on a large set (about 30 % of the wall time on Beauty's 22k users): ``job.val_users`` > 0 validates
each epoch on a fixed seeded sample of that many users (:func:`validation_sample`, the same users every
epoch and every seed, so early stopping compares like with like), and the restored model is then scored
once on all users, the figures reported. :class:`GenerativeFamily` is the ``generative`` entry of
:data:`~mmrec.retrieval.registry.RETRIEVERS`; the run folder is written by
:func:`mmrec.pipelines.retrieve.train` like every retriever's (``model.safetensors`` holds the item
codes too, so a run needs no codes file to be evaluated).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import InputError, UsageError
from mmrec.retrieval.data import Sequences
from mmrec.retrieval.generative import GenerativeConfig, GenerativeRetriever
from mmrec.retrieval.generative_beam import CodeTrie, evaluate_generative
from mmrec.retrieval.registry import RetrieverFamily, Trained
from mmrec.training import fit, rank_shares, shuffled_batches


class _Windows:
    """Training samples: every position ``t >= 1`` of each sequence whose item has codes; the history
    is the ``max_len`` items before ``t``."""

    def __init__(self, seqs: Sequences, max_len: int, has_codes: np.ndarray) -> None:
        self.seqs, self.max_len = seqs, max_len
        starts = np.repeat(seqs.offsets[:-1], seqs.lengths)
        pos = np.arange(len(seqs.items))
        keep = (pos > starts) & has_codes[seqs.items]
        self.ends, self.starts = pos[keep], starts[keep]

    def __len__(self) -> int:
        return len(self.ends)

    def epochs(self, batch_size: int, seed: int):
        """``batches(epoch)`` for :func:`fit`: samples shuffled, sorted by history length within chunks
        of 32 batches (most histories are short: padding every batch to ``max_len`` wastes most of the
        encoder), cut into batches, the batches of a chunk in random order; under torchrun each rank its share
        of every batch (:func:`mmrec.training.rank_shares`)."""
        lengths = np.minimum(self.ends - self.starts, self.max_len)
        chunks = shuffled_batches(len(self), 32 * batch_size, seed=seed, share=False)

        def batches(epoch: int):
            g = np.random.default_rng([seed, epoch])
            for chunk in chunks(epoch):
                chunk = chunk[torch.as_tensor(np.argsort(lengths[chunk.numpy()], kind="stable"))]
                parts = chunk.split(batch_size)
                for part in rank_shares(parts[i] for i in g.permutation(len(parts))):
                    yield self.batch(part)

        return batches

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.numpy()
        ends, starts = self.ends[idx], self.starts[idx]
        length = int(min(self.max_len, (ends - starts).max()))
        pos = ends[:, None] - length + np.arange(length)  # (B, T) the items before each target
        history = np.where(pos >= starts[:, None], self.seqs.items[np.clip(pos, 0, None)], -1)
        return {"history": torch.as_tensor(history), "targets": torch.as_tensor(self.seqs.items[ends])}


def validation_sample(n_users: int, size: int, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of ``size`` of ``n_users`` validation users, drawn once with ``seed`` (fixed: not the
    run's seed, so every seed early-stops on the same users); None when ``size`` is 0 or covers all."""
    if size <= 0 or size >= n_users:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_users, size, replace=False))


def model_config(base: GenerativeConfig, n_items: int, codes: np.ndarray, sizes: list[int] | None = None) -> GenerativeConfig:
    """``base`` with ``n_items`` and the code sizes: ``sizes`` (the codes file's metadata), else the largest
    code + 1 per level of ``codes`` ``(n_items, L)``."""
    return replace_config(base, "retrieve.generative", n_items=n_items, code_sizes=tuple(sizes or (int(c) + 1 for c in codes.max(0))))


def train_generative(job: Any, history: Sequences, targets: np.ndarray, codes: np.ndarray, *, progress: bool = True,
                     sizes: list[int] | None = None) -> tuple[GenerativeRetriever, dict[str, Any], dict[str, Any]]:
    """Train on ``history`` (training parts), validate on ``targets``; ``job`` is a
    :class:`~mmrec.pipelines.retrieve.TrainJob`, ``codes`` ``(n_items, L)`` (-1 = no codes).
    Returns ``(model, validation metrics of the best epoch, training report)``."""
    config = model_config(job.generative, history.n_items, codes, sizes)
    device = resolve_device(job.loop.device)
    model = GenerativeRetriever(config)
    model.set_codes(codes)
    model.to(device)
    windows = _Windows(history, config.max_len, (model.item_codes >= 0).all(1).cpu().numpy())
    if len(windows) == 0:
        raise InputError("no training samples: every training part has < 2 items, or no target has codes")
    trie = CodeTrie.of(model)
    train_counts = history.item_counts()

    def validate(m, users=validation_sample(len(targets), job.val_users)):
        seen, wanted = (history, targets) if users is None else (history.subset(users), targets[users])
        return evaluate_generative(m, seen, wanted, max_len=config.max_len, train_counts=train_counts, trie=trie)

    def step(net, batch):
        return model.loss(batch["history"].to(device), batch["targets"].to(device))

    # fused: one kernel for all ~100 parameter tensors (the per-tensor loop is a tenth of a step on CPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=job.weight_decay, fused=True)
    loop = replace_config(job.loop, "loop", device=str(device), progress=job.loop.progress and progress,
                          desc=f"retrieve generative ({config.arch})")
    result = fit(model, optimizer, windows.epochs(job.batch_size, job.seed), step, config=loop,
                 evaluate=validate, monitor="ndcg@10", size=lambda b: len(b["targets"]))
    info = {**{k: v for k, v in result.as_dict().items() if k != "best_metrics"},
            "parameters": model.parameter_counts()["total"], "parameter_counts": model.parameter_counts(),
            "arch": config.arch, "code_tuples": len(trie),
            "tuples_with_several_items": int((np.diff(trie.slot_offsets) > 1).sum())}
    metrics = result.best_metrics
    if validation_sample(len(targets), job.val_users) is not None:  # early stopping read a sample: report all users
        info["val_users"], info["best_sampled_metrics"] = job.val_users, metrics
        metrics = validate(model, None)
    return model, metrics, info


class GenerativeFamily(RetrieverFamily):
    """``generative``: :class:`GenerativeRetriever` over the item codes, sized by ``job.generative``."""

    features = ("codes",)

    @classmethod
    def train(cls, job, history, targets, *, codes=None, content=None, sizes=None, progress=True) -> Trained:
        if codes is None:
            raise UsageError("generative reads code tuples: give codes (codes.parquet of mmrec quantize)")
        model, validation, info = train_generative(job, history, targets, codes, progress=progress, sizes=sizes)
        return Trained(model.eval(), asdict(model.config), validation, info)

    @classmethod
    def load(cls, config, tensors, device="cpu") -> GenerativeRetriever:
        """The model of a run's ``config.json`` ``model`` entry with its weights, in eval mode on ``device``."""
        net = GenerativeRetriever(build_config(GenerativeConfig, config, "model"))
        net.load_state_dict(tensors)
        return net.to(resolve_device(device)).eval()


__all__ = ["GenerativeFamily", "model_config", "train_generative", "validation_sample"]
