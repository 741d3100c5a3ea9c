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
on its rows only, and its outputs are scattered into ``U = min(n, k_shared + K * k_private)`` slots
per instance that the tasks mix over (:meth:`SMES.mix`), so the mixing does not grow with ``n``
either; ``dispatch="dense"`` runs every expert on every row under the same routing, the reference the
sparse path is tested against and the dense MoE of the same size the bench times it against.

Global multi-gate load balancing (in the form of Switch / GShard, on the aggregate over tasks):
with ``f_i`` the share of all (instance, task) picks in the batch that went to expert ``i`` and
``P_i`` the mean of ``p_k,i`` over the instances and tasks,
``L_balance = n * sum_i f_i * P_i``; it is 1 at uniform use and the ranker adds
``balance_weight * L_balance`` to the task losses in training (:meth:`SMES.auxiliary_loss`; it is ``n`` when every pick goes to one expert).

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
    """Which experts run for a batch of ``B`` instances, ``K`` tasks, ``n`` experts; ``m = k_shared + k_private``."""

    probs: torch.Tensor  # (B, K, n) every task gate's softmax over all experts
    shared: torch.Tensor  # (B, k_shared) the jointly chosen experts
    chosen: torch.Tensor  # (B, K, m) the experts each task mixes: the shared ones, then its private ones
    weights: torch.Tensor  # (B, K, m) their mixing weights

    @property
    def select(self) -> torch.Tensor:
        """``(B, K, n)`` bool: the experts each task mixes."""
        return torch.zeros_like(self.probs, dtype=torch.bool).scatter(2, self.chosen, True)

    @property
    def mix_weights(self) -> torch.Tensor:
        """``(B, K, n)``: the mixing weights over all experts, 0 outside :attr:`select`."""
        return torch.zeros_like(self.probs).scatter(2, self.chosen, self.weights)

    @property
    def active(self) -> torch.Tensor:
        """``(B, n)`` bool: the experts an instance runs (the union over its tasks)."""
        return self.select.any(1)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores along the last dimension (argmax for one: far faster than topk on CPU)."""
    return scores.argmax(-1, keepdim=True) if k == 1 else scores.topk(k, dim=-1).indices


def route(logits: torch.Tensor, k_shared: int, k_private: int, *, shared_score: str = "sum") -> Routing:
    """Progressive routing from the task gate logits ``(B, K, n)`` (the module docstring's equations)."""
    B, K, n = logits.shape
    probs = torch.softmax(logits, dim=-1)  # (B, K, n)
    score = probs.sum(1) if shared_score == "sum" else probs.amax(1)  # (B, n)
    shared = _top(score, k_shared)  # (B, ks)
    in_shared = torch.zeros(B, 1, n, dtype=torch.bool, device=logits.device).scatter(2, shared[:, None, :], True)  # (B, 1, n)
    private = _top(logits.masked_fill(in_shared, float("-inf")), k_private)  # (B, K, kp)
    chosen = torch.cat([shared[:, None, :].expand(B, K, k_shared), private], dim=-1)  # (B, K, m)
    weights = torch.softmax(logits.gather(2, chosen), dim=-1)  # (B, K, m) the gate renormalised over the chosen
    return Routing(probs=probs, shared=shared, chosen=chosen, weights=weights)


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

    def run(self, expert: int, x: torch.Tensor, params: list[tuple[torch.Tensor, ...]] | None = None) -> torch.Tensor:
        """Expert ``expert`` on rows ``x`` ``(b, in)`` -> ``(b, H)``; ``params``: :meth:`unbound`'s, else read here."""
        for weight, bias, norm in params or self.unbound():
            x = torch.addmm(bias[expert], x, weight[expert])
            if norm is not None:
                x = F.layer_norm(x, x.shape[-1:]) * norm[0][expert] + norm[1][expert]
            x = F.dropout(F.relu(x), self.dropout, self.training)
        return x

    def unbound(self) -> list[tuple[torch.Tensor, ...]]:
        """Per layer ``(weights, biases, (scales, shifts) or None)``, each a tuple over the experts: one
        ``unbind`` per parameter and forward, whose backward stacks the experts' gradients once (indexing
        the stacked parameter per expert would build a full-size zero gradient per expert)."""
        norms = list(self.norms) if self.norms is not None else [None] * len(self.linears)
        return [(lin.weight.unbind(0), lin.bias.unbind(0), None if norm is None else tuple(t.unbind(0) for t in norm.unbind(0)))
                for lin, norm in zip(self.linears, norms)]

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert on every row: ``(B, in) -> (B, n, H)``."""
        h = x[:, None, :].expand(-1, self.n, -1)
        for j, linear in enumerate(self.linears):
            h = linear(h)  # (B, n, H)
            if self.norms is not None:
                h = F.layer_norm(h, h.shape[-1:]) * self.norms[j][0] + self.norms[j][1]
            h = F.dropout(F.relu(h), self.dropout, self.training)
        return h

    def sparse(self, x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``E_i(x_b)`` only where ``active[b, i]``: ``x`` (B, in), ``active`` (B, n) -> the outputs ``(P, H)``
        of the ``P`` active pairs, grouped by expert, and each pair's ``b * n + i`` ``(P,)``."""
        params = self.unbound()
        if torch.compiler.is_exporting():  # split sizes would be data-dependent: one gather per expert
            index, outputs = [], []
            for i in range(self.n):
                rows = active[:, i].nonzero().squeeze(1)  # (b_i,) gather: the rows routed to expert i
                outputs.append(self.run(i, x.index_select(0, rows), params))  # (b_i, H)
                index.append(rows * self.n + i)
            return torch.cat(outputs), torch.cat(index)
        expert, rows = active.t().nonzero().unbind(1)  # (P,) each, grouped by expert
        chunks = x.index_select(0, rows).split(active.sum(0).tolist())  # one gather, then a slice per expert
        return torch.cat([self.run(i, chunk, params) for i, chunk in enumerate(chunks)]), rows * self.n + expert


@RANKERS.register("smes")
class SMES(Ranker):
    """Jointly routed shared experts plus private experts per task, computed sparsely; ``(B, K)`` logits."""

    config_class = SMESConfig

    def _build(self, schema: InputSchema, cfg: SMESConfig) -> None:
        in_dim = self.inputs.general_dim(with_domain=True)
        self.experts = Experts(cfg.experts, in_dim, cfg.expert, norm=cfg.expert_norm == "layer", dropout=cfg.dropout)
        self.gates = nn.Linear(in_dim, self.num_tasks * cfg.experts)  # every task's gate in one matmul
        self.towers = TaskTowers(self.num_tasks, self.experts.out_dim, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
        self._balance: torch.Tensor | None = None

    def features(self, batch: RankBatch) -> torch.Tensor:
        """The input of the gates and experts ``(B, in)``: the general features with the domain."""
        return self.inputs.general(self.inputs(batch), with_domain=True)

    def route(self, x: torch.Tensor) -> Routing:
        """Routing of the expert input ``x`` ``(B, in)`` (:meth:`features`)."""
        cfg = self.config
        logits = self.gates(x).view(x.shape[0], self.num_tasks, cfg.experts)  # (B, K, n)
        return route(logits, cfg.k_shared, cfg.k_private, shared_score=cfg.shared_score)

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """``x`` ``(B, in)`` -> per-task mixtures ``(B, K, H)`` and the routing.

        Sparse: the outputs of an instance's active experts go to ``U = min(n, k_shared + K k_private)``
        slots of its own (the ``u``-th active expert in slot ``u``, zeros after the last), and each task
        mixes over these slots, ``(B, K, U) @ (B, U, H)``: neither the unchosen experts nor their mixing
        is computed. Dense: every expert on every row, mixed over all ``n`` (zero weights outside the choice).
        """
        routing = self.route(x)
        B, (K, m), n = x.shape[0], routing.chosen.shape[1:], self.config.experts
        if self.config.dispatch == "dense":
            return routing.mix_weights @ self.experts.dense(x), routing  # (B, K, n) @ (B, n, H)
        active = routing.active  # (B, n)
        U = min(n, self.config.k_shared + K * self.config.k_private)
        slot = active.cumsum(1) - 1  # (B, n) slot of each active expert in its row
        outputs, pair = self.experts.sparse(x, active)  # (P, H), (P,) unchosen experts are never computed
        target = (torch.arange(B, device=x.device)[:, None] * U + slot).view(-1)[pair]  # (P,) row b * U + slot
        slots = outputs.new_zeros(B * U, outputs.shape[1]).index_copy(0, target, outputs).view(B, U, -1)  # (B, U, H)
        weights = torch.zeros(B, K, U, dtype=routing.weights.dtype, device=x.device).scatter(
            2, slot.gather(1, routing.chosen.view(B, K * m)).view(B, K, m), routing.weights)  # (B, K, U)
        return weights @ slots, routing

    def routing(self, batch: RankBatch) -> Routing:
        """The routing of ``batch`` (for inspection: experts per instance, loads)."""
        return self.route(self.features(batch))

    def forward(self, batch: RankBatch) -> torch.Tensor:
        mixed, routing = self.mix(self.features(batch))
        self._balance = balance_loss(routing.select, routing.probs) if self.training and self.config.balance_weight else None
        return self.towers(mixed)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """``balance_weight * L_balance`` of the last training forward (None in eval or at weight 0); read once."""
        balance, self._balance = self._balance, None
        return None if balance is None else self.config.balance_weight * balance
