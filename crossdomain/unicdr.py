"""UniCDR (Cao et al., "A Unified Framework for Cross-Domain Recommendation", WSDM'23), two domains.

Per domain d: item embeddings ``E_d`` and a domain-specific user embedding ``U_d``; one domain-shared
user embedding ``U_s``. For a sample of user u in domain d:

- ``specific_u = agg_d(U_d[u], E_d[own history])`` (eq. 4, the aggregator of :mod:`.aggregators`);
- ``shared_u = agg_s,d'(U_s[u], E_d'[other-domain history])`` — domain masking: the shared part only
  sees the *other* domain, so it learns to stand in for a user the target domain has never seen;
- ``u = specific_u + shared_u``; score ``⟨u, E_d[i]⟩``; dropout 0.3 on ``u``.

Interaction masking drops 10 % of each history and the target item (data.make_batch). Loss
``0.4·L_rec + 0.6·critic`` with ``L_rec`` UniCDR's BCE over the positive and the sampled negatives, or
([I], ``objective="softmax"``, the default of :class:`~mmrec.crossdomain.config.CDRConfig`, chosen on valid)
the sampled softmax over the same candidates; the critic is a per-domain bilinear discriminator ``σ(specᵀ M_d shared)``
(DGI / JSD mutual-information estimate) scoring (specific_u, shared_u) of the same user against
shared vectors of other users of the batch.

Cold start ([I], as UniCDR's cold-start evaluation): a user with no history in the target domain has
no trained specific embedding there, so the specific part is dropped and ``u = shared_u``; training
drops it the same way for a ``domain_mask`` share of the samples (flag ``cold`` of the batch). With
``CDRConfig.cold_drop_user`` a cold sample's shared part also leaves ``U_s[u]`` out (a zero user vector in
the pooling, [I], :meth:`~mmrec.crossdomain.base.CDRModel.user_kept`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.crossdomain.aggregators import ease_weights
from mmrec.crossdomain.base import CDRModel, gather
from mmrec.crossdomain.data import Batch
from mmrec.crossdomain.registry import AGGREGATORS


class UniCDR(CDRModel):
    """UniCDR for two domains of ``n_items`` items each and ``n_users`` shared users."""

    default_aggregator = "user_attention"

    def __init__(self, n_users: int, n_items: tuple[int, int], *, dim: int = 128, aggregator: str = "user_attention",
                 lam: float = 0.5, dropout: float = 0.3, critic_weight: float = 0.6, maxlen: int = 10,
                 similarity: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)) -> None:
        super().__init__()
        self.dim, self.critic_weight = dim, critic_weight
        self.items = nn.ModuleList(nn.Embedding(n, dim) for n in n_items)
        self.user_specific = nn.ModuleList(nn.Embedding(n_users, dim, sparse=True) for _ in n_items)
        self.user_shared = nn.Embedding(n_users, dim, sparse=True)
        for emb in [*self.items, *self.user_specific, self.user_shared]:
            nn.init.normal_(emb.weight, std=0.1)
        # agg_specific[d] pools domain-d items; agg_shared[d] pools domain-d items into the shared space
        self.agg_specific = nn.ModuleList(
            AGGREGATORS.build(aggregator, dim, lam=lam, maxlen=maxlen, similarity=similarity[d]) for d in range(2))
        self.agg_shared = nn.ModuleList(
            AGGREGATORS.build(aggregator, dim, lam=lam, maxlen=maxlen, similarity=similarity[d]) for d in range(2))
        self.critic = nn.ModuleList(nn.Bilinear(dim, dim, 1) for _ in range(2))
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config, data, state=None) -> UniCDR:
        similarity = (None, None)
        if AGGREGATORS.get(config.aggregator).needs_similarity:
            similarity = tuple(ease_weights(d.train, d.n_items, max_items=config.ease_items) for d in data.domains)
        return cls(data.n_users, tuple(d.n_items for d in data.domains), dim=config.dim, aggregator=config.aggregator,
                   lam=config.lam, dropout=config.dropout, critic_weight=config.critic_weight, maxlen=config.maxlen,
                   similarity=similarity)

    def item_tables(self) -> list[torch.Tensor]:
        return [emb.weight for emb in self.items]

    def parts(self, domain: int, users: torch.Tensor, own: torch.Tensor, other: torch.Tensor, cold: torch.Tensor,
              tables: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(specific_u, shared_u)`` ``(B, D)`` each; the specific part is zero for cold samples."""
        spec = self.agg_specific[domain](self.user_specific[domain](users), gather(tables[domain], own), own)
        spec = spec * (~cold)[:, None].to(spec.dtype)
        user = self.user_shared(users) * self.user_kept(cold, other)[:, None].to(spec.dtype)
        shared = self.agg_shared[1 - domain](user, gather(tables[1 - domain], other), other)
        return spec, shared

    def user_vectors(self, domain, users, own, other, cold, tables):
        spec, shared = self.parts(domain, users, own, other, cold, tables)
        return self.dropout(spec + shared)

    def critic_loss(self, domain: int, spec: torch.Tensor, shared: torch.Tensor, warm: torch.Tensor) -> torch.Tensor:
        """JSD mutual-information critic on the warm samples (they have a specific part)."""
        spec, shared = spec[warm], shared[warm]
        if len(spec) < 2:
            return spec.sum() * 0.0
        shuffled = shared[torch.roll(torch.arange(len(shared), device=shared.device), 1)]
        pos = self.critic[domain](spec, shared).squeeze(-1)
        neg = self.critic[domain](spec, shuffled).squeeze(-1)
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
            F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        tables = self.item_tables()
        spec, shared = self.parts(batch.domain, batch.users, batch.own, batch.other, batch.cold, tables)
        bce = self.bce(batch, self.dropout(spec + shared), tables)
        critic = self.critic_loss(batch.domain, spec, shared, ~batch.cold)
        w = self.critic_weight
        return (1 - w) * bce + w * critic, {"bce": bce.item(), "critic": critic.item()}
