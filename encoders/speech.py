"""Speech encoders: wav2vec 2.0, HuBERT and the Whisper encoder, mean-pooled over valid frames.

wav2vec 2.0 (Baevski et al. 2020) and HuBERT (Hsu et al. 2021) read the 16 kHz waveform, each
normalised to zero mean and unit variance as their ``Wav2Vec2FeatureExtractor`` does; Whisper (Radford
et al. 2022) reads 80-bin log-mel frames from ``WhisperFeatureExtractor``, built here from its
parameters and padded to the encoder's fixed window (30 s for real checkpoints). The utterance vector
is the mean of the last hidden states over the frames that cover real audio.

``model`` is ``"wav2vec2"`` or ``"hubert"`` (base size), ``"whisper"`` (base size, encoder only) or
``"tiny"`` (a 2-layer wav2vec 2.0 of width 32 for tests); random weights unless ``weights`` names a local
``save_pretrained`` folder. ``config`` sets ``max_seconds`` (default 10) and overrides model config keys.

[I] Inputs are cropped to ``max_seconds`` and must hold at least 0.1 s (the conv front end needs 25 ms
per frame), be finite, have a peak of at least 1e-4 (per-utterance normalisation would blow silence up
into noise) and a sample rate between 1 kHz and 384 kHz; other rates are resampled to 16 kHz.
[I] The attention mask reaches the model only when its feature encoder uses layer norm: group-norm
checkpoints such as wav2vec2-base were trained on zero-padded batches without one (HF's guidance).
Pooling always uses it.
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
from torch import nn
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from mmrec.encoders.base import Encoder
from mmrec.errors import InputError, MissingWeightsError, UsageError

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.1
SILENCE_PEAK = 1e-4
RATE_RANGE = (1_000, 384_000)
_HOP = 160  # Whisper: 10 ms mel frames at 16 kHz
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32, 32, 32),
    "conv_kernel": (10, 4, 4),
    "conv_stride": (5, 4, 4),  # 80 samples (5 ms) per frame
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
WHISPER_BASE = {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048}
# kind -> (config class, model class, config defaults); whisper keeps only its encoder.
_KINDS = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model, {}),
    "hubert": (HubertConfig, HubertModel, {}),
    "whisper": (WhisperConfig, WhisperModel, WHISPER_BASE),
    "tiny": (Wav2Vec2Config, Wav2Vec2Model, TINY),
}


class SpeechEncoder(Encoder):
    """Audio bytes or arrays -> mean-pooled ``(B, hidden)`` utterance vectors."""

    modality = "audio"
    family = "speech"
    weights_hint = (
        "on a machine with internet run `huggingface-cli download NAME --local-dir DIR` (e.g. "
        "facebook/wav2vec2-base, openai/whisper-base), copy DIR here and pass it as weights (mmrec extract --audio-weights DIR)"
    )

    def _build(self, model: str, weights: str | Path | None, overrides: dict[str, Any]) -> None:
        if model not in _KINDS:
            raise UsageError(f"unknown speech model {model!r}; known: {', '.join(_KINDS)}")
        self.max_seconds = float(overrides.pop("max_seconds", 10.0))
        if self.max_seconds < MIN_SECONDS:
            raise UsageError(f"max_seconds must be at least {MIN_SECONDS}, got {self.max_seconds}")
        self.backbone = _build_backbone(model, weights, overrides)
        cfg = self.backbone.config
        self.mel = _mel_extractor(cfg) if model == "whisper" else None
        self._mask_to_model = getattr(cfg, "feat_extract_norm", None) == "layer"
        self.backbone_dim = cfg.d_model if model == "whisper" else cfg.hidden_size

    def preprocess(self, raw: Any) -> torch.Tensor:
        """WAV/FLAC/OGG bytes, ``(array, sample_rate)`` or a 16 kHz array -> mono ``(T,)`` at 16 kHz."""
        wave, rate = _decode(raw)
        if not isinstance(rate, numbers.Real) or not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise InputError(f"sample rate {rate!r} Hz is outside {RATE_RANGE[0]}..{RATE_RANGE[1]} Hz")
        rate = int(rate)
        if wave.size == 0:
            raise InputError("empty audio")
        if not np.isfinite(wave).all():
            raise InputError(f"audio has {int((~np.isfinite(wave)).sum())} NaN or infinite samples")
        wave = wave[: int(self.max_seconds * rate)]
        if len(wave) < MIN_SECONDS * rate:
            raise InputError(f"audio is {len(wave) / rate:.3f} s long; at least {MIN_SECONDS} s is needed")
        peak = float(np.abs(wave).max())
        if peak < SILENCE_PEAK:
            raise InputError(f"audio is silent (peak {peak:.1e} < {SILENCE_PEAK:.0e})")
        out = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        return out if rate == SAMPLE_RATE else AF.resample(out, rate, SAMPLE_RATE)  # (T,)

    def collate(self, samples: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Waveforms -> wav2vec/HuBERT ``input_values`` + ``attention_mask`` ``(B, T)``, or Whisper
        ``input_features`` ``(B, n_mels, frames)`` + a mel-frame ``attention_mask`` ``(B, frames)``."""
        if self.mel is not None:
            feats = self.mel(
                [s.numpy() for s in samples], sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
            return {"input_features": feats["input_features"], "attention_mask": feats["attention_mask"]}
        lengths = torch.tensor([len(s) for s in samples])
        values = torch.zeros(len(samples), int(lengths.max()))  # (B, T), zero-padded
        for row, s in zip(values, samples):
            row[: len(s)] = (s - s.mean()) / torch.sqrt(s.var(unbiased=False) + 1e-7)
        mask = (torch.arange(values.shape[1]) < lengths[:, None]).long()  # (B, T)
        return {"input_values": values, "attention_mask": mask}

    def _forward_backbone(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.mel is not None:
            hidden = self.backbone(batch["input_features"]).last_hidden_state  # (B, frames / 2, D)
            valid = batch["attention_mask"][:, ::2]  # the second conv halves the frame rate
        else:
            mask = batch["attention_mask"] if self._mask_to_model else None
            hidden = self.backbone(batch["input_values"], attention_mask=mask).last_hidden_state  # (B, F, D)
            frames = self.backbone._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))  # (B,)
            valid = torch.arange(hidden.shape[1], device=hidden.device) < frames[:, None]  # (B, F)
        weight = valid.unsqueeze(-1).to(hidden.dtype)  # (B, F, 1)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1)  # (B, D)

    def _blocks(self) -> Sequence[nn.Module]:
        return self.backbone.layers if self.mel is not None else self.backbone.encoder.layers


def _build_backbone(kind: str, weights: str | Path | None, overrides: dict[str, Any]) -> nn.Module:
    config_cls, model_cls, defaults = _KINDS[kind]
    if weights is None:
        config = config_cls(**{**defaults, **overrides})
        return WhisperEncoder(config) if kind == "whisper" else model_cls(config)
    folder = Path(weights).expanduser()
    if not folder.is_dir():
        raise MissingWeightsError(
            f"speech:{kind}: weights folder {str(folder)!r} not found, and mmrec never downloads. On a machine "
            f"with internet run `huggingface-cli download NAME --local-dir DIR` (e.g. facebook/wav2vec2-base, "
            f"openai/whisper-base), copy DIR here and pass it as weights"
        )
    try:
        model = model_cls.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **overrides)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"speech:{kind}: {str(folder)!r} holds no {model_cls.__name__} checkpoint: {str(err).splitlines()[0]}"
        ) from None
    return model.get_encoder() if kind == "whisper" else model


def _mel_extractor(config: WhisperConfig) -> WhisperFeatureExtractor:
    """Whisper's log-mel front end, sized so its padded window fills the encoder's positions."""
    window = 2 * config.max_source_positions * _HOP  # samples; the encoder halves the mel frames
    if window % SAMPLE_RATE:
        raise UsageError(
            f"whisper max_source_positions must be a multiple of 50 (whole seconds), got {config.max_source_positions}"
        )
    return WhisperFeatureExtractor(
        feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=_HOP, n_fft=400,
        chunk_length=window // SAMPLE_RATE,
    )


def _decode(raw: Any) -> tuple[np.ndarray, Any]:
    """``raw`` -> (mono float waveform ``(T,)``, sample rate)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if not raw:
            raise InputError("empty audio bytes")
        try:
            data, rate = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)  # (T, C)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
            raise InputError(f"cannot decode audio ({len(raw)} bytes starting {raw[:8]!r}): {err}") from None
        return data.mean(axis=1), rate
    if isinstance(raw, tuple) and len(raw) == 2:
        return _mono(raw[0]), raw[1]
    if isinstance(raw, (np.ndarray, torch.Tensor)):
        return _mono(raw), SAMPLE_RATE
    raise InputError(f"audio must be bytes, (array, sample_rate) or a 16 kHz array, got {type(raw).__name__}")


def _mono(array: Any) -> np.ndarray:
    """A ``(T,)``, ``(T, C)`` or ``(C, T)`` array -> float ``(T,)``; the shorter axis holds channels."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        array = array / np.iinfo(array.dtype).max  # PCM integers -> [-1, 1]
    if array.ndim == 2:
        array = array.mean(axis=int(np.argmin(array.shape)))
    if array.ndim != 1:
        raise InputError(f"audio array must be 1-D or 2-D (channels), got shape {array.shape}")
    return array.astype(np.float32)
