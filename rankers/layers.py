"""Small building blocks shared by the rankers: an MLP, and G independent MLPs run as one batched op.

Per-task towers and experts are :class:`GroupedLinear` stacks, one ``bmm`` per layer for all
groups, instead of a Python loop over G modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, dims: Sequence[int], *, dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """``Linear (-> BatchNorm) -> ReLU (-> Dropout)`` per entry of ``dims``; ``(B, in_dim) -> (B, dims[-1])``."""
    layers: list[nn.Module] = []
    for out in dims:
        layers += [nn.Linear(in_dim, out), *([nn.BatchNorm1d(out)] if batch_norm else []), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = out
    return nn.Sequential(*layers)


class GroupedLinear(nn.Module):
    """``G`` independent linear maps: ``(B, G, in) -> (B, G, out)``, initialised like ``nn.Linear``."""

    def __init__(self, groups: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(groups, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.bmm(x.transpose(0, 1), self.weight)  # (G, B, out)
        return y.transpose(0, 1) + self.bias  # (B, G, out)


class GroupedBatchNorm(nn.Module):
    """Batch norm of every unit of every group: ``(B, G, D) -> (B, G, D)``."""

    def __init__(self, groups: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(groups * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(1)).view(x.shape)


class GroupedMLP(nn.Module):
    """``G`` independent MLPs (``Linear (-> BatchNorm) -> ReLU`` per entry of ``dims``): ``(B, G, in) -> (B, G, dims[-1])``."""

    def __init__(self, groups: int, in_dim: int, dims: Sequence[int], *, dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for out in dims:
            layers += [GroupedLinear(groups, in_dim, out), *([GroupedBatchNorm(groups, out)] if batch_norm else []), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_dim = out
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TaskTowers(nn.Module):
    """One MLP tower and logit per task: ``(B, K, in)`` (or ``(B, in)``, shared) -> logits ``(B, K)``."""

    def __init__(self, tasks: int, in_dim: int, dims: Sequence[int], *, dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.tasks = tasks
        self.hidden = GroupedMLP(tasks, in_dim, dims, dropout=dropout, batch_norm=batch_norm)
        self.head = GroupedLinear(tasks, self.hidden.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, None, :].expand(-1, self.tasks, -1)  # (B, K, in)
        return self.head(self.hidden(x)).squeeze(-1)  # (B, K)
