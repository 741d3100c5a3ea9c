"""FARM (arXiv 2502.09375): frequency-aware module, align before fuse, for two domains.

- Frequency-aware module (per domain sequence): ``X_f = rFFT(X)`` over the time axis of the history
  item vectors ``X`` ``(B, L, D)``; a soft low-pass mask ``m_k = σ((c − k)/τ)`` over the ``L//2 + 1``
  bins with a learnable cut ``c`` (τ = 0.5); ``Low = iRFFT(m·X_f)``, ``High = iRFFT((1 − m)·X_f)`` so
  ``Low + High = X``; the output ``α·Low + β·High`` with per-user gates ``(α, β) = σ(MLP(mean X))``.
  [I] The sequence is the user's file order (the Amazon files have no timestamps), the last ``maxlen``
  items, zero-padded at the end.
- Per-domain preference ``v_d = m + MLP(m)``, ``m`` the masked mean of the filtered sequence ([I] the
  residual MLP starts at zero so ``v_d`` starts in the item space).
- Align: symmetric in-batch InfoNCE (τ = 0.2) between ``v_d`` and ``v_d'`` of users with history in
  both domains, weight ``align_weight``.
- Fuse: attention of a learned target-domain query over the tokens ``[U[u], v_own, v_other]`` (tokens
  a user lacks are masked); the result is the target-domain user vector, scored by ``⟨u, item⟩`` with the
  item encoder of :mod:`.item_graph` (id + degree, optional multimodal, optional LightGCN).
  [I] The paper's PLE multi-task head is not used: the Amazon pairs have one behaviour.
A cold-start user has no own-domain token, so its vector comes from ``U[u]`` (trained in the other
domain) and the aligned ``v_other``; with ``CDRConfig.cold_drop_user`` from ``v_other`` alone, in training
(domain-masked samples) as in evaluation ([I], :meth:`~mmrec.crossdomain.base.CDRModel.user_kept`). ``user_features`` exposes the fused vectors as features for
``mmrec.rankers`` (see ``mmrec.pipelines.cdr.export_user_features``, keyed by raw user id).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmrec.crossdomain.base import CDRModel, gather
from mmrec.crossdomain.data import Batch
from mmrec.crossdomain.item_graph import ItemEncoder, item_encoder_inputs
from mmrec.layers import masked_softmax
from mmrec.losses import info_nce


class FrequencyFilter(nn.Module):
    """Learnable low/high frequency split of a ``(B, L, D)`` sequence and its gated recombination."""

    def __init__(self, dim: int, maxlen: int, *, sharpness: float = 0.5) -> None:
        super().__init__()
        self.maxlen, self.sharpness = maxlen, sharpness
        bins = maxlen // 2 + 1
        self.cut = nn.Parameter(torch.tensor(bins / 2.0))
        self.gate = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def low_mask(self) -> torch.Tensor:
        """``(L//2 + 1,)`` weights of the low band, 1 below the cut, 0 above, smooth in between."""
        k = torch.arange(self.maxlen // 2 + 1, dtype=self.cut.dtype, device=self.cut.device)
        return torch.sigmoid((self.cut - k) / self.sharpness)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Low, High)``, each ``(B, L, D)``, with ``Low + High == x`` up to float rounding."""
        spectrum = torch.fft.rfft(x, dim=1)  # (B, L//2 + 1, D) complex
        m = self.low_mask()[None, :, None]
        low = torch.fft.irfft(spectrum * m, n=x.shape[1], dim=1)
        high = torch.fft.irfft(spectrum * (1 - m), n=x.shape[1], dim=1)
        return low, high

    def gates(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sequence ``(α, β)`` ``(B, 1, 1)`` each, in (0, 1)."""
        mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        ab = torch.sigmoid(self.gate(mean))  # (B, 2)
        return ab[:, 0, None, None], ab[:, 1, None, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, L, D)`` zero-padded, ``mask`` ``(B, L)`` bool -> ``α·Low + β·High`` masked."""
        low, high = self.split(x)
        alpha, beta = self.gates(x, mask)
        return (alpha * low + beta * high) * mask[..., None]


class FARM(CDRModel):
    """Frequency-aware per-domain preferences, aligned across domains, fused by attention."""

    default_aggregator = "mean"  # FARM pools with its own frequency module; the field is unused

    def __init__(self, n_users: int, n_items: tuple[int, int], *, features: dict, dim: int = 128,
                 dropout: float = 0.3, maxlen: int = 10, gnn_layers: int = 0, align_weight: float = 0.1,
                 temperature: float = 0.2) -> None:
        super().__init__()
        self.encoder = ItemEncoder(n_items, dim, degrees=features["degrees"], edge_index=features["edge_index"],
                                   layers=gnn_layers, content=features["content"])
        self.users = nn.Embedding(n_users, dim, sparse=True)
        nn.init.normal_(self.users.weight, std=0.1)
        self.freq = nn.ModuleList(FrequencyFilter(dim, maxlen) for _ in range(2))
        self.view = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)) for _ in range(2))
        for view in self.view:  # [I] residual MLP starting at zero: v_d starts as the item-space mean
            nn.init.zeros_(view[-1].weight)
            nn.init.zeros_(view[-1].bias)
        self.query = nn.Parameter(torch.randn(2, dim) * 0.1)
        self.key = nn.Linear(dim, dim)
        self.token_type = nn.Parameter(torch.zeros(3, dim))
        self.dropout = nn.Dropout(dropout)
        self.align_weight, self.temperature = align_weight, temperature

    @classmethod
    def from_config(cls, config, data, state=None) -> FARM:
        return cls(data.n_users, tuple(d.n_items for d in data.domains), features=item_encoder_inputs(config, data, state),
                   dim=config.dim, dropout=config.dropout, maxlen=config.maxlen, gnn_layers=config.gnn_layers,
                   align_weight=config.contrast_weight, temperature=config.temperature)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return self.encoder.extra_tensors()

    def item_tables(self) -> list[torch.Tensor]:
        return self.encoder()

    def domain_view(self, domain: int, items: torch.Tensor, tables) -> torch.Tensor:
        """``v_d`` ``(B, D)`` from a domain-``domain`` sequence ``items`` ``(B, L)`` (-1 padded)."""
        mask = items >= 0
        x = self.freq[domain](gather(tables[domain], items), mask)  # (B, L, D)
        mean = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return (mean + self.view[domain](mean)) * mask.any(1, keepdim=True)

    def fuse(self, domain: int, users: torch.Tensor, v_own: torch.Tensor, v_other: torch.Tensor,
             has_own: torch.Tensor, has_other: torch.Tensor, has_user: torch.Tensor) -> torch.Tensor:
        """Attention of the domain query over ``[U[u], v_own, v_other]`` -> ``(B, D)`` (``has_user``: the
        samples that keep the ``U[u]`` token, :meth:`~mmrec.crossdomain.base.CDRModel.user_kept`)."""
        tokens = torch.stack([self.users(users), v_own, v_other], 1) + self.token_type  # (B, 3, D)
        present = torch.stack([has_user, has_own, has_other], 1)  # (B, 3)
        logits = (self.key(tokens) * self.query[domain]).sum(-1) / math.sqrt(tokens.shape[-1])
        w = masked_softmax(logits, present, 1)  # (B, 3)
        return (w[..., None] * tokens).sum(1)

    def views(self, domain, own, other, tables):
        return self.domain_view(domain, own, tables), self.domain_view(1 - domain, other, tables)

    def user_vectors(self, domain, users, own, other, cold, tables):
        own = own.masked_fill(cold[:, None], -1)
        v_own, v_other = self.views(domain, own, other, tables)
        user = self.fuse(domain, users, v_own, v_other, (own >= 0).any(1), (other >= 0).any(1), self.user_kept(cold, other))
        return self.dropout(user)

    @torch.no_grad()
    def user_features(self, domain: int, users: torch.Tensor, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Fused target-domain user vectors ``(B, D)`` for use as ranker features (eval mode)."""
        was = self.training
        self.eval()
        out = self.user_vectors(domain, users, own, other, (own < 0).all(1), self.item_tables())
        self.train(was)
        return out

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        tables = self.item_tables()
        own = batch.own.masked_fill(batch.cold[:, None], -1)
        v_own, v_other = self.views(batch.domain, own, batch.other, tables)
        has_own, has_other = (own >= 0).any(1), (batch.other >= 0).any(1)
        user = self.dropout(self.fuse(batch.domain, batch.users, v_own, v_other, has_own, has_other,
                                      self.user_kept(batch.cold, batch.other)))
        bce = self.bce(batch, user, tables)
        both = has_own & has_other
        align = info_nce(v_own[both], v_other[both], self.temperature) if both.sum() > 1 else bce * 0.0
        return bce + self.align_weight * align, {"bce": bce.item(), "align": align.item()}
