"""The non-learned baselines every sequential-retrieval table shows.

- :class:`Popularity`: an item's score is its count in the training sequences, whoever the user.
- :class:`CoOccurrence`: the score of item ``j`` after history ``(..., i)`` is how often ``j``
  directly followed ``i`` in the training sequences (last item -> next item counts), plus the item's
  popularity times ``1e-6`` so items that never followed ``i`` are ranked by popularity rather than tied.
"""

from __future__ import annotations

import numpy as np
import torch

from mmrec.retrieval.data import Sequences
from mmrec.retrieval.transition import transition_pairs


class Popularity:
    """``fit(sequences)``, then ``score((B, L) histories) -> (B, n_items)``."""

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    def fit(self, sequences: Sequences) -> Popularity:
        self.counts = torch.as_tensor(sequences.item_counts(), dtype=torch.float32)
        return self

    def score(self, histories: np.ndarray) -> torch.Tensor:
        return self.counts.expand(len(histories), -1)

    def state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, torch.Tensor]) -> Popularity:
        self.counts = state["counts"]
        return self


class CoOccurrence(Popularity):
    """Last item -> next item transition counts, a CSR matrix (``indptr``, ``indices``, ``values``)."""

    def fit(self, sequences: Sequences) -> CoOccurrence:
        super().fit(sequences)
        src, dst = transition_pairs(sequences)
        n = sequences.n_items
        pairs, counts = np.unique(src * n + dst, return_counts=True)  # sorted by (src, dst)
        self.indptr = torch.as_tensor(np.searchsorted(pairs // n, np.arange(n + 1)))
        self.indices = torch.as_tensor(pairs % n)
        self.values = torch.as_tensor(counts, dtype=torch.float32)
        return self

    def score(self, histories: np.ndarray) -> torch.Tensor:
        scores = (1e-6 * self.counts).repeat(len(histories), 1)  # (B, n_items)
        for row, last in enumerate(histories[:, -1].tolist()):
            if last >= 0:
                lo, hi = int(self.indptr[last]), int(self.indptr[last + 1])
                scores[row, self.indices[lo:hi]] += self.values[lo:hi]
        return scores

    def state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts, "indptr": self.indptr, "indices": self.indices, "values": self.values}

    def load_state(self, state: dict[str, torch.Tensor]) -> CoOccurrence:
        self.counts, self.indptr, self.indices, self.values = state["counts"], state["indptr"], state["indices"], state["values"]
        return self
