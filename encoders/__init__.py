"""Image, text and speech encoders behind one factory, :func:`load_encoder`.

Specs are ``"<family>:<model>"``: ``"open_clip:ViT-B-32"``, ``"hf-text:all-MiniLM-L6-v2"`` (or a local
checkpoint folder), ``"speech:wav2vec2"``, ``"whisper-ct2:tiny.en"`` (real Whisper tiny.en weights, English-only,
extra ``speech``). Each torch family also knows ``"<family>:tiny"``, a random-weight architecture small
enough for tests. Nothing is downloaded: weights come from a local path or from a
package that ships them, and each encoder records which in ``provenance`` (random with its seed, file
or folder + sha256, package + version); one meant to be pretrained that runs random warns with
:class:`RandomWeightsWarning`. :class:`MFQ` (MMBee's live-segment fusion with learnable queries) fuses a
segment's frame, speech and comment token sequences; :func:`save_mfq` / :func:`load_mfq` store it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmrec.encoders.base import (
    MAX_IMAGE_PIXELS,
    PRECISIONS,
    Encoder,
    LoRALinear,
    RandomWeightsWarning,
    TrainableConfig,
    add_lora,
    weights_provenance,
)
from mmrec.encoders.mfq import MFQ, MFQConfig, load_mfq, save_mfq
from mmrec.errors import UsageError
from mmrec.registry import Registry

ENCODERS = Registry("encoder family")
ENCODERS.register("open_clip", "mmrec.encoders.open_clip:OpenClipImageEncoder")
ENCODERS.register("hf-text", "mmrec.encoders.hf_text:HFTextEncoder")
ENCODERS.register("speech", "mmrec.encoders.speech:SpeechEncoder")
ENCODERS.register("whisper-ct2", "mmrec.encoders.whisper_ct2:WhisperCT2Encoder")

DEFAULT_TEXT = "hf-text:all-MiniLM-L6-v2"


def load_encoder(
    spec: str,
    *,
    weights: str | Path | None = None,
    trainable: bool | dict | TrainableConfig = False,
    config: dict[str, Any] | None = None,
    device: str | None = None,
) -> Encoder:
    """Build the encoder named by ``spec`` (``"family:model"``).

    ``weights``: a local checkpoint (file or folder) to load; None = the family's offline default
    (random init, or the weights a package ships). ``trainable``: False = frozen; True = a projection
    head; a dict/:class:`TrainableConfig` adds LoRA or unfreezes the last N blocks. ``config``:
    overrides of the architecture's config fields. Random initialisation is seeded, so one spec
    gives the same weights in every process: ranks agree and a resumed job matches a clean one.
    """
    if not isinstance(spec, str):
        raise UsageError(f"encoder spec must be a string like 'open_clip:ViT-B-32', got {spec!r}")
    family, sep, model = spec.partition(":")
    if not sep or not model:
        raise UsageError(f"encoder spec {spec!r} must look like 'family:model'; families: {', '.join(ENCODERS.names())}")
    builder = ENCODERS.get(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = builder(model, weights=weights, trainable=trainable, config=config)
    return encoder.to(device) if device else encoder


__all__ = ["DEFAULT_TEXT", "ENCODERS", "MAX_IMAGE_PIXELS", "MFQ", "PRECISIONS", "Encoder", "LoRALinear", "MFQConfig",
           "RandomWeightsWarning", "TrainableConfig", "add_lora", "load_encoder", "load_mfq", "save_mfq",
           "weights_provenance"]
