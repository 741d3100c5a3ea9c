"""SMES: sparse multi-task experts with bounded activation and global load balancing (arXiv 2602.09386,
Kuaishou; docs/papers.md, "SMES").

``n`` expert MLPs read the same input ``x`` (the general features with the domain, as for MMoE). Per
instance, every task ``k`` scores the experts with its own gate, ``p_k = softmax(W_k x)`` over all
``n``; then *progressive routing* picks which experts run:

- shared subset (selected jointly across tasks): ``S = top-k_shared_i ( sum_k p_k,i )``;
- private experts of task ``k``: ``P_k = top-k_private_i ( W_k x )_i`` over the experts not in ``S``;
- task ``k`` mixes its ``k_shared + k_private`` experts with its gate renormalised over them,
  ``w_k,i = softmax_{i in S u P_k} (W_k x)_i``, ``y_k = sum_{i in S u P_k} w_k,i E_i(x)``; a task
  tower turns ``y_k`` into a logit.

So a task runs ``k_shared + k_private`` experts and an instance at most ``k_shared + K * k_private``
(the union ``S u P_1 u ... u P_K``), against up to ``K * k`` for per-task top-k routing.
Experts outside the union are **not computed**: rows are grouped by expert (gather), each expert runs
on its rows only, and its outputs are added into the task mixtures (scatter, ``index_add``);
``dispatch="dense"`` runs every expert on every row under the same routing, the reference the
sparse path is tested against and the dense MoE of the same size the bench times it against.

Global multi-gate load balancing (in the form of Switch / GShard, on the aggregate over tasks):
with ``f_i`` the share of all (instance, task) picks in the batch that went to expert ``i`` and
``P_i`` the mean of ``p_k,i`` over the instances and tasks,
``L_balance = n * sum_i f_i * P_i``; it is 1 at uniform use and the ranker adds
``balance_weight * L_balance`` to the task losses in training (:meth:`SMES.auxiliary_loss`).

[I] None of this is public beyond the abstract; decided here and config fields:
``shared_score`` ``sum`` (of the task softmax scores; ``max`` is the other choice); private
experts by the task's own gate logits; mixing weights renormalised over the task's chosen experts;
no capacity limit (no row is dropped) and no gate noise; experts are ``Linear -> LayerNorm -> ReLU``
per width of ``expert`` (``expert_norm="none"`` drops the norm): a row-wise norm, not batch norm, so
an expert's output for a row does not depend on which other rows were routed to it, and sparse and
dense dispatch compute the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.features.collate import InputSchema, RankBatch
from mmrec.rankers.layers import GroupedLinear, TaskTowers
from mmrec.rankers.mmoe import ExpertsConfig

SHARED_SCORES = ("sum", "max")
DISPATCH = ("sparse", "dense")
EXPERT_NORMS = ("layer", "none")


@dataclass
class SMESConfig(ExpertsConfig):
    """SMES's fields; see the module docstring. ``expert``: the widths of every expert MLP."""

    name: str = "smes"
    expert: list[int] = field(default_factory=lambda: [32])
    experts: int = 8
    k_shared: int = 1
    k_private: int = 1
    balance_weight: float = 0.01
    shared_score: str = "sum"
    expert_norm: str = "layer"
    dispatch: str = "sparse"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k_shared < 0 or self.k_private < 0 or self.k_shared + self.k_private == 0:
            raise UsageError(f"k_shared and k_private must be >= 0 and not both 0, got {self.k_shared}, {self.k_private}")
        if self.k_shared + self.k_private > self.experts:
            raise UsageError(f"k_shared + k_private must be <= experts ({self.experts}), got {self.k_shared} + {self.k_private}")
        if self.balance_weight < 0:
            raise UsageError(f"balance_weight must be >= 0, got {self.balance_weight}")
        for name, value, allowed in (("shared_score", self.shared_score, SHARED_SCORES), ("dispatch", self.dispatch, DISPATCH),
                                     ("expert_norm", self.expert_norm, EXPERT_NORMS)):
            if value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass
class Routing:
    """Which experts run for a batch of ``B`` instances, ``K`` tasks, ``n`` experts."""

    probs: torch.Tensor  # (B, K, n) every task gate's softmax over all experts
    shared: torch.Tensor  # (B, k_shared) the jointly chosen experts
    select: torch.Tensor  # (B, K, n) bool, the experts each task mixes
    weights: torch.Tensor  # (B, K, n) mixing weights, 0 outside select

    @property
    def active(self) -> torch.Tensor:
        """``(B, n)`` bool: the experts an instance runs (the union over its tasks)."""
        return self.select.any(1)


def route(logits: torch.Tensor, k_shared: int, k_private: int, *, shared_score: str = "sum") -> Routing:
    """Progressive routing from the task gate logits ``(B, K, n)`` (the module docstring's equations)."""
    B, K, n = logits.shape
    probs = torch.softmax(logits, dim=-1)  # (B, K, n)
    score = probs.sum(1) if shared_score == "sum" else probs.amax(1)  # (B, n)
    shared = score.topk(k_shared, dim=-1).indices  # (B, ks)
    in_shared = torch.zeros(B, n, dtype=torch.bool, device=logits.device).scatter(1, shared, True)  # (B, n)
    private = logits.masked_fill(in_shared[:, None, :], float("-inf")).topk(k_private, dim=-1).indices  # (B, K, kp)
    select = in_shared[:, None, :].expand(B, K, n).scatter(2, private, True)  # (B, K, n)
    weights = torch.softmax(logits.masked_fill(~select, float("-inf")), dim=-1)  # (B, K, n)
    return Routing(probs=probs, shared=shared, select=select, weights=weights)


def balance_loss(select: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``n * sum_i f_i P_i`` over all tasks' picks: ``select`` (B, K, n) bool, ``probs`` (B, K, n) -> scalar.

    ``f`` is not differentiable (a count); the gradient reaches the gates through ``P``.
    """
    n = select.shape[-1]
    use = select.float().sum((0, 1))  # (n,) picks per expert summed over instances and tasks
    f = use / use.sum().clamp(min=1.0)
    return n * (f * probs.float().mean((0, 1))).sum()


def load_cv(use: torch.Tensor) -> float:
    """Coefficient of variation (std / mean) of the expert loads ``use`` ``(n,)``; 0 = perfectly balanced."""
    use = use.float()
    return float(use.std(unbiased=False) / use.mean().clamp(min=1e-12))


class Experts(nn.Module):
    """``n`` MLPs ``Linear (-> LayerNorm) -> ReLU`` per width, weights stacked so that one expert runs on
    any subset of rows (:meth:`run`) and all of them on all rows at once (:meth:`dense`)."""

    def __init__(self, n: int, in_dim: int, dims: list[int], *, norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.n, self.dropout = n, dropout
        self.linears = nn.ModuleList()
        self.norms = nn.ParameterList() if norm else None
        for out in dims:
            self.linears.append(GroupedLinear(n, in_dim, out))
            if self.norms is not None:
                self.norms.append(nn.Parameter(torch.stack([torch.ones(n, out), torch.zeros(n, out)])))  # (2, n, out) scale, shift
            in_dim = out
        self.out_dim = in_dim

    def _activate(self, h: torch.Tensor, layer: int, expert: int | None) -> torch.Tensor:
        if self.norms is not None:
            scale, shift = self.norms[layer] if expert is None else self.norms[layer][:, expert]
            h = F.layer_norm(h, h.shape[-1:]) * scale + shift
        return F.dropout(F.relu(h), self.dropout, self.training)

    def run(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``expert`` on rows ``x`` ``(b, in)`` -> ``(b, H)``."""
        for j, linear in enumerate(self.linears):
            x = self._activate(torch.addmm(linear.bias[expert], x, linear.weight[expert]), j, expert)
        return x

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert on every row: ``(B, in) -> (B, n, H)``."""
        h = x[:, None, :].expand(-1, self.n, -1)
        for j, linear in enumerate(self.linears):
            h = self._activate(linear(h), j, None)
        return h

    def mix_sparse(self, x: torch.Tensor, weights: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """``sum_i weights[:, :, i] * E_i(x)`` computing ``E_i`` only on the rows where ``active[:, i]``:
        ``x`` (B, in), ``weights`` (B, K, n), ``active`` (B, n) -> ``(B, K, H)``."""
        out = x.new_zeros(x.shape[0], weights.shape[1], self.out_dim)
        for i in range(self.n):
            rows = active[:, i].nonzero().squeeze(1)  # (b_i,) gather: the rows routed to expert i
            h = self.run(i, x.index_select(0, rows))  # (b_i, H)
            w = weights.index_select(0, rows)[:, :, i]  # (b_i, K)
            out = out.index_add(0, rows, w[:, :, None] * h[:, None, :])  # scatter back into the task mixtures
        return out


@RANKERS.register("smes")
class SMES(Ranker):
    """Jointly routed shared experts plus private experts per task, computed sparsely; ``(B, K)`` logits."""

    config_class = SMESConfig

    def _build(self, schema: InputSchema, cfg: SMESConfig) -> None:
        in_dim = self.inputs.general_dim(with_domain=True)
        self.experts = Experts(cfg.experts, in_dim, cfg.expert, norm=cfg.expert_norm == "layer", dropout=cfg.dropout)
        self.gates = GroupedLinear(self.num_tasks, in_dim, cfg.experts)
        self.towers = TaskTowers(self.num_tasks, self.experts.out_dim, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self._balance: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> Routing:
        """Routing of the general features ``x`` ``(B, in)``."""
        cfg = self.config
        logits = self.gates(x[:, None, :].expand(-1, self.num_tasks, -1))  # (B, K, n)
        return route(logits, cfg.k_shared, cfg.k_private, shared_score=cfg.shared_score)

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """``x`` ``(B, in)`` -> per-task mixtures ``(B, K, H)`` and the routing."""
        routing = self.route(x)
        if self.config.dispatch == "dense":
            mixed = routing.weights @ self.experts.dense(x)  # (B, K, n) @ (B, n, H)
        else:
            mixed = self.experts.mix_sparse(x, routing.weights, routing.active)
        return mixed, routing

    def routing(self, batch: RankBatch) -> Routing:
        """The routing of ``batch`` (for inspection: experts per instance, loads)."""
        return self.route(self.inputs.general(self.inputs(batch), with_domain=True))

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        mixed, routing = self.mix(self.inputs.general(emb, with_domain=True))
        self._balance = balance_loss(routing.select, routing.probs) if self.training and self.config.balance_weight else None
        return self.towers(mixed)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """``balance_weight * L_balance`` of the last training forward (None in eval or at weight 0); read once."""
        balance, self._balance = self._balance, None
        return None if balance is None else self.config.balance_weight * balance
