"""Embedding a :class:`mmrec.rankers.features.RankBatch` into the vectors rankers work on.

- every sparse field (``user_id``, ``item_id``, ``author_id``, further columns): a table of
  ``embedding_dim`` rows, row 0 the out-of-vocabulary id;
- every code feature: :class:`mmrec.quantization.CodeEmbedding` (one table per level, summed or,
  with ``code_mode="concat"``, side by side; code ``-1`` embeds to zero), learned end to end as
  QARM does;
- every dense feature (cached or encoded content vectors): a linear projection to ``embedding_dim``;
- every user-side dense feature (cross-domain or graph user vectors): a linear projection to
  ``embedding_dim``, a context field beside the user id;
- every code cross feature: :class:`mmrec.quantization.CodeCrossFeatures` on the candidate's codes
  and the codes of the row's history items (candidate, mean-pooled history, prefix-match counts,
  dot-product target attention over the prefix-sharing history items), QARM's cross features;
- the domain: its own table (PEPNet feeds it to EPNet, the other rankers concatenate it).
An item is ``[item_id, codes..., dense...]`` concatenated (``item_dim``); the candidate and every
history item use the same item embedding, and the history is pooled against the candidate by
:class:`TargetAttention` (or a masked mean). :meth:`FeatureEmbedding.general` concatenates the
non-item sparse fields, the user vectors, the candidate item, the pooled history and the code
cross features: PEPNet's ``E``.
[I] Tables start at N(0, 0.05^2); PEPNet's prior (user, item, author) shares these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from mmrec.layers import CodeEmbedding, TargetAttention
from mmrec.quantization.features import CodeCrossFeatures
from mmrec.rankers.features.collate import ITEM_ID, InputSchema, RankBatch

if TYPE_CHECKING:
    from mmrec.rankers.base import RankerConfig

INIT_STD = 0.05


@dataclass
class Embedded:
    """One batch, embedded."""

    fields: dict[str, torch.Tensor]  # sparse field -> (B, d)
    item: torch.Tensor  # (B, item_dim) candidate item
    history: torch.Tensor | None  # (B, item_dim) pooled history, None without history
    domain: torch.Tensor  # (B, d)
    users: dict[str, torch.Tensor] = field(default_factory=dict)  # user feature -> (B, d)
    cross: dict[str, torch.Tensor] = field(default_factory=dict)  # code cross feature -> (B, out_dim)


class FeatureEmbedding(nn.Module):
    """``RankBatch -> Embedded``; see the module docstring."""

    def __init__(self, schema: InputSchema, config: RankerConfig) -> None:
        super().__init__()
        d = config.embedding_dim
        self.dim = d
        self.sparse = nn.ModuleDict({name: nn.Embedding(size, d) for name, size in schema.sparse.items()})
        self.codes = nn.ModuleDict({name: CodeEmbedding(list(sizes), d, mode=config.code_mode) for name, sizes in schema.codes.items()})
        self.dense = nn.ModuleDict({name: nn.Linear(width, d) for name, width in schema.dense.items()})
        self.users = nn.ModuleDict({name: nn.Linear(width, d) for name, width in schema.user_dense.items()})
        self.cross = nn.ModuleDict({name: CodeCrossFeatures(list(sizes), d, min_prefix=min(config.cross_min_prefix, len(sizes)))
                                    for name, sizes in schema.cross.items()})
        self.domain = nn.Embedding(max(len(schema.domains), 1), d)
        for table in [*self.sparse.values(), self.domain]:
            nn.init.normal_(table.weight, std=INIT_STD)
        for code in [*self.codes.values(), *(c.embedding for c in self.cross.values())]:
            nn.init.normal_(code.table.weight, std=INIT_STD)
            with torch.no_grad():
                code.table.weight[code.padding_idx].zero_()
        self.context_fields = [name for name in schema.sparse if name != ITEM_ID]
        self.item_dim = d * (1 + len(self.dense)) + sum(code.out_dim for code in self.codes.values())
        self.pooling = config.history_attention if schema.history else "none"
        if self.pooling in ("din", "dot"):
            self.attention = TargetAttention(self.item_dim, scorer=self.pooling, hidden=config.attention_hidden,
                                             softmax=config.attention_softmax)

    def general_dim(self, *, with_domain: bool) -> int:
        """Width of :meth:`general`."""
        history = self.item_dim if self.pooling != "none" else 0
        cross = sum(c.out_dim for c in self.cross.values())
        return self.dim * (len(self.context_fields) + len(self.users) + with_domain) + self.item_dim + history + cross

    def embed_items(self, item_id: torch.Tensor, codes: dict[str, torch.Tensor], dense: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item ids ``(...)``, codes ``(..., L)``, vectors ``(..., D)`` -> ``(..., item_dim)``."""
        parts = [self.sparse[ITEM_ID](item_id)]
        parts += [self.codes[name](codes[name]) for name in self.codes]
        parts += [self.dense[name](dense[name]) for name in self.dense]
        return torch.cat(parts, dim=-1)

    def forward(self, batch: RankBatch) -> Embedded:
        fields = {name: self.sparse[name](batch.sparse[name]) for name in self.sparse}  # each (B, d)
        item = torch.cat([fields[ITEM_ID], *(self.codes[n](batch.codes[n]) for n in self.codes),
                          *(self.dense[n](batch.dense[n]) for n in self.dense)], dim=-1)  # (B, item_dim)
        history = None
        if self.pooling != "none":
            distinct = self.embed_items(batch.history[ITEM_ID], batch.history, batch.history)  # (U, item_dim)
            hist = distinct[batch.history_index]  # (B, T, item_dim)
            mask = batch.history_mask
            if self.pooling == "mean":
                weights = mask.to(hist.dtype)[:, :, None]
                history = (hist * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            else:
                history = self.attention(item, hist, mask)  # (B, item_dim)
        users = {name: self.users[name](batch.user_dense[name]) for name in self.users}  # each (B, d)
        cross = {name: self.cross[name](batch.codes[name], batch.history[name][batch.history_index], batch.history_mask)
                 for name in self.cross}  # each (B, out_dim); history codes (B, T, L)
        return Embedded(fields=fields, item=item, history=history, domain=self.domain(batch.domain), users=users, cross=cross)

    def general(self, emb: Embedded, *, with_domain: bool) -> torch.Tensor:
        """``[context fields, user vectors, candidate item, pooled history, code cross features(, domain)]``
        -> ``(B, general_dim)``."""
        parts = [emb.fields[name] for name in self.context_fields] + list(emb.users.values()) + [emb.item]
        if emb.history is not None:
            parts.append(emb.history)
        parts += list(emb.cross.values())
        if with_domain:
            parts.append(emb.domain)
        return torch.cat(parts, dim=-1)
