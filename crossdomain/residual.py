"""The count residual: trained models score with what the co-occurrence count knows.

On the Amazon pairs the non-learned cross-domain count (:class:`~mmrec.crossdomain.baselines.CoCount`)
beats every trained model at a CPU budget: a held-out item is often directly co-bought by other users
with the cold user's source-domain items, a sparse memorised signal that low-rank embeddings trained for
a few epochs smooth away. The residual adds it to the model's score, as the wide part of a wide & deep
model (Cheng et al. 2016):

    score_d(u, i) = ⟨u, E_d[i]⟩ + w_d · log(1 + c_d(u, i))

with ``c_d(u, i)`` the co-count of target item i with the user's training items in the other domain
and ``w_d`` one learned weight per target domain (starts at 1). [I] ``c`` is always the
leave-one-user-out count (:meth:`~mmrec.crossdomain.baselines.CoCount.pair_scores`): in training a
user's own target items never carry the co-counts that user made, so ``w_d`` is fitted on what a cold
user will see; a cold-start user has no target row, so its count is the plain one. The counts are
rebuilt from the training pairs when a run is loaded; only ``w_d`` is saved.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmrec.crossdomain.baselines import fit_baseline
from mmrec.crossdomain.data import CDRData


class CountResidual(nn.Module):
    """``w_d · log(1 + c_d(u, i))`` for both target domains of ``data``."""

    def __init__(self, data: CDRData) -> None:
        super().__init__()
        self.counts = [fit_baseline("count", data, d) for d in range(2)]
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, domain: int, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` residual scores of ``items`` ``(B, C)`` for ``users`` ``(B,)``."""
        c = self.counts[domain].pair_scores(users.cpu().numpy(), items.cpu().numpy())
        feature = torch.log1p(torch.as_tensor(np.maximum(c, 0.0), dtype=torch.float32, device=items.device))
        return self.weight[domain] * feature
