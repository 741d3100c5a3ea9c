"""The non-learned baselines every sequential-retrieval table shows.

- :class:`Popularity`: an item's score is its count in the training sequences, whoever the user.
- :class:`CoOccurrence`: the score of item ``j`` after history ``(..., i)`` is how often ``j``
  directly followed ``i`` in the training sequences (last item -> next item counts), plus the item's
  popularity times ``1e-6`` so items that never followed ``i`` are ranked by popularity rather than tied.

:class:`PopularityFamily` and :class:`CoOccurrenceFamily` are their ``pop`` and ``cooc`` entries of
:data:`~mmrec.retrieval.registry.RETRIEVERS`: counted on the training part, nothing trained.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mmrec.device import resolve_device
from mmrec.retrieval.data import Sequences
from mmrec.retrieval.evaluate import evaluate
from mmrec.retrieval.registry import RetrieverFamily, Trained
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

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> Popularity:
        self.counts = state["counts"]
        return self

    def to(self, device: torch.device) -> Popularity:
        return self.load_state_dict({k: v.to(device) for k, v in self.state_dict().items()})


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

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts, "indptr": self.indptr, "indices": self.indices, "values": self.values}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> CoOccurrence:
        self.counts, self.indptr, self.indices, self.values = state["counts"], state["indptr"], state["indices"], state["values"]
        return self


class PopularityFamily(RetrieverFamily):
    """``pop``: :class:`Popularity`; its config is the catalogue size and the history length evaluated (``job.model_config.max_len``)."""

    counter: type[Popularity] = Popularity

    @classmethod
    def train(cls, job, history, targets, *, codes=None, content=None, sizes=None, progress=True) -> Trained:
        start = time.perf_counter()
        counted = cls.counter().fit(history)
        config = {"n_items": int(history.n_items), "max_len": int(job.model_config.max_len)}
        validation = evaluate(counted.score, history, targets, max_len=config["max_len"], train_counts=history.item_counts())
        return Trained(counted, config, validation, {"seconds": round(time.perf_counter() - start, 3), "samples": int(len(history.items))})

    @classmethod
    def load(cls, config, tensors, device="cpu") -> Popularity:
        return cls.counter().load_state_dict(tensors).to(resolve_device(device))


class CoOccurrenceFamily(PopularityFamily):
    """``cooc``: :class:`CoOccurrence`, last item -> next item counts."""

    counter = CoOccurrence
