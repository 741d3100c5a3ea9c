"""The single-domain baseline: a history-aggregating MF model per domain that never looks across.

For user u in domain d: ``u = λ·U_d[u] + (1 − λ)·W_d·mean(E_d[own history])`` (the UniCDR specific
branch alone), scored by ``⟨u, E_d[i]⟩`` with the same BCE over sampled negatives. The two domains
share no parameter and the other domain's history is ignored.

A cold-start user has no history and no trained embedding in the target domain, so the model can only
give it a learned per-domain global vector ``g_d`` (trained on the ``domain_mask`` share of samples whose
own history is dropped): a popularity-like ranking. That is the point of the comparison: this is
what a recommender knows about a newcomer without cross-domain transfer.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec.crossdomain.base import CDRModel, gather
from mmrec.crossdomain.registry import AGGREGATORS


class SingleDomain(CDRModel):
    """Two independent single-domain models; ``other`` histories are accepted and ignored."""

    default_aggregator = "mean"
    cross_domain = False

    def __init__(self, n_users: int, n_items: tuple[int, int], *, dim: int = 128, aggregator: str = "mean",
                 lam: float = 0.5, dropout: float = 0.3, maxlen: int = 10) -> None:
        super().__init__()
        self.items = nn.ModuleList(nn.Embedding(n, dim) for n in n_items)
        self.users = nn.ModuleList(nn.Embedding(n_users, dim, sparse=True) for _ in n_items)
        for emb in [*self.items, *self.users]:
            nn.init.normal_(emb.weight, std=0.1)
        self.agg = nn.ModuleList(AGGREGATORS.build(aggregator, dim, lam=lam, maxlen=maxlen) for _ in n_items)
        self.global_user = nn.Parameter(torch.zeros(2, dim))
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config, data, state=None) -> SingleDomain:
        return cls(data.n_users, tuple(d.n_items for d in data.domains), dim=config.dim, aggregator=config.aggregator,
                   lam=config.lam, dropout=config.dropout, maxlen=config.maxlen)

    def item_tables(self) -> list[torch.Tensor]:
        return [emb.weight for emb in self.items]

    def user_vectors(self, domain, users, own, other, cold, tables):
        warm = self.agg[domain](self.users[domain](users), gather(tables[domain], own), own)  # (B, D)
        user = torch.where(cold[:, None], self.global_user[domain].expand_as(warm), warm)
        return self.dropout(user)
