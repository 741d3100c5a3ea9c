"""Inputs generated in memory for the encoder tests: encoded images, tones encoded as audio files."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import soundfile
from PIL import Image


def _image(seed: int, size: tuple[int, int]) -> Image.Image:
    """A colour gradient with a bright square at a seed-dependent place, plus a little noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 3), dtype=np.float64)
    img += np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y : y + h // 3, x : x + w // 3] = 255
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def _encode_image(seed: int = 0, fmt: str = "JPEG", size: tuple[int, int] = (40, 56)) -> bytes:
    out = io.BytesIO()
    _image(seed, size).save(out, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


def _tone(freq: float = 440.0, rate: int = 16_000, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    """A sine tone at amplitude 0.5, ``(T,)`` or ``(T, channels)`` float32."""
    t = np.arange(int(round(rate * seconds))) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def _encode_audio(freq: float = 440.0, rate: int = 16_000, seconds: float = 0.5, fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, _tone(freq, rate, seconds), rate, format=fmt)
    return out.getvalue()


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(seed=0, fmt="JPEG", size=(H, W))`` -> encoded image bytes."""
    return _encode_image


@pytest.fixture
def make_audio() -> Callable[..., bytes]:
    """``make_audio(freq=440, rate=16000, seconds=0.5, fmt="WAV")`` -> encoded audio bytes."""
    return _encode_audio


@pytest.fixture
def make_tone() -> Callable[..., np.ndarray]:
    """``make_tone(freq, rate, seconds, channels)`` -> a float32 sine wave array."""
    return _tone


@pytest.fixture
def raw_samples() -> dict[str, list]:
    """Three distinct raw samples per modality."""
    return {
        "image": [_encode_image(seed) for seed in range(3)],
        "text": ["a cat sleeps on the sofa", "stock markets fell sharply today", "how to bake bread at home"],
        "audio": [_encode_audio(freq, seconds=s) for freq, s in ((220.0, 0.5), (440.0, 0.3), (1000.0, 0.7))],
    }
