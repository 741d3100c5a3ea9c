"""Names kept for :mod:`mmrec.rankers.gtr_train` until it moves to :mod:`mmrec.training`.

The ranker job that lived here is :func:`mmrec.pipelines.rank.train` (``mmrec rank train``);
scoring is :func:`mmrec.rankers.predict.predict`. ``epoch_rows`` is the permutation of
:func:`mmrec.training.shuffled_batches` for one epoch, with the rank and world given explicitly.
"""

from __future__ import annotations

from typing import Iterator

import torch

from mmrec.rankers.predict import finite as _finite
from mmrec.rankers.predict import predict

__all__ = ["_finite", "epoch_rows", "predict"]


def epoch_rows(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """This rank's shuffled row batches for one epoch; every rank gets the same number of rows."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    yield from perm[rank::world][: n // world].to(device).split(batch_size)
