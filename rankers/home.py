"""HoME: hierarchy of multi-gate experts (Wang et al., arXiv 2408.05430, Kuaishou).

HoME keeps MMoE's idea but fixes three ways it breaks at scale (docs/papers.md, "Multi-task rankers"):

- Expert normalisation + Swish: every expert is ``Swish(Norm(W x + b))``, so all experts give
  outputs of one distribution and no gate prefers an expert for its scale (expert collapse).
- Hierarchy mask: two levels. Level 1 ("meta") has shared experts and experts per task *group*
  (e.g. watch-time tasks vs interaction tasks); group ``g``'s gate mixes only the shared experts and
  group ``g``'s, giving ``m_g``. Level 2 has experts per *task* that read ``m_g`` of their group;
  task ``k``'s gate mixes only the level-1 experts its group may use and its own level-2 experts.
  The masks are fixed boolean matrices over the gate logits.
- Feature gate and self gate: each expert reads a private view of its input,
  ``x_e = x * 2 * sigmoid(x A_e B_e)`` (a LoRA-like low-rank gate, rank ``feature_gate_rank``);
  task ``k``'s output adds its group's meta output through a gate of its own,
  ``o_k = t_k + sigmoid(W_k m_g) * m_g``, so gradients reach level 1 by a short path.
The domain embedding is part of the input, as for MMoE.
[I] One linear layer per expert (``expert_dim`` wide); ``expert_norm`` ``batch`` (per expert unit,
as the paper's BN) or ``layer``; ``B_e`` starts at zero so feature gates start at 1; level-2 gates
read ``m_g``; ``task_groups`` None puts all tasks in one group; the self gate's exact form above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError
from mmrec.layers import masked_softmax
from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.layers import GroupedLinear, TaskTowers

EXPERT_NORMS = ("batch", "layer")


class FeatureGate(nn.Module):
    """Per-expert private inputs ``x_e = x * 2 * sigmoid(x A_e B_e)``: ``(B, G, D) -> (B, G, D)``."""

    def __init__(self, groups: int, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(groups, dim, rank) / dim ** 0.5)
        self.up = nn.Parameter(torch.zeros(groups, rank, dim))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.bmm(x.transpose(0, 1), self.down)  # (G, B, r)
        return 2 * torch.sigmoid(torch.bmm(low, self.up)).transpose(0, 1)  # (B, G, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class NormalizedExperts(nn.Module):
    """``G`` experts ``Swish(Norm(W x + b))``: ``(B, G, in) -> (B, G, H)``."""

    def __init__(self, groups: int, in_dim: int, out_dim: int, *, norm: str = "batch", feature_gate_rank: int = 0) -> None:
        super().__init__()
        self.feature_gate = FeatureGate(groups, in_dim, feature_gate_rank) if feature_gate_rank else None
        self.linear = GroupedLinear(groups, in_dim, out_dim)
        self.norm = nn.BatchNorm1d(groups * out_dim) if norm == "batch" else nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_gate is not None:
            x = self.feature_gate(x)
        h = self.linear(x)  # (B, G, H)
        if isinstance(self.norm, nn.BatchNorm1d):
            h = self.norm(h.flatten(1)).view(h.shape)
        else:
            h = self.norm(h)
        return F.silu(h)


def masked_mix(logits: torch.Tensor, mask: torch.Tensor, experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the allowed experts only: logits ``(B, G, n)``, mask ``(G, n)``, experts ``(B, n, H)``.

    Returns the mixtures ``(B, G, H)`` and the weights ``(B, G, n)`` (exactly 0 where masked).
    """
    weights = masked_softmax(logits, mask)
    return weights @ experts, weights


@dataclass
class HoMEConfig(RankerConfig):
    """HoME's fields; see the module docstring."""

    name: str = "home"
    expert_dim: int = 32
    shared_experts: int = 1
    group_experts: int = 1
    task_experts: int = 1
    task_groups: list[list[str]] | None = None
    feature_gate_rank: int = 4
    self_gate: bool = True
    expert_norm: str = "batch"
    tower: list[int] = field(default_factory=lambda: [16])
    layer_sizes: ClassVar[dict[str, bool]] = {"tower": True}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expert_dim < 1 or self.feature_gate_rank < 0:
            raise UsageError(f"expert_dim must be >= 1 and feature_gate_rank >= 0, got {self.expert_dim}, {self.feature_gate_rank}")
        if self.shared_experts < 0 or self.group_experts < 0 or self.task_experts < 0:
            raise UsageError("expert counts must be >= 0")
        if self.shared_experts + self.group_experts == 0:
            raise UsageError("need level-1 experts: shared_experts + group_experts must be >= 1")
        if self.expert_norm not in EXPERT_NORMS:
            raise UsageError(f"expert_norm must be one of {', '.join(EXPERT_NORMS)}, got {self.expert_norm!r}")

    def check_inputs(self, tasks: Sequence[str], sparse: Sequence[str]) -> None:
        if self.task_groups is None:
            return
        listed = [t for group in self.task_groups for t in group]
        for t in listed:
            if t not in tasks:
                raise UsageError(f"model.task_groups: {t!r} is not a task; tasks: {', '.join(tasks)}")
        if sorted(listed) != sorted(tasks) or any(not g for g in self.task_groups):
            raise UsageError(f"model.task_groups must split the tasks {list(tasks)} into non-empty groups, each task once; got {self.task_groups}")

    def groups_of(self, tasks: Sequence[str]) -> list[int]:
        """The group index of each task."""
        if self.task_groups is None:
            return [0] * len(tasks)
        return [next(g for g, group in enumerate(self.task_groups) if t in group) for t in tasks]


@RANKERS.register("home")
class HoME(Ranker):
    """Two-level masked experts with feature and self gates; ``(B, K)`` logits."""

    config_class = HoMEConfig

    def _build(self, schema: InputSchema, cfg: HoMEConfig) -> None:
        K, H = self.num_tasks, cfg.expert_dim
        task_group = cfg.groups_of(schema.tasks)
        C = max(task_group) + 1
        in_dim = self.inputs.general_dim(with_domain=True)
        # level 1: shared experts, then group_experts per group
        owner1 = [-1] * cfg.shared_experts + [g for g in range(C) for _ in range(cfg.group_experts)]
        n1 = len(owner1)
        self.level1 = NormalizedExperts(n1, in_dim, H, norm=cfg.expert_norm, feature_gate_rank=cfg.feature_gate_rank)
        self.meta_gates = GroupedLinear(C, in_dim, n1)
        mask1 = torch.tensor([[o in (-1, g) for o in owner1] for g in range(C)])  # (C, n1)
        # level 2: task_experts per task, reading their group's meta output
        owner2 = [k for k in range(K) for _ in range(cfg.task_experts)]
        self.level2 = (NormalizedExperts(len(owner2), H, H, norm=cfg.expert_norm, feature_gate_rank=cfg.feature_gate_rank)
                       if owner2 else None)
        self.task_gates = GroupedLinear(K, H, n1 + len(owner2))
        mask2 = torch.tensor([[o in (-1, task_group[k]) for o in owner1] + [o == k for o in owner2] for k in range(K)])
        self.register_buffer("mask1", mask1, persistent=False)
        self.register_buffer("mask2", mask2, persistent=False)  # (K, n1 + n2)
        self.register_buffer("task_group", torch.tensor(task_group), persistent=False)  # (K,)
        self.register_buffer("expert_group", torch.tensor([task_group[k] for k in owner2], dtype=torch.long),
                             persistent=False)  # (n2,)
        self.self_gates = GroupedLinear(K, H, H) if cfg.self_gate else None
        self.towers = TaskTowers(K, H, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        x = self.inputs.general(emb, with_domain=True)  # (B, D)
        B = x.shape[0]
        e1 = self.level1(x[:, None, :].expand(B, self.mask1.shape[1], -1))  # (B, n1, H)
        meta, _ = masked_mix(self.meta_gates(x[:, None, :].expand(B, self.mask1.shape[0], -1)), self.mask1, e1)  # (B, C, H)
        own_meta = meta[:, self.task_group]  # (B, K, H)
        experts = e1
        if self.level2 is not None:
            e2 = self.level2(meta[:, self.expert_group])  # (B, n2, H)
            experts = torch.cat([e1, e2], dim=1)  # (B, n1 + n2, H)
        out, _ = masked_mix(self.task_gates(own_meta), self.mask2, experts)  # (B, K, H)
        if self.self_gates is not None:
            out = out + torch.sigmoid(self.self_gates(own_meta)) * own_meta
        return self.towers(out)
