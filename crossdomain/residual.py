"""The count residual: trained models score with what the co-occurrence count knows.

On the Amazon pairs the non-learned cross-domain count (:class:`~mmrec.crossdomain.baselines.CoCount`)
beats every trained model at a CPU budget: a held-out item is often directly co-bought by other users
with the cold user's source-domain items, a sparse memorised signal that low-rank embeddings smooth
away. The residual adds it to the model's score, as the wide part of a wide & deep model (Cheng et al.
2016, eq. 3: the wide and the deep logits are summed):

    score_d(u, i) = ⟨u, E_d[i]⟩ + w_d(u, i) · log(1 + c_d(u, i))

with ``c_d(u, i)`` the co-count of target item i with the user's training items in the other domain.
The weight ``w_d`` has two forms (``CDRConfig.residual_gate``):

- ``global``: one learned scalar per target domain, ``w_d = softplus(a_d)``.
- ``user`` (default, [I]): a learned gate per user and item,
  ``w_d(u, i) = softplus(a_d + b_d·log(1 + |S_u|) + c_d·log(1 + Σ_j c_d(u, j)) + e_d·log(1 + n_i))``
  ``+ f_d·[u has own-domain history]``, with ``|S_u|`` the user's source-domain history, ``Σ_j c_d(u, j)``
  its count row total (how much co-interaction evidence stands behind its counts), ``n_i`` the target
  item's degree among the overlap users, and the warm flag: a training sample that keeps its own-domain
  history has its own-domain signal and needs the count less ([I]: without it the warm half of the
  samples pulled the weight of the cold ones down; every evaluated user is cold, flag 0). A user whose
  evidence is in co-interactions leans on the count, one whose signal is in its own tastes leans on the
  embeddings. Chosen over ``global`` on valid.txt (docs/cross-domain.md).

``softplus(a_d)`` starts at ``residual_init`` (4 by default, [I]: the count must outrank the untrained
embedding scores from the first step; at 1 the scalar needed more than an epoch of Adam steps to grow).
[I] ``c`` is always the leave-one-user-out count (:meth:`~mmrec.crossdomain.baselines.CoCount.pair_scores`)
and the row total leaves the user out the same way (minus ``|S_u|·|T_u|``): in training a user's own
target items never carry the co-counts that user made, so the gate is fitted on what a cold user will
see; a cold-start user has no target row, so its counts are the plain ones. The counts are rebuilt from
the training pairs when a run is loaded; only the gate's scalars are saved.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mmrec.crossdomain.baselines import fit_baseline
from mmrec.crossdomain.data import CDRData

GATES = ("global", "user", "fixed")


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = y`` (``y > 0``)."""
    return y + math.log(-math.expm1(-y))


class CountResidual(nn.Module):
    """``w_d(u, i) · log(1 + c_d(u, i))`` for both target domains of ``data``."""

    def __init__(self, data: CDRData, *, gate: str = "user", init: float = 4.0, popularity: float = 0.0) -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        self.gate = gate
        self.counts = [fit_baseline("count", data, d) for d in range(2)]
        if gate == "fixed":  # [I] not learned: training cannot lower the count's weight below init
            self.register_buffer("bias", torch.full((2,), inverse_softplus(init)))
        else:
            self.bias = nn.Parameter(torch.full((2,), inverse_softplus(init)))
        if popularity:  # p_d·log(1 + n_i − y_ui), the count baseline's tie-break, learned
            self.pop = nn.Parameter(torch.full((2,), float(popularity)))
            for d, count in enumerate(self.counts):
                t = count.x_tgt.tocoo()
                n_t = count.x_tgt.shape[1]
                self.register_buffer(f"pop{d}", torch.as_tensor(np.asarray(count.x_tgt.sum(0)).ravel(), dtype=torch.float32),
                                     persistent=False)
                setattr(self, f"_pairs{d}", np.sort(t.row.astype(np.int64) * n_t + t.col))  # every target training pair
        if gate == "user":
            self.coef = nn.Parameter(torch.zeros(2, 4))  # per domain: history size, row total, item degree, warm
            for d, count in enumerate(self.counts):
                history = np.diff(count.x_src.indptr)  # |S_u| (shared users only)
                own = history * np.diff(count.xt.indptr)  # the user's own co-counts, |S_u|·|T_u| (overlap users)
                total = np.asarray(count.x_src @ np.asarray(count.g.sum(1)).ravel()).ravel() - own
                degree = np.diff(count.xt.tocsc().indptr)  # target item degree among the overlap users
                for name, value in (("history", history), ("total", total), ("degree", degree)):
                    self.register_buffer(f"{name}{d}", torch.log1p(torch.as_tensor(np.maximum(value, 0), dtype=torch.float32)),
                                         persistent=False)

    def weight(self, domain: int, users: torch.Tensor, items: torch.Tensor,
               cold: torch.Tensor | None = None) -> torch.Tensor:
        """``w_d(u, i)`` ``(B, C)`` (``(1, 1)`` for the global gate); ``cold`` ``(B,)`` bool, None = all cold."""
        if self.gate in ("global", "fixed"):
            return nn.functional.softplus(self.bias[domain]).reshape(1, 1)
        b = self.coef[domain]
        logit = (self.bias[domain] + b[0] * getattr(self, f"history{domain}")[users][:, None]
                 + b[1] * getattr(self, f"total{domain}")[users][:, None] + b[2] * getattr(self, f"degree{domain}")[items])
        if cold is not None:
            logit = logit + b[3] * (~cold).to(logit.dtype)[:, None]
        return nn.functional.softplus(logit)

    def forward(self, domain: int, users: torch.Tensor, items: torch.Tensor,
                cold: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C)`` residual scores of ``items`` ``(B, C)`` for ``users`` ``(B,)`` (``cold``: see :meth:`weight`)."""
        c = self.counts[domain].pair_scores(users.cpu().numpy(), items.cpu().numpy())
        feature = torch.log1p(torch.as_tensor(np.maximum(c, 0.0), dtype=torch.float32, device=items.device))
        out = self.weight(domain, users.to(items.device), items, cold) * feature
        if "pop" in self._parameters:
            out = out + self.pop[domain] * self.popularity(domain, users, items)
        return out

    def popularity(self, domain: int, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``log(1 + n_i − y_ui)`` ``(B, C)``: the target item's training degree without the user's own
        interaction (leave-one-user-out, as the counts)."""
        n_t = self.counts[domain].x_tgt.shape[1]
        keys = users.cpu().numpy().astype(np.int64)[:, None] * n_t + items.cpu().numpy()
        pairs = getattr(self, f"_pairs{domain}")
        pos = np.searchsorted(pairs, keys).clip(max=max(len(pairs) - 1, 0))
        own = torch.as_tensor(pairs[pos] == keys if len(pairs) else np.zeros(keys.shape, bool), device=items.device)
        return torch.log1p(getattr(self, f"pop{domain}")[items] - own.to(torch.float32))
