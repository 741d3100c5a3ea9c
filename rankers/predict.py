"""Scoring with a trained ranker: :func:`predict` gives per-task probabilities for sample rows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmrec.rankers.features.collate import ItemTable, RankSamples, collate
from mmrec.training import autocast


@torch.no_grad()
def predict(model: nn.Module, samples: RankSamples, items: ItemTable, *, batch_size: int = 8192,
            amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Probabilities ``(N, K)`` for every row of ``samples`` (on the model's device)."""
    was_training = model.training
    model.eval()
    device = samples.item_row.device
    out = []
    with autocast(device, amp_dtype):
        for rows in torch.arange(len(samples), device=device).split(batch_size):
            out.append(torch.sigmoid(model(collate(samples, items, rows)).float()).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
