"""The one in-batch contrastive loss (InfoNCE), used by QARM alignment, UniCDR+/FARM and GraphCL.

Row ``i`` of ``a`` and row ``i`` of ``b`` are a positive pair; every other row of the other side is a
negative. The loss is symmetric (``a -> b`` and ``b -> a`` averaged):

    L = -1/2B sum_i [ log softmax_j(s_ij / tau)_i + log softmax_j(s_ji / tau)_i ],  s = a b^T

- QARM (Luo et al., 2024) aligns item pairs with it; in-batch duplicates of a positive item are
  masked out of the denominator (``left`` / ``right`` item ids).
- UniCDR+'s soft contrast replaces the one-hot target with a distribution per row (``soft``).
- GraphCL's NT-Xent (You et al., 2020, eq. 3) leaves the positive out of the denominator
  (``exclude_positive=True``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor | float, *, normalize: bool = True,
             soft: torch.Tensor | None = None, left: torch.Tensor | None = None, right: torch.Tensor | None = None,
             exclude_positive: bool = False) -> torch.Tensor:
    """Symmetric in-batch InfoNCE of ``a, b`` ``(B, d)``; see the module docstring.

    ``normalize``: L2-normalise the rows first (cosine similarities). ``soft`` ``(B, B)``: target
    distributions instead of the diagonal. ``left`` / ``right`` ``(B,)``: ids of the rows of ``a`` /
    ``b``; another row with the same id as the positive is not a negative.
    """
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (B, B)
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    a_to_b, b_to_a = logits, logits.T
    if right is not None:
        a_to_b = a_to_b.masked_fill((right[None, :] == right[:, None]) & ~eye, -math.inf)
    if left is not None:
        b_to_a = b_to_a.masked_fill((left[None, :] == left[:, None]) & ~eye, -math.inf)
    if soft is not None:
        return 0.5 * (-(soft * F.log_softmax(a_to_b, 1)).sum(1).mean() - (soft.T * F.log_softmax(b_to_a, 1)).sum(1).mean())
    if exclude_positive:
        positive = logits.diagonal()
        return 0.5 * ((torch.logsumexp(a_to_b.masked_fill(eye, -math.inf), 1) - positive).mean()
                      + (torch.logsumexp(b_to_a.masked_fill(eye, -math.inf), 1) - positive).mean())
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(a_to_b, target) + F.cross_entropy(b_to_a, target))
