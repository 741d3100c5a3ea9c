"""ESMM: entire space multi-task model (Ma et al., SIGIR'18, "Entire Space Multi-Task Model: An
Effective Approach for Estimating Post-Click Conversion Rate").

A CTR tower and a CVR tower read the same shared embeddings ``x``;

    pCTR = sigmoid(f_ctr(x)),   pCVR = sigmoid(f_cvr(x)),   pCTCVR = pCTR * pCVR      (eq. 2)
    L = sum_i BCE(y_i, pCTR_i) + sum_i BCE(y_i & z_i, pCTCVR_i)                       (eq. 3)

over *all* impressions: pCVR is never fit on clicked rows alone, so it does not suffer the sample
selection bias of a CVR model trained on clicks, and the sparse conversions share the CTR task's
embeddings.
Here ``ctr_task`` (``click`` by default) is the CTR task and every other task of the log is a
post-click conversion with its own CVR tower (ESMM's one conversion, generalised); the ranker
returns, per row, the CTR logit and, for each conversion task, the *logit of pCTCVR*,
``log pCTCVR - log(1 - pCTCVR)``, computed from the two tower logits without rounding
(``1 - s(a) s(b) = s(-a) + s(a) s(-b)``). So the trainer's masked BCE on these logits is eq. 3, and
scores (sigmoid of the output) are pCTR and pCTCVR. A conversion task's label must be the
click-and-convert label ``y & z`` of the paper (1 only on clicked rows).
[I] Towers are MLPs of widths ``tower`` on the general features with the domain embedding, as for
the other rankers; :meth:`ESMM.towers_logits` gives the raw CTR / CVR tower logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.layers import TaskTowers


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``logit(sigmoid(a) * sigmoid(b))`` without forming the product (stable for any ``a``, ``b``)."""
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    log_not_p = torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(a) + F.logsigmoid(-b))  # log(1 - s(a) s(b))
    return log_p - log_not_p


@dataclass
class ESMMConfig(RankerConfig):
    """``ctr_task``: the click task; every other task is a conversion scored as pCTR x pCVR. ``tower``:
    widths of each CTR / CVR tower."""

    name: str = "esmm"
    ctr_task: str = "click"
    tower: list[int] = field(default_factory=lambda: [64, 32])
    layer_sizes: ClassVar[dict[str, bool]] = {"tower": True}

    def check_inputs(self, tasks: Sequence[str], sparse: Sequence[str]) -> None:
        if self.ctr_task not in tasks:
            raise UsageError(f"model.ctr_task {self.ctr_task!r} is not a task; tasks: {', '.join(tasks)}")


@RANKERS.register("esmm")
class ESMM(Ranker):
    """Shared embeddings, a CTR tower and one CVR tower per conversion task; ``(B, K)`` logits of
    pCTR (the CTR task) and pCTCVR (every other task)."""

    config_class = ESMMConfig

    def _build(self, schema: InputSchema, cfg: ESMMConfig) -> None:
        self.ctr_index = list(schema.tasks).index(cfg.ctr_task)
        is_ctr = torch.zeros(self.num_tasks, dtype=torch.bool)
        is_ctr[self.ctr_index] = True
        self.register_buffer("is_ctr", is_ctr, persistent=False)  # (K,)
        self.towers = TaskTowers(self.num_tasks, self.inputs.general_dim(with_domain=True), cfg.tower,
                                 dropout=cfg.dropout, batch_norm=cfg.batch_norm)

    def towers_logits(self, batch: RankBatch) -> torch.Tensor:
        """``(B, K)`` raw tower logits: the CTR tower in the CTR task's column, CVR towers elsewhere."""
        emb = self.inputs(batch)
        return self.towers(self.inputs.general(emb, with_domain=True))

    def forward(self, batch: RankBatch) -> torch.Tensor:
        logits = self.towers_logits(batch)  # (B, K)
        ctr = logits[:, self.ctr_index : self.ctr_index + 1]  # (B, 1)
        return torch.where(self.is_ctr, logits, product_logit(ctr, logits))
