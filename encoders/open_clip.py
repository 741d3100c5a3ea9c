"""Image encoder: the vision tower of an open_clip CLIP model (Radford et al. 2021; Cherti et al. 2023).

``model`` names an open_clip model config (``open_clip.list_models()``, e.g. ``"ViT-B-32"``), a JSON
file holding one (open_clip's ``open_clip_config.json`` layout, with ``model_cfg`` and
``preprocess_cfg``, or a bare model config), or ``"tiny"``, mmrec's test preset. Images go through
open_clip's eval transform for the tower's input size: resize the short side, centre crop, normalise.

[I] Only the vision tower is kept. The text tower is always built at its smallest (whatever the config
says) and dropped at once, so a ViT-L never allocates its text half.
[I] ``config`` overrides go to the vision tower when they name a ``CLIPVisionCfg`` field; ``embed_dim``
and ``quick_gelu`` are top-level; ``mean``, ``std``, ``interpolation`` and ``resize_mode`` go to the
transform. Without a ``mean``/``std`` the OpenAI CLIP statistics are used. ``max_pixels`` (default
:data:`~mmrec.encoders.base.MAX_IMAGE_PIXELS`, 64 MP) caps ``width * height``.

No image weights ship in a PyPI package, so without ``weights`` the tower is random (and says so with a
:class:`~mmrec.encoders.base.RandomWeightsWarning`): on a machine with internet save
``open_clip.create_model('ViT-B-32', pretrained='openai').state_dict()`` to a file, copy it here and
pass it as ``weights`` (``mmrec extract --image-weights FILE``).
[I] An image over ``max_pixels`` is refused from its header, before any pixel is decoded (an
``InputError`` that batch jobs record in ``errors-*.jsonl``), not downscaled: only JPEG can be decoded
at a reduced size, and refusing every format alike keeps the rule one line. Pillow's own limit
(``PIL.Image.MAX_IMAGE_PIXELS``, refusing above about 179 MP) still applies above it.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mmrec.config import read_yaml
from mmrec.encoders.base import MAX_IMAGE_PIXELS, Encoder
from mmrec.errors import InputError, MissingWeightsError, UsageError

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16}}
_MIN_TEXT = {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}
_VISION_KEYS = frozenset(f.name for f in dataclasses.fields(open_clip.CLIPVisionCfg))
_TOP_KEYS = ("embed_dim", "quick_gelu")
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class OpenClipImageEncoder(Encoder):
    """An open_clip vision tower: JPEG/PNG/WEBP bytes, PIL images or uint8 arrays -> ``(B, embed_dim)``."""

    modality = "image"
    family = "open_clip"
    weights_hint = (
        "no image weights ship offline: on a machine with internet save open_clip.create_model('ViT-B-32', "
        "pretrained='openai').state_dict() to a file, copy it here and pass it as weights "
        "(mmrec extract --image-weights FILE)"
    )

    def _build(self, model: str, weights: str | Path | None, overrides: dict[str, Any]) -> None:
        self.max_pixels = int(overrides.pop("max_pixels", MAX_IMAGE_PIXELS))
        if self.max_pixels < 1:
            raise UsageError(f"max_pixels must be positive, got {self.max_pixels}")
        cfg, preprocess_cfg = _model_config(model, overrides)
        clip = open_clip.CLIP(
            embed_dim=cfg["embed_dim"],
            vision_cfg=cfg["vision_cfg"],
            text_cfg=_MIN_TEXT,
            quick_gelu=cfg.get("quick_gelu", False),
        )
        self.backbone = clip.visual
        if weights is not None:
            _load_visual(self.backbone, Path(weights), self.name)
        self.backbone_dim = cfg["embed_dim"]
        size = cfg["vision_cfg"].get("image_size", open_clip.CLIPVisionCfg.image_size)
        self.transform = open_clip.image_transform(
            tuple(size) if isinstance(size, list) else size,
            is_train=False,
            mean=preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN),
            std=preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD),
            interpolation=preprocess_cfg.get("interpolation"),
            resize_mode=preprocess_cfg.get("resize_mode"),
        )

    def preprocess(self, raw: Any) -> torch.Tensor:
        """Encoded image bytes, a PIL image or a uint8 ``(H, W, 3)`` array -> ``(3, S, S)`` float."""
        return self.transform(_to_rgb(raw, self.max_pixels))

    def _forward_backbone(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backbone(batch)  # (B, 3, S, S) -> (B, embed_dim)

    def _blocks(self) -> Sequence[nn.Module]:
        transformer = getattr(self.backbone, "transformer", None)
        if transformer is None:
            raise UsageError(
                f"{self.name}: unfreeze_last needs a ViT tower; this one is {type(self.backbone).__name__}"
            )
        return transformer.resblocks


def _model_config(model: str, overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, preprocess config) for ``model`` with ``overrides`` applied."""
    preprocess_cfg: dict[str, Any] = {}
    if model == "tiny":
        cfg = copy.deepcopy(TINY)
    elif model.endswith(".json"):
        path = Path(model).expanduser()
        raw = read_yaml(path, "open_clip config file")
        cfg, preprocess_cfg = raw.get("model_cfg", raw), raw.get("preprocess_cfg", {})
        if "embed_dim" not in cfg or "vision_cfg" not in cfg:
            raise UsageError(f"open_clip config file {str(path)!r} needs 'embed_dim' and 'vision_cfg'")
    elif model in open_clip.list_models():
        cfg = open_clip.get_model_config(model)
    else:
        raise UsageError(
            f"unknown open_clip model {model!r}: not 'tiny', not a .json config file and not one of "
            f"open_clip.list_models() (e.g. ViT-B-32, ViT-L-14, RN50)"
        )
    # CoCa towers can also return their tokens; the encoder needs the pooled vector only.
    cfg["vision_cfg"]["output_tokens"] = False
    for key, value in (overrides or {}).items():
        if key in _TOP_KEYS:
            cfg[key] = value
        elif key in _PREPROCESS_KEYS:
            preprocess_cfg[key] = value
        elif key in _VISION_KEYS:
            cfg["vision_cfg"][key] = value
        else:
            raise UsageError(
                f"unknown open_clip config key {key!r}; use {', '.join(_TOP_KEYS + _PREPROCESS_KEYS)} "
                f"or a CLIPVisionCfg field (layers, width, patch_size, image_size, ...)"
            )
    return cfg, preprocess_cfg


def _load_visual(visual: nn.Module, path: Path, name: str) -> None:
    """Load a full CLIP state dict or a vision-tower-only one from ``path`` into ``visual``."""
    state = _read_state_dict(path, name)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DistributedDataParallel
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    expected = visual.state_dict()
    problems = {
        "missing": sorted(expected.keys() - state.keys()),
        "unexpected": sorted(state.keys() - expected.keys()),
        "with another shape": sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape),
    }
    if any(problems.values()):
        summary = "; ".join(f"{len(keys)} keys {kind} (e.g. {keys[0]})" for kind, keys in problems.items() if keys)
        raise UsageError(f"{name}: weights in {str(path)!r} do not fit this model: {summary}")
    visual.load_state_dict(state)


def _read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MissingWeightsError(
            f"{name}: weights file {str(path)!r} not found. mmrec never downloads weights: on a machine with "
            f"internet save open_clip.create_model('ViT-B-32', pretrained='openai').state_dict() with "
            f"torch.save or safetensors, copy the file here and pass it as weights"
        )
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = _torch_load(path)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise UsageError(f"{name}: cannot read weights file {str(path)!r}: {str(err).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]  # open_clip training checkpoints nest the weights
    if not isinstance(state, dict):
        raise UsageError(f"{name}: {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


def _torch_load(path: Path) -> Any:
    """``torch.load`` memory-mapped, so the tensors of a full CLIP checkpoint that the vision tower
    does not use (the text tower) are never read; files in the legacy format are read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:g} MP "
            f"(max_pixels / --max-image-pixels); refused without decoding"
        )


def _to_rgb(raw: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode ``raw`` fully into an RGB PIL image; InputError if it is not a usable image or has
    more than ``max_pixels`` pixels (checked from the header, before decoding)."""
    if isinstance(raw, np.ndarray):
        if raw.dtype != np.uint8 or raw.ndim != 3 or raw.shape[2] != 3:
            raise InputError(f"image array must be uint8 (H, W, 3), got {raw.dtype} {raw.shape}")
        _check_pixels(raw.shape[1], raw.shape[0], max_pixels)
        return Image.fromarray(raw)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if not raw:
            raise InputError("empty image bytes")
        try:
            with warnings.catch_warnings():  # Pillow warns of a bomb at open; the check below decides
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(raw))  # reads the header only
            with img:
                _check_pixels(*img.size, max_pixels)
                return img.convert("RGB")  # decodes every pixel, so truncated files fail here
        except InputError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise InputError(f"cannot decode image ({len(raw)} bytes starting {raw[:8]!r}): {err}") from None
    if isinstance(raw, Image.Image):
        _check_pixels(*raw.size, max_pixels)
        try:
            return raw.convert("RGB")
        except (OSError, ValueError) as err:
            raise InputError(f"cannot decode image {raw!r}: {err}") from None
    raise InputError(f"an image must be bytes, a PIL image or a uint8 array, got {type(raw).__name__}")
