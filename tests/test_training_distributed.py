"""fit under DDP (2 CPU processes, gloo): the gradients really are averaged over the ranks.

Each rank holds its half of every global batch (``shuffled_batches``); with plain SGD on a mean loss the
average of the two halves' gradients is the whole batch's, so both ranks end with one process's weights
(to float rounding) -- although the loss is a method of the model, not its forward, and one of its
parameters gets no gradient. Ranks with different numbers of batches stop together, at the shorter.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrec.testing import with_gloo
from mmrec.training import distributed, fit, rank_shares, shuffled_batches, world


class _Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 1)
        self.unused = nn.Linear(4, 1)  # no gradient ever: DDP must not wait for it

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.used(x), y)


def _train() -> tuple[_Regression, int, float]:
    """SYNTHETIC y = x @ w; returns (model, steps of an uneven second run, best score)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    torch.manual_seed(0)
    model = _Regression()
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.05), shuffled_batches(len(x), 32, seed=0),
                 lambda m, rows: m.loss(x[rows], y[rows]), config={"epochs": 3, "progress": False},
                 evaluate=lambda m: -float(m.loss(x, y)) + world()[0])  # rank 1 scores differently: rank 0's decides
    rank, size = world()
    uneven = [torch.arange(i, i + 8) for i in range(0, 64 - 8 * rank, 8)]  # rank 1 has one batch fewer
    steps = fit(model, torch.optim.SGD(model.parameters(), lr=0.0), lambda epoch: uneven,
                lambda m, rows: m.loss(x[rows], y[rows]), config={"epochs": 1, "progress": False}).steps
    return model, steps, result.best_metric


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed(torch.device("cpu")):
        model, steps, best = _train()
    torch.save({"state": model.state_dict(), "steps": steps, "best": best}, os.path.join(folder, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_shares_split_every_batch_alike_on_one_process():
    parts = [torch.arange(5), {"a": torch.arange(3)}]
    assert all(a is b for a, b in zip(rank_shares(parts), parts))


@with_gloo
def test_two_ranks_end_with_one_process_weights(tmp_path):
    import torch.multiprocessing as mp

    one, steps, best = _train()
    assert steps == 8
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in one.state_dict().items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name  # the ranks agree exactly
        assert torch.allclose(ranks[0]["state"][name], value, atol=1e-5), name  # ... and with one process
    assert [r["steps"] for r in ranks] == [7, 7]  # the shorter rank's count, on both
    assert ranks[0]["best"] == ranks[1]["best"] == pytest.approx(best, abs=1e-5)  # rank 0's score decided on rank 1 too
