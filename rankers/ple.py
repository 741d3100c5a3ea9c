"""PLE: progressive layered extraction (Tang et al., RecSys'20, "Progressive Layered Extraction (PLE):
A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations").

PLE stacks ``levels`` CGC (customized gate control) layers. Level ``j`` has ``task_experts``
experts per task and ``shared_experts`` shared ones. With ``x_k^j`` task ``k``'s input at level
``j`` and ``x_s^j`` the shared input (both ``x`` at the first level):

- task gate (eq. 2-4): ``g_k(x_k) = softmax(W_k x_k)`` over the experts of task ``k`` and the
  shared experts only, and task ``k``'s output ``y_k = sum_i g_k(x_k)_i * E_i(input of E_i)``;
- shared gate (eq. 5, between levels): ``g_s(x_s) = softmax(W_s x_s)`` over *all* experts of the
  level; its mix is the shared input of the next level;
- the next level reads ``x_k^{j+1} = y_k^j`` and ``x_s^{j+1} = y_s^j``; the last level has no
  shared gate; task ``k``'s tower turns ``y_k`` of the last level into a logit.
A task expert reads its task's input, a shared expert the shared input. The domain embedding is
part of ``x``, as for MMoE.
[I] Experts are MLPs of widths ``expert`` (every level the same, so level ``j + 1`` reads
``expert[-1]``-wide inputs); gates are linear maps of the gate's own input (the paper's
``W_k``); the masked softmax gives exactly 0 to the experts a gate may not use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.home import masked_mix
from mmrec.rankers.layers import GroupedLinear, GroupedMLP, TaskTowers
from mmrec.rankers.mmoe import ExpertsConfig


@dataclass
class PLEConfig(ExpertsConfig):
    """``levels`` CGC layers of ``task_experts`` experts per task and ``shared_experts`` shared ones."""

    name: str = "ple"
    expert: list[int] = field(default_factory=lambda: [32])
    levels: int = 2
    task_experts: int = 1
    shared_experts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.levels < 1:
            raise UsageError(f"levels must be >= 1, got {self.levels}")
        if self.task_experts < 0 or self.shared_experts < 0 or self.task_experts + self.shared_experts == 0:
            raise UsageError(f"task_experts and shared_experts must be >= 0 and not both 0, got {self.task_experts}, {self.shared_experts}")


class CGC(nn.Module):
    """One extraction level: ``K`` task streams and a shared stream ``(B, K + 1, in)`` -> task outputs
    ``(B, K, H)`` and, unless ``last``, the shared output: streams ``(B, K + 1, H)``.

    Experts are ordered task 0's, ..., task ``K-1``'s, then the shared ones; ``owner[i]`` is the
    stream expert ``i`` reads (``K`` = shared).
    """

    def __init__(self, tasks: int, in_dim: int, cfg: PLEConfig, *, last: bool) -> None:
        super().__init__()
        owner = [k for k in range(tasks) for _ in range(cfg.task_experts)] + [tasks] * cfg.shared_experts
        self.experts = GroupedMLP(len(owner), in_dim, cfg.expert, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self.out_dim = self.experts.out_dim
        gates = tasks if last else tasks + 1
        self.gates = GroupedLinear(gates, in_dim, len(owner))
        # gate k (a task) may use its own experts and the shared ones; the shared gate (row K) all
        mask = torch.tensor([[o in (g, tasks) or g == tasks for o in owner] for g in range(gates)])  # (gates, n)
        self.register_buffer("owner", torch.tensor(owner), persistent=False)  # (n,)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, streams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``streams`` ``(B, K + 1, in)`` -> ``(mixes (B, gates, H), gate weights (B, gates, n))``."""
        experts = self.experts(streams[:, self.owner])  # (B, n, H)
        logits = self.gates(streams[:, : self.mask.shape[0]])  # (B, gates, n)
        return masked_mix(logits, self.mask, experts)


@RANKERS.register("ple")
class PLE(Ranker):
    """Stacked CGC levels with task and shared experts, then one tower per task; ``(B, K)`` logits."""

    config_class = PLEConfig

    def _build(self, schema: InputSchema, cfg: PLEConfig) -> None:
        in_dim = self.inputs.general_dim(with_domain=True)
        levels = []
        for j in range(cfg.levels):
            levels.append(CGC(self.num_tasks, in_dim, cfg, last=j == cfg.levels - 1))
            in_dim = levels[-1].out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = TaskTowers(self.num_tasks, in_dim, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` ``(B, in)`` -> the last level's task outputs ``(B, K, H)`` and every level's gate weights."""
        streams = x[:, None, :].expand(-1, self.num_tasks + 1, -1)  # (B, K + 1, in)
        weights = []
        for level in self.levels:
            streams, w = level(streams)
            weights.append(w)
        return streams, weights

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        out, _ = self.extract(self.inputs.general(emb, with_domain=True))
        return self.towers(out)
