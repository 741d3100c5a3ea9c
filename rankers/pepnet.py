"""PEPNet: parameter and embedding personalised network (Chang et al., arXiv 2302.01115, KDD'23).

With ``GateNU`` the gate of :mod:`mmrec.rankers.gates` (``delta = gamma * sigmoid(...)``, gamma=2):

- EPNet (embedding personalisation, eq. 3-4): ``E`` = embeddings of the general features;
  ``delta_domain = GateNU([emb(domain), stopgrad(E)])``; ``O_ep = delta_domain * E``.
- PPNet (parameter personalisation, eq. 5-7): ``O_prior = [emb(user), emb(item), emb(author)]``;
  for every layer ``l`` of the task towers, ``delta_l = GateNU_l([O_prior, stopgrad(O_ep)])`` has
  ``K * width_l`` outputs, split into one gate per task; task ``k``'s hidden state is gated,
  ``O_pp_kl = delta_kl * H_kl``, and feeds its next layer, ``H_k(l+1) = ReLU(O_pp_kl W_kl + b_kl)``;
  the last gated state gives task ``k``'s logit. [I] With ``batch_norm`` (the default) each tower
  layer is ``ReLU(BN(O_pp_kl W_kl + b_kl))``.
The stop-gradients keep the gates from pulling the shared embeddings: ``E`` and ``O_ep`` get
gradients only through the paths they gate.
[I] Each task has its own tower (``tower`` widths); the layer inputs gated are ``O_ep`` and every
hidden layer; the gate hidden width is ``gate_hidden``; ``prior`` lists the sparse fields of
``O_prior`` (default ``user_id, item_id`` and ``author_id`` when present); ``epnet`` / ``ppnet``
switch either half off for ablations (off = gates fixed to 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.features.collate import AUTHOR_ID, ITEM_ID, USER_ID, InputSchema, RankBatch
from mmrec.rankers.gates import GateNU
from mmrec.rankers.layers import GroupedBatchNorm, GroupedLinear


class EPNet(nn.Module):
    """``O_ep = GateNU([domain, stopgrad(E)]) * E``: domain ``(B, Dd)``, ``E`` ``(B, De)`` -> ``(B, De)``."""

    def __init__(self, domain_dim: int, general_dim: int, *, hidden: int, gamma: float = 2.0) -> None:
        super().__init__()
        self.gate = GateNU(domain_dim + general_dim, hidden, general_dim, gamma=gamma)

    def forward(self, domain: torch.Tensor, general: torch.Tensor) -> torch.Tensor:
        delta = self.gate(torch.cat([domain, general.detach()], dim=-1))  # (B, De)
        return delta * general


class PPNet(nn.Module):
    """Per-task towers whose every layer input is gated by ``GateNU_l([O_prior, stopgrad(O_ep)])``.

    prior ``(B, Dp)``, ``O_ep`` ``(B, De)`` -> logits ``(B, K)``.
    """

    def __init__(self, prior_dim: int, in_dim: int, tower: Sequence[int], tasks: int, *,
                 hidden: int, gamma: float = 2.0, dropout: float = 0.0, gated: bool = True, batch_norm: bool = False) -> None:
        super().__init__()
        self.tasks = tasks
        widths = [in_dim, *tower]  # the input width of every gated layer
        gates = (GateNU(prior_dim + in_dim, hidden, tasks * w, gamma=gamma) for w in widths) if gated else ()
        self.gates = nn.ModuleList(gates)
        self.layers = nn.ModuleList(GroupedLinear(tasks, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(GroupedBatchNorm(tasks, b) if batch_norm else nn.Identity() for b in widths[1:])
        self.head = GroupedLinear(tasks, widths[-1], 1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, prior: torch.Tensor | None, o_ep: torch.Tensor) -> torch.Tensor:
        gate_in = torch.cat([prior, o_ep.detach()], dim=-1) if self.gates else None  # (B, Dp + De)
        h = o_ep[:, None, :].expand(-1, self.tasks, -1)  # (B, K, De)
        for level in range(len(self.layers) + 1):
            if self.gates:
                h = self.gates[level](gate_in).view(h.shape) * h  # (B, K, width_l): one gate per task
            if level < len(self.layers):
                h = self.dropout(torch.relu(self.norms[level](self.layers[level](h))))  # (B, K, width_l+1)
        return self.head(h).squeeze(-1)  # (B, K)


@dataclass
class PEPNetConfig(RankerConfig):
    """PEPNet's fields; see the module docstring."""

    name: str = "pepnet"
    tower: list[int] = field(default_factory=lambda: [64, 32])
    layer_sizes: ClassVar[dict[str, bool]] = {"tower": False}
    gate_hidden: int = 64
    gamma: float = 2.0
    prior: list[str] | None = None
    epnet: bool = True
    ppnet: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gate_hidden < 1 or self.gamma <= 0:
            raise UsageError(f"gate_hidden must be >= 1 and gamma > 0, got {self.gate_hidden}, {self.gamma}")

    def check_inputs(self, tasks: Sequence[str], sparse: Sequence[str]) -> None:
        unknown = [f for f in self.prior or () if f not in sparse]
        if unknown:
            raise UsageError(f"model.prior: {unknown[0]!r} is not a sparse field; fields: {', '.join(sparse)}")

    def prior_fields(self, sparse: Sequence[str]) -> list[str]:
        if self.prior is not None:
            return list(self.prior)
        return [f for f in (USER_ID, ITEM_ID, AUTHOR_ID) if f in sparse]


@RANKERS.register("pepnet")
class PEPNet(Ranker):
    """EPNet + PPNet over the embedded batch; ``(B, K)`` logits."""

    config_class = PEPNetConfig

    def _build(self, schema: InputSchema, cfg: PEPNetConfig) -> None:
        self.prior = cfg.prior_fields(list(schema.sparse))
        d = cfg.embedding_dim
        general_dim = self.inputs.general_dim(with_domain=False)
        self.epnet = EPNet(d, general_dim, hidden=cfg.gate_hidden, gamma=cfg.gamma) if cfg.epnet else None
        self.ppnet = PPNet(d * len(self.prior), general_dim, cfg.tower, self.num_tasks, hidden=cfg.gate_hidden,
                           gamma=cfg.gamma, dropout=cfg.dropout, gated=cfg.ppnet, batch_norm=cfg.batch_norm)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        emb = self.inputs(batch)
        general = self.inputs.general(emb, with_domain=False)  # E: (B, De)
        o_ep = self.epnet(emb.domain, general) if self.epnet is not None else general  # (B, De)
        prior = torch.cat([emb.fields[name] for name in self.prior], dim=-1) if self.config.ppnet else None  # (B, Dp)
        return self.ppnet(prior, o_ep)
