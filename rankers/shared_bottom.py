"""Shared-bottom multi-task baseline (Caruana, 1997): one MLP for all tasks, then a tower per task.

The input is the general features with the domain embedding concatenated, as for MMoE; it is the
baseline PEPNet's personalised gates are measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.layers import TaskTowers, mlp


@dataclass
class SharedBottomConfig(RankerConfig):
    """``bottom`` widths of the shared MLP, per-task ``tower`` widths."""

    name: str = "shared_bottom"
    bottom: list[int] = field(default_factory=lambda: [64, 32])
    tower: list[int] = field(default_factory=lambda: [16])
    layer_sizes: ClassVar[dict[str, bool]] = {"bottom": False, "tower": True}


@RANKERS.register("shared_bottom")
class SharedBottom(Ranker):
    """``(B, K)`` logits from one shared MLP and per-task towers."""

    config_class = SharedBottomConfig

    def _build(self, schema: InputSchema, cfg: SharedBottomConfig) -> None:
        self.bottom = mlp(self.inputs.general_dim(with_domain=True), cfg.bottom, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self.towers = TaskTowers(self.num_tasks, cfg.bottom[-1], cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        return self.towers(self.bottom(self.inputs.general(emb, with_domain=True)))
