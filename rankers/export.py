"""Export of a trained ranker for serving: ``torch.export`` (and ONNX where the model allows).

A ranker reads a :class:`mmrec.rankers.features.RankBatch`; the exported program reads its model inputs as
one flat mapping of named tensors (:func:`batch_inputs`):

- ``sparse/<field>`` ``(B,)`` int64 vocabulary ids (``vocab.json`` rows), ``item_id`` included;
- ``codes/<feature>`` ``(B, L)`` int64, ``dense/<feature>`` ``(B, D)`` float32 (the candidate's);
- with a history: ``history/item_id`` ``(U,)`` and ``history/<feature>`` ``(U, ...)`` for the ``U``
  distinct history items of the batch, ``history_index`` ``(B, T)`` int64 into them and
  ``history_mask`` ``(B, T)`` bool;
- ``domain`` ``(B,)`` int64 and ``user_dense/<feature>`` ``(B, D)``;
and returns per-task probabilities ``(B, K)`` (``sigmoid`` of the logits: pCTR / pCTCVR for ESMM).
``B`` and ``U`` are dynamic dimensions. [I] Labels, label masks and UAUC groups are not inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmrec.errors import MMRecError
from mmrec.io import atomic_path
from mmrec.rankers.base import Ranker
from mmrec.rankers.features.collate import RankBatch


def batch_inputs(batch: RankBatch, *, history: bool) -> dict[str, torch.Tensor]:
    """The exported program's inputs for ``batch`` (see the module docstring)."""
    inputs = {f"sparse/{k}": v for k, v in batch.sparse.items()}
    inputs.update({f"codes/{k}": v for k, v in batch.codes.items()})
    inputs.update({f"dense/{k}": v for k, v in batch.dense.items()})
    if history:
        inputs.update({f"history/{k}": v for k, v in batch.history.items()})
        inputs["history_index"] = batch.history_index
        inputs["history_mask"] = batch.history_mask
    inputs["domain"] = batch.domain
    inputs.update({f"user_dense/{k}": v for k, v in batch.user_dense.items()})
    return inputs


class ServingRanker(nn.Module):
    """``ranker`` behind the flat inputs of :func:`batch_inputs`: ``inputs -> (B, K)`` probabilities."""

    def __init__(self, ranker: Ranker) -> None:
        super().__init__()
        self.ranker = ranker
        self.history = ranker.schema.history > 0

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)}

        domain = inputs["domain"]
        B = domain.shape[0]
        empty = domain.new_zeros((B, 0))
        batch = RankBatch(sparse=part("sparse/"), codes=part("codes/"), dense=part("dense/"), history=part("history/"),
                          history_index=inputs.get("history_index", empty), history_mask=inputs.get("history_mask", empty.bool()),
                          domain=domain, group=domain, labels=None, label_mask=None, user_dense=part("user_dense/"))
        return torch.sigmoid(self.ranker(batch).float())


def _dynamic_shapes(inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    from torch.export import Dim

    batch, items = Dim("batch", min=1), Dim("history_items", min=1)
    return {"inputs": {k: {0: items if k.startswith("history/") else batch} for k in inputs}}


def export_program(ranker: Ranker, example: RankBatch) -> tuple[torch.export.ExportedProgram, dict[str, torch.Tensor]]:
    """``(torch.export program of ServingRanker(ranker), the example's inputs)``; ``ranker`` in eval mode."""
    module = ServingRanker(ranker.eval()).eval()
    inputs = batch_inputs(example, history=module.history)
    try:
        program = torch.export.export(module, (inputs,), dynamic_shapes=_dynamic_shapes(inputs))
    except Exception as err:  # torch raises many types; the user needs the ranker and the first line
        raise MMRecError(f"torch.export failed for {ranker.config.name}: {str(err).splitlines()[0]}") from err
    return program, inputs


def export_onnx(program: torch.export.ExportedProgram, path: str | Path) -> str | None:
    """Write ``program`` as ONNX to ``path``; returns None, or why it was skipped (``onnx`` /
    ``onnxscript`` not installed: ``pip install mmrec[onnx]``, or the exporter refused the model)."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install mmrec[onnx])"
    try:
        with atomic_path(path) as tmp:  # nothing at ``path`` unless the export succeeds
            torch.onnx.export(program, (), str(tmp), dynamo=True, verbose=False)
    except Exception as err:  # the ONNX exporter raises many types; the model may use an op it lacks
        return f"ONNX export failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None
