"""A SYNTHETIC objective with a planted optimum, trained through :func:`mmrec.training.fit`: what the
tuner's tests search (``mmrec tune`` with ``job: toy``) without training a real model.

The validation score after epoch ``e`` is ``q(x, lr, kind) - 0.5 ** e``, with
``q = 1 - (x - 0.7)^2 - (log10(lr) + 2)^2 / 4 - (0 if kind == "b" else 0.5)``: every trial's curve rises
with the epochs, and trials keep their order at every epoch (what a median pruner needs). The planted
optimum is ``x = 0.7, lr = 0.01, kind = "b"`` (``q = 1``). Each run appends one line to ``OUT/starts.txt``,
so a test can tell whether a run was started twice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrec.config import check_bounds
from mmrec.errors import UsageError

OPTIMUM = {"x": 0.7, "lr": 0.01, "kind": "b"}


@dataclass
class ToyJob:
    """The toy's settings: three searched values and the run's length."""

    x: float = field(default=0.0, metadata={"help": "a value in [0, 1] (planted best 0.7)"})
    lr: float = field(default=1.0, metadata={"help": "a positive value searched on a log scale (planted best 0.01)"})
    kind: str = field(default="a", metadata={"help": "a, b or c (planted best b)"})
    epochs: int = field(default=4, metadata={"help": "epochs of the run", "min": 1})
    seconds_per_epoch: float = field(default=0.0, metadata={"help": "sleep per epoch (to stand for training time)", "min": 0})

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if self.kind not in ("a", "b", "c"):
            raise UsageError(f"kind must be a, b or c, got {self.kind!r}")


def quality(job: ToyJob) -> float:
    """``q(x, lr, kind)`` of the module docstring: the score a run approaches (1 at the optimum)."""
    return 1.0 - (job.x - 0.7) ** 2 - (math.log10(job.lr) + 2.0) ** 2 / 4.0 - (0.0 if job.kind == "b" else 0.5)


def train_toy(out: str | Path, config: ToyJob | dict | None = None) -> dict[str, Any]:
    """Run the toy for ``config.epochs`` epochs through :func:`mmrec.training.fit` (one parameter, one
    step per epoch) with the validation score of the module docstring; returns (and writes
    ``OUT/metrics.json``) the best score."""
    import torch

    from mmrec.config import build_config
    from mmrec.io import write_json
    from mmrec.training import fit

    job = build_config(ToyJob, config, "toy")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "starts.txt", "a") as f:
        f.write(f"{time.time()}\n")
    q, evaluated = quality(job), []
    model = torch.nn.Linear(1, 1)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        evaluated.append(None)
        time.sleep(job.seconds_per_epoch)
        return {"score": q - 0.5 ** len(evaluated)}

    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda epoch: [torch.ones(1, 1)],
                 lambda m, batch: m(batch).pow(2).mean(), config={"epochs": job.epochs, "progress": False},
                 evaluate=evaluate, monitor="score")
    report = {"score": result.best_metric, "epochs_run": len(result.history), "stopped": result.stopped}
    write_json(out / "metrics.json", report)
    return report
