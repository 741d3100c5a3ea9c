"""What every cross-domain model offers the trainer and the evaluator.

A model holds two domains (index 0 and 1) sharing users. ``item_tables()`` returns each domain's item
vectors (after any item encoder or GNN, computed once per step); ``user_vectors`` builds the target
domain's user vector from the own-domain history (empty for a cold-start user) and the other domain's
history; ``score`` compares user vectors with candidate items (``(B, C)``); ``loss`` is the training
objective of one :class:`~mmrec.crossdomain.data.Batch`. Each model is registered by name in
:data:`~mmrec.crossdomain.registry.CDR_MODELS` and builds itself from a
:class:`~mmrec.crossdomain.config.CDRConfig` and the data with ``from_config``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.crossdomain.data import Batch


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters; the CPU for a model without any (the counted baselines)."""
    return next(model.parameters(), torch.empty(0)).device


def gather(table: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` for ids with ``-1`` padding (padding rows are zero): ``(..., D)``."""
    out = table[items.clamp(min=0)]
    return out * (items >= 0).unsqueeze(-1).to(out.dtype)


class CDRModel(nn.Module):
    """Base class: dot-product scores; the loss over 1 positive and K sampled negatives is the BCE
    (``objective = "bce"``, UniCDR's) or the sampled softmax cross-entropy (``"softmax"``)."""

    objective = "bce"
    candidates = 0  # softmax: the ranking list the K sampled negatives stand for (0: unweighted); see negative_shift
    default_aggregator = "mean"  # CDRConfig.aggregator when none is given
    cross_domain = True  # False: the model never reads the other domain (no count residual)
    trainable = True  # False: no gradient training, train_model calls ``select(targets, seed)`` (baselines)
    drop_cold_user = False  # True: cold samples score without the user embedding (CDRConfig.cold_drop_user)

    @classmethod
    def from_config(cls, config, data, state: dict[str, torch.Tensor] | None = None) -> CDRModel:
        """The model for ``config`` (a CDRConfig) and ``data`` (a CDRData); ``state``: tensors of a saved run."""
        raise NotImplementedError

    def item_tables(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def user_kept(self, cold: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the samples whose user embedding enters their vector. With ``drop_cold_user`` a cold
        sample with other-domain history leaves it out. [I] An overlap user's embedding has trained on its
        target-domain items, so a domain-masked training sample that reads it is not the cold start it stands
        for: a cold-start user's embedding has only seen the source domain (docs/cross-domain.md)."""
        if not self.drop_cold_user:
            return torch.ones_like(cold)
        return ~cold | ~(other >= 0).any(1)

    def user_vectors(self, domain: int, users: torch.Tensor, own: torch.Tensor, other: torch.Tensor,
                     cold: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, domain: int, user: torch.Tensor, items: torch.Tensor, tables: list[torch.Tensor],
              users: torch.Tensor | None = None, cold: torch.Tensor | None = None) -> torch.Tensor:
        """``user`` ``(B, D)``, ``items`` ``(B, C)`` -> scores ``(B, C)``; with the user ids ``users``, plus
        the count residual when the model has one (:mod:`~mmrec.crossdomain.residual`; ``cold`` ``(B,)``: the
        samples scored without their own-domain history, all of them when None)."""
        return self.with_residual((user[:, None, :] * tables[domain][items]).sum(-1), domain, users, items, cold)

    def with_residual(self, scores: torch.Tensor, domain: int, users: torch.Tensor | None,
                      items: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        """``scores`` ``(B, C)`` (or ``(B, C, T)``) plus the residual of ``users`` at ``items``, if any."""
        if users is None or "residual" not in self._modules:
            return scores
        extra = self.residual(domain, users, items, cold)
        return scores + (extra[..., None] if scores.ndim == 3 else extra)

    def negative_shift(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(B, 1 + K, ...)`` with ``log((candidates − 1)/K)`` added to the K negatives' columns.

        The sampled softmax over 1 positive and K uniform negatives then estimates the softmax over a list
        of ``candidates`` items, each negative standing for ``(candidates − 1)/K`` of them in the partition
        (Bengio & Senécal 2008, importance-sampled softmax; Jean et al. 2015, eq. 11). [I] With
        ``candidates`` = 1000, the size of the evaluation list: with 10 negatives a margin of log 10 over
        them already zeroes the loss, so the count residual's weight stopped growing before it outranked
        999 candidates (docs/cross-domain.md)."""
        k = logits.shape[1] - 1
        if not self.candidates or k < 1:
            return logits
        shift = torch.zeros(logits.shape[1], dtype=logits.dtype, device=logits.device)
        shift[1:] = math.log((self.candidates - 1) / k)
        return logits + shift.view(1, -1, *([1] * (logits.ndim - 2)))

    def bce(self, batch: Batch, user: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
        items = torch.cat([batch.pos[:, None], batch.neg], 1)  # (B, 1 + K)
        logits = self.score(batch.domain, user, items, tables, users=batch.users, cold=batch.cold)
        if self.objective == "softmax":
            logits = self.negative_shift(logits)
            return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
        target = torch.zeros_like(logits)
        target[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, target)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        tables = self.item_tables()
        user = self.user_vectors(batch.domain, batch.users, batch.own, batch.other, batch.cold, tables)
        loss = self.bce(batch, user, tables)
        return loss, {"bce": loss.item()}
