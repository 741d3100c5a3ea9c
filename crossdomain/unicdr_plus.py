"""UniCDR+ (Cao et al., arXiv 2409.04540): UniCDR with five additions, two domains.

1. Feature engineering: item vectors from id + degree bucket (+ multimodal embeddings when given),
   :class:`~mmrec.crossdomain.item_graph.ItemEncoder`.
2. Item-item multi-hop signals: LightGCN over the co-interaction graph of both domains' items
   (PyG ``LGConv``), recomputed every step.
3. Efficient sequence aggregators: the recency-aware ``position_attention`` (default) or any UniCDR
   aggregator, all O(L·D).
4. Hard + soft contrast on the shared part: for a user with history in both domains, the shared
   pooled vectors from the own-domain history ``z_d`` and from the other domain ``z_d'`` form a pair;
   hard InfoNCE with in-batch negatives (τ = 0.2) plus ``soft_weight`` × a soft InfoNCE whose target
   row is ``softmax(sim(z_d, z_d)/τ)`` of the stop-gradient own-domain views ([I]: users whose
   own-domain tastes agree are partial positives, not negatives). Weight ``contrast_weight``.
5. Multi-behaviour head: MMoE (Ma et al. 2018) over ``u ⊙ i``; task t's logit is
   ``⟨u, i⟩ + tower_t(Σ_e g_t,e · expert_e(u ⊙ i))``. The Amazon pairs have one behaviour, so the head
   runs with one task there; a Parquet log with several label columns trains one task per column
   (BCE: negatives are 0 for every task; softmax: one softmax per task over the candidates, counted
   where the positive has that label) and ranking uses task 0.

Everything else (specific/shared users, domain masking, critic, 0.4/0.6 weights) is UniCDR's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.crossdomain.base import gather
from mmrec.crossdomain.data import Batch
from mmrec.crossdomain.item_graph import ItemEncoder, item_encoder_inputs
from mmrec.crossdomain.unicdr import UniCDR
from mmrec.losses import info_nce


class MMoEHead(nn.Module):
    """``experts`` MLP experts over ``x`` ``(..., D)``, one softmax gate and one linear tower per task."""

    def __init__(self, dim: int, *, experts: int = 2, tasks: int = 1, hidden: int = 32) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) for _ in range(experts))
        self.gates = nn.Linear(dim, experts * tasks)
        self.towers = nn.Linear(hidden, tasks)
        nn.init.zeros_(self.towers.weight)
        nn.init.zeros_(self.towers.bias)
        self.n_experts, self.tasks = experts, tasks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(..., D)`` -> per-task logits ``(..., T)``."""
        e = torch.stack([expert(x) for expert in self.experts], -2)  # (..., E, H)
        g = torch.softmax(self.gates(x).unflatten(-1, (self.tasks, self.n_experts)), -1)  # (..., T, E)
        mixed = g @ e  # (..., T, H)
        return (mixed * self.towers.weight).sum(-1) + self.towers.bias  # (..., T)


class UniCDRPlus(UniCDR):
    """UniCDR + item encoder/GNN + sequence aggregator + hard/soft contrast + MMoE head."""

    default_aggregator = "position_attention"

    def __init__(self, n_users: int, n_items: tuple[int, int], *, features: dict, dim: int = 128,
                 aggregator: str = "position_attention", lam: float = 0.5, dropout: float = 0.3,
                 critic_weight: float = 0.6, maxlen: int = 10, gnn_layers: int = 2, contrast_weight: float = 0.1,
                 soft_weight: float = 0.5, temperature: float = 0.2, experts: int = 2, tasks: int = 1) -> None:
        super().__init__(n_users, n_items, dim=dim, aggregator=aggregator, lam=lam, dropout=dropout,
                         critic_weight=critic_weight, maxlen=maxlen)
        del self.items
        self.encoder = ItemEncoder(n_items, dim, degrees=features["degrees"], edge_index=features["edge_index"],
                                   layers=gnn_layers, content=features["content"])
        self.head = MMoEHead(dim, experts=experts, tasks=tasks)
        self.contrast_weight, self.soft_weight, self.temperature = contrast_weight, soft_weight, temperature

    @classmethod
    def from_config(cls, config, data, state=None) -> UniCDRPlus:
        return cls(data.n_users, tuple(d.n_items for d in data.domains), features=item_encoder_inputs(config, data, state),
                   dim=config.dim, aggregator=config.aggregator, lam=config.lam, dropout=config.dropout,
                   critic_weight=config.critic_weight, maxlen=config.maxlen, gnn_layers=config.gnn_layers,
                   contrast_weight=config.contrast_weight, soft_weight=config.soft_weight,
                   temperature=config.temperature, experts=config.experts, tasks=len(data.tasks))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return self.encoder.extra_tensors()

    def item_tables(self) -> list[torch.Tensor]:
        return self.encoder()

    def task_logits(self, domain: int, user: torch.Tensor, items: torch.Tensor, tables,
                    users: torch.Tensor | None = None, cold: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, T)`` logits of every task (plus the count residual, given ``users``)."""
        item = tables[domain][items]  # (B, C, D)
        x = user[:, None, :] * item
        return self.with_residual(x.sum(-1, keepdim=True) + self.head(x), domain, users, items, cold)

    def score(self, domain, user, items, tables, users=None, cold=None):
        return self.task_logits(domain, user, items, tables, users, cold)[..., 0]

    def contrast(self, batch: Batch, tables) -> torch.Tensor:
        both = ~batch.cold & (batch.other >= 0).any(1)
        if both.sum() < 2:
            return tables[0].sum() * 0.0
        d, users = batch.domain, batch.users[both]
        shared = self.user_shared(users)
        z_own = self.agg_shared[d].pool(shared, gather(tables[d], batch.own[both]), batch.own[both])
        z_other = self.agg_shared[1 - d].pool(shared, gather(tables[1 - d], batch.other[both]), batch.other[both])
        hard = info_nce(z_other, z_own, self.temperature)
        with torch.no_grad():
            own = F.normalize(z_own, dim=-1)
            soft_target = torch.softmax(own @ own.T / self.temperature, 1)
        soft = info_nce(z_other, z_own, self.temperature, soft=soft_target)
        return (1 - self.soft_weight) * hard + self.soft_weight * soft

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        tables = self.item_tables()
        spec, shared = self.parts(batch.domain, batch.users, batch.own, batch.other, batch.cold, tables)
        items = torch.cat([batch.pos[:, None], batch.neg], 1)  # (B, 1 + K)
        logits = self.task_logits(batch.domain, self.dropout(spec + shared), items, tables, batch.users,
                                 batch.cold)  # (B, 1+K, T)
        if self.objective == "softmax":  # one softmax over the candidates per task with a positive label
            logits = self.negative_shift(logits)
            ce = F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), torch.zeros(logits.shape[0] * logits.shape[2],
                                 dtype=torch.long, device=logits.device), reduction="none")
            bce = (ce * batch.labels.flatten()).sum() / batch.labels.sum().clamp(min=1)
        else:
            target = torch.zeros_like(logits)
            target[:, 0, :] = batch.labels
            bce = F.binary_cross_entropy_with_logits(logits, target)
        critic = self.critic_loss(batch.domain, spec, shared, ~batch.cold)
        contrast = self.contrast(batch, tables)
        w = self.critic_weight
        total = (1 - w) * bce + w * critic + self.contrast_weight * contrast
        return total, {"bce": bce.item(), "critic": critic.item(), "contrast": contrast.item()}
