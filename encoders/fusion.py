"""Fusion of a sample's per-modality vectors into one vector, behind the ``FUSERS`` registry.

A fuser has ``out_dim(dims) -> int | None`` and is called with ``{modality: (B, d_m)}`` vectors and
``{modality: (B,) bool}`` presence masks, returning ``(B, out_dim)`` L2-normalised vectors (or None
when fusion is off). Live-segment fusion with learnable queries (MMBee's MFQ) registers here too.

- ``mean``: the normalised mean of the present modalities (all dims must be equal).
- ``concat``: the normalised concatenation in sorted modality order, zeros for an absent modality;
  its cosine is the mean of the per-modality cosines, so each modality weighs the same.
- ``none``: no fused column.
- ``mfq``: MMBee's MFQ over the per-frame / per-comment / speech token sequences (``wants_tokens``);
  needs trained weights (``--fusion-weights``), see :mod:`mmrec.encoders.mfq`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmrec.errors import UsageError
from mmrec.registry import Registry

FUSERS = Registry("fusion")
FUSERS.register("mfq", "mmrec.encoders.mfq:MFQFusion")  # token sequences in; see mmrec.encoders.mfq


def _masked(vectors: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [vectors[m] * present[m][:, None].to(vectors[m].dtype) for m in sorted(vectors)]


@FUSERS.register("mean")
class MeanFusion:
    def out_dim(self, dims: dict[str, int]) -> int:
        if len(set(dims.values())) != 1:
            raise UsageError(f"fusion 'mean' needs encoders of equal dim, got {dims}; use 'concat'")
        return next(iter(dims.values()))

    def __call__(self, vectors, present) -> torch.Tensor:
        return F.normalize(torch.stack(_masked(vectors, present)).sum(0), dim=-1)  # (B, d)


@FUSERS.register("concat")
class ConcatFusion:
    def out_dim(self, dims: dict[str, int]) -> int:
        return sum(dims.values())

    def __call__(self, vectors, present) -> torch.Tensor:
        return F.normalize(torch.cat(_masked(vectors, present), dim=1), dim=-1)  # (B, sum d)


@FUSERS.register("none")
class NoFusion:
    def out_dim(self, dims: dict[str, int]) -> None:
        return None

    def __call__(self, vectors, present) -> None:
        return None
