"""Ranker runs: a :mod:`mmrec.runs` folder of kind ``rank``.

``config.json`` holds the model config (``ranker``: ``name`` and every field; ``schema``: the
:class:`mmrec.rankers.features.InputSchema`) and the job config (the :class:`RankConfig`), so
:func:`load_ranker` rebuilds the same module; ``model.safetensors`` the state dict, ``vocab.json`` the
raw ids behind each sparse field's rows, ``metrics.json`` the report. Writes are atomic.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.features.collate import InputSchema
from mmrec.runs import WEIGHTS, load_run, save_run


def save_checkpoint(folder: str | Path, model: Ranker, *, job: dict[str, Any] | None = None, vocab: Any = None,
                    metrics: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (unwrapped from DDP by the caller) as the run folder ``folder``; returns its weights file."""
    config = {"ranker": asdict(model.config), "schema": model.schema.as_dict()}
    return save_run(folder, config, job, model.state_dict(), vocab, metrics, kind="rank") / WEIGHTS


def ranker_from_run(config: dict[str, Any], state: dict[str, torch.Tensor], *, device: str | torch.device = "cpu") -> Ranker:
    """The ranker of a loaded rank run (:func:`mmrec.runs.load_run`), in eval mode."""
    model_config = config["model"]
    model = RANKERS.get(model_config["ranker"]["name"])(InputSchema.from_dict(model_config["schema"]), model_config["ranker"])
    model.load_state_dict(state)
    return model.to(device).eval()


def load_ranker(path: str | Path, *, device: str | torch.device = "cpu") -> Ranker:
    """Rebuild the ranker of a run folder (or of its ``model.safetensors``), in eval mode."""
    path = Path(path)
    config, state, _, _ = load_run(path.parent if path.name == WEIGHTS else path, kind="rank")
    return ranker_from_run(config, state, device=device)
