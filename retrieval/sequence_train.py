"""``mmrec retrieve train --model kuaiformer|sasrec``: the transformer retrievers' families (:data:`~mmrec.retrieval.registry.RETRIEVERS`).

:class:`KuaiFormerFamily` trains :class:`~mmrec.retrieval.kuaiformer.KuaiFormer` and :class:`SASRecFamily`
its one-interest, ids-only case :class:`~mmrec.retrieval.kuaiformer.SASRec`, on the training part of a
``mmrec seq import`` folder: each user's sequence is read once per epoch with a training sample at
every position (:meth:`KuaiFormer.interests_at`), batches of about ``batch_size`` samples of users of
similar length (:class:`~mmrec.retrieval.samples.TrainingSamples`); the loss is the full softmax or the
in-batch softmax with logQ correction (``job.loss``; none: by catalogue size, :func:`default_loss`), plus
the transition term when the model has one (counted over the training part, read leave-one-out).
Training runs through :func:`mmrec.training.fit` with early stopping on validation NDCG@10, the best
epoch restored (docs/papers.md, "Retrieval: KuaiFormer and SASRec").
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import InputError
from mmrec.retrieval.evaluate import evaluate
from mmrec.retrieval.kuaiformer import (
    KuaiFormer,
    RetrieverConfig,
    SASRec,
    SASRecConfig,
    default_loss,
    full_softmax_loss,
    sampled_softmax_loss,
)
from mmrec.retrieval.registry import RetrieverFamily, Trained
from mmrec.retrieval.samples import TrainingSamples
from mmrec.retrieval.transition import sources_at
from mmrec.training import fit


def _step(job: Any, model: KuaiFormer, samples: TrainingSamples, device: torch.device, generator: torch.Generator):
    loss_kind = job.loss or default_loss(model.config.n_items)
    log_p = samples.log_p.to(device) if job.logq else None
    n = model.config.n_items
    term = model.transition

    def step(net, batch):
        hist, targets = batch["history"].to(device), batch["targets"].to(device)
        keep = targets >= 0
        users, targets = model.interests_at(hist)[keep], targets[keep]  # (V, k, D), (V,)
        sources = None if term is None else sources_at(hist, term.order)[keep]  # (V, order)
        if loss_kind == "full":
            bias = None if term is None else (lambda logits: term.add_to(logits, sources, targets))  # leave-one-out
            return full_softmax_loss(users, targets, model.item_vectors(), job.temperature, bias=bias,
                                     label_smoothing=job.label_smoothing)
        negatives = None
        cands = targets
        if job.uniform_negatives:
            negatives = torch.randint(n, (job.uniform_negatives,), generator=generator).to(device)
            cands = torch.cat([targets, negatives])
        bias = None if term is None else term(sources, cands.expand(len(targets), -1), targets=targets)
        return sampled_softmax_loss(users, targets, model.item_vectors(targets), log_p=log_p, negatives=negatives,
                                    negative_vectors=None if negatives is None else model.item_vectors(negatives),
                                    n_items=n, temperature=job.temperature, bias=bias,
                                    label_smoothing=job.label_smoothing)

    return step


class KuaiFormerFamily(RetrieverFamily):
    """``kuaiformer``: :class:`KuaiFormer` sized by ``job.model_config`` (:class:`RetrieverConfig`), with codes and content."""

    model_class: type[KuaiFormer] = KuaiFormer
    config_class: type[RetrieverConfig] = RetrieverConfig
    features = ("codes", "emb")
    fixed: dict[str, Any] = {}  # model config fields the family sets whatever the job says

    @classmethod
    def model_config(cls, job: Any, n_items: int, codes: np.ndarray | None, content: np.ndarray | None,
                     sizes: list[int] | None = None) -> RetrieverConfig:
        """The model's config: ``job.model_config`` with the sizes the data gives (``sizes``: the codes file's metadata)."""
        overrides: dict[str, Any] = {"n_items": n_items, **cls.fixed}
        if codes is not None:
            overrides["code_sizes"] = tuple(sizes or (int(c) for c in codes.max(0) + 1))  # the codes file's metadata first
        if content is not None:
            overrides["content_dim"] = int(content.shape[1])
        base = build_config(RetrieverConfig, job.model_config, "retrieve.model_config")
        return build_config(cls.config_class, {**asdict(base), **overrides}, "retrieve.model_config")

    @classmethod
    def train(cls, job, history, targets, *, codes=None, content=None, sizes=None, progress=True) -> Trained:
        model_config = cls.model_config(job, history.n_items, codes, content, sizes)
        device = resolve_device(job.loop.device)
        model = cls.model_class(model_config)
        model.set_item_features(codes, content)
        if model.transition is not None:
            model.transition.fit(history)  # counted over the training part only
        model.to(device)
        samples = TrainingSamples(history, model_config.max_len)
        if len(samples) == 0:
            raise InputError("no training samples (every training part has < 2 items)")
        # fused: one kernel for all parameters (6x faster steps on CPU than the per-tensor loop)
        optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=job.weight_decay, fused=True)
        generator = torch.Generator().manual_seed(job.seed)

        train_counts = history.item_counts()

        def validate(m):
            return evaluate(m.score, history, targets, max_len=model_config.max_len, train_counts=train_counts)

        loop = replace_config(job.loop, "loop", device=str(device), progress=job.loop.progress and progress, desc=f"retrieve {job.model}")
        result = fit(model, optimizer, samples.epochs(job.batch_size, job.seed),
                     _step(job, model, samples, device, generator), config=loop, evaluate=validate, monitor="ndcg@10",
                     size=lambda b: int((b["targets"] >= 0).sum()))
        info = {**{k: v for k, v in result.as_dict().items() if k != "best_metrics"},
                "loss": job.loss or default_loss(history.n_items), "parameters": sum(p.numel() for p in model.parameters())}
        return Trained(model.eval(), asdict(model_config), result.best_metrics, info)

    @classmethod
    def load(cls, config, tensors, device="cpu"):
        model = cls.model_class(build_config(cls.config_class, config, "model"))
        if model.transition is not None:
            model.transition.load_counts(tensors, "transition.")  # the counts are saved with the weights
        model.load_state_dict(tensors)
        return model.to(resolve_device(device)).eval()


class SASRecFamily(KuaiFormerFamily):
    """``sasrec``: :class:`SASRec` (:class:`SASRecConfig`: ``job.model_config``'s sizes, readout last over ids,
    + content / codes when the job gives them)."""

    model_class = SASRec
    config_class = SASRecConfig
    fixed = {"readout": "last", "interests": 1, "use_id": True}


__all__ = ["KuaiFormerFamily", "SASRecFamily"]
