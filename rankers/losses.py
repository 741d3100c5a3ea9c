"""Per-task losses with label masks.

Every task is a binary label; :func:`masked_bce` averages binary cross-entropy over the rows where
that task's label is observed (``label_mask``), so a task missing from a domain (``follow``
outside live streams) neither adds loss nor gradient there. The total is the weighted sum of the
per-task means. [I] A task with no observed label in the batch contributes 0; weights default to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
               weights: Sequence[float] | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits, labels, mask ``(B, K)`` -> ``(total loss, per-task mean losses (K,))``."""
    mask = mask.to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none") * mask  # (B, K)
    per_task = losses.sum(0) / mask.sum(0).clamp(min=1.0)  # (K,)
    if weights is None:
        return per_task.sum(), per_task
    w = torch.as_tensor(weights, dtype=per_task.dtype, device=per_task.device)
    return (per_task * w).sum(), per_task


def training_loss(model, batch) -> torch.Tensor:
    """The task losses of ``model`` on ``batch`` plus the ranker's auxiliary loss (SMES's load balancing), if any."""
    loss, _ = masked_bce(model(batch), batch.labels, batch.label_mask)
    aux = model.auxiliary_loss()
    return loss if aux is None else loss + aux
