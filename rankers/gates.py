"""Gate Neural Unit of PEPNet (Chang et al., arXiv 2302.01115, KDD'23, section 3.2).

    x' = ReLU(W1 x + b1),    delta = gamma * sigmoid(W2 x' + b2),    gamma = 2,

so ``delta`` lies in ``[0, gamma]``: a gate can silence a unit (0), keep it, or amplify it up to
``gamma`` times. [I] The second layer's bias starts at 0, so a fresh gate sits near
``gamma * sigmoid(W2 x')``, around 1 for ``gamma = 2``; the hidden width is a config field.
"""

from __future__ import annotations

import torch
from torch import nn


class GateNU(nn.Module):
    """``(B, in_dim) -> (B, out_dim)`` gates in ``[0, gamma]``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, gamma: float = 2.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.fc2.bias)
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))
