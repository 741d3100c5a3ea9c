"""Ranker checkpoints: one safetensors file with the weights, the ranker's config and input schema.

``model.safetensors`` holds the state dict; its metadata key ``mmrec`` holds JSON with the model
config (``name`` and every field) and the :class:`mmrec.rankers.features.InputSchema`, so
:func:`load_ranker` rebuilds the same module without the training config. Writes are atomic.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mmrec.errors import InputError
from mmrec.io import atomic_path, read_safetensors
from mmrec.rankers.base import RANKERS, Ranker
from mmrec.rankers.features.collate import InputSchema


def save_checkpoint(path: str | Path, model: Ranker, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (unwrapped from DDP by the caller) to ``path``; ``info`` goes into the metadata."""
    from safetensors.torch import save_file

    meta = {"model": asdict(model.config), "schema": model.schema.as_dict(), **(info or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mmrec": json.dumps(meta)})
    return path


def load_ranker(path: str | Path, *, device: str | torch.device = "cpu") -> Ranker:
    """Rebuild the ranker saved at ``path`` (a file, or a run folder holding ``model.safetensors``), in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    state, meta = read_safetensors(path, "checkpoint")
    if not isinstance(meta, dict) or "model" not in meta or "schema" not in meta:
        raise InputError(f"{path}: no mmrec ranker metadata; not written by mmrec rank train")
    builder = RANKERS.get(meta["model"]["name"])
    model = builder(InputSchema.from_dict(meta["schema"]), meta["model"])
    model.load_state_dict(state)
    return model.to(device).eval()
