"""MMoE: multi-gate mixture of experts (Ma et al., KDD'18).

``n`` expert MLPs read the same input ``x``; task ``k`` mixes them with its own softmax gate,
``f_k(x) = sum_i softmax(W_k x)_i * expert_i(x)``, and a task tower turns ``f_k`` into a logit.
For several domains, ``x`` holds the domain embedding beside the general features (the usual
multi-domain MMoE); there are no per-domain parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.layers import GroupedLinear, GroupedMLP, TaskTowers


@dataclass
class ExpertsConfig(RankerConfig):
    """Fields of the mixture-of-experts rankers (MMoE, PLE): experts of widths ``expert``, per-task
    ``tower`` widths."""

    expert: list[int] = field(default_factory=lambda: [64, 32])
    tower: list[int] = field(default_factory=lambda: [16])
    layer_sizes: ClassVar[dict[str, bool]] = {"expert": False, "tower": True}


@dataclass
class MMoEConfig(ExpertsConfig):
    """``experts`` shared experts."""

    name: str = "mmoe"
    experts: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.experts < 1:
            raise UsageError(f"experts must be >= 1, got {self.experts}")


@RANKERS.register("mmoe")
class MMoE(Ranker):
    """Shared experts, one softmax gate and one tower per task; ``(B, K)`` logits."""

    config_class = MMoEConfig

    def _build(self, schema: InputSchema, cfg: MMoEConfig) -> None:
        in_dim = self.inputs.general_dim(with_domain=True)
        self.experts = GroupedMLP(cfg.experts, in_dim, cfg.expert, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self.gates = GroupedLinear(self.num_tasks, in_dim, cfg.experts)
        self.towers = TaskTowers(self.num_tasks, self.experts.out_dim, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, in)`` -> per-task mixtures ``(B, K, H)`` and gate weights ``(B, K, n)``."""
        experts = self.experts(x[:, None, :].expand(-1, self.config.experts, -1))  # (B, n, H)
        weights = torch.softmax(self.gates(x[:, None, :].expand(-1, self.num_tasks, -1)), dim=-1)  # (B, K, n)
        return weights @ experts, weights

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        mixed, _ = self.mix(self.inputs.general(emb, with_domain=True))
        return self.towers(mixed)
