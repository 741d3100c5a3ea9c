"""The slow path's alignment tower: item rows -> fused vectors through trainable encoders (QARM).

QARM fine-tunes the multimodal encoder itself. Each modality's encoder is loaded trainable (a
projection head, plus LoRA adapters or unfrozen blocks when ``trainable`` asks for them, see
:mod:`mmrec.encoders.base`); :class:`EncoderTower` holds every item's preprocessed inputs and maps
row numbers to ``fuse(mean-pool(encode(inputs)))``, L2-normalised, so it trains with the same
:func:`mmrec.quantization.align.train_tower` as the fast path's head over cached vectors. Reading
the shards and writing the aligned vectors is the ``mmrec align`` job (:mod:`mmrec.pipelines.align`).

[I] Preprocessed inputs of every item are held in memory (this path is for catalogues that fit;
the fast path over cached embeddings is the one that scales).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.encoders import Encoder
from mmrec.encoders.fusion import FUSERS
from mmrec.errors import UsageError


class EncoderTower(nn.Module):
    """Item rows -> fused, L2-normalised vectors through trainable encoders."""

    def __init__(self, encoders: dict[str, Encoder], fuse: str, prepared: list[dict[str, list[Any]]]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fuser = FUSERS.build(fuse)
        if self.fuser.out_dim({m: e.dim for m, e in encoders.items()}) is None:
            raise UsageError("alignment needs a fused vector; use fuse 'concat' or 'mean'")
        self.prepared = prepared

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        items = [self.prepared[r] for r in rows.tolist()]
        device = next(self.parameters()).device
        vectors, present = {}, {}
        for m, encoder in self.encoders.items():
            flat = [(row, x) for row, item in enumerate(items) for x in item.get(m, ())]
            sums = torch.zeros(len(items), encoder.dim, device=device)
            if flat:
                owners = torch.tensor([row for row, _ in flat], device=device)
                encoded = encoder.encode(encoder.collate([x for _, x in flat]))  # (n_inputs, d)
                sums = sums.index_add(0, owners, encoded.float())  # float32 under autocast too
            vectors[m] = F.normalize(sums, dim=-1)  # mean-pooled per item, renormalised
            present[m] = torch.tensor([m in item for item in items], device=device)
        return self.fuser(vectors, present)  # (B, d)
