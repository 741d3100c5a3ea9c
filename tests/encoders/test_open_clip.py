"""OpenClipImageEncoder: image decoding, the eval transform, configs and local weights."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mmrec.encoders import load_encoder
from mmrec.encoders.open_clip import TINY
from mmrec.errors import InputError, MissingWeightsError, UsageError


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("open_clip:tiny")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_lossless_bytes_pil_and_array_give_the_same_tensor(tiny, make_image, fmt):
    raw = make_image(seed=1, fmt=fmt, size=(40, 56))
    pil = Image.open(io.BytesIO(raw))
    from_bytes = tiny.preprocess(raw)
    assert from_bytes.shape == (3, 32, 32)  # short side resized, then centre-cropped
    assert torch.equal(from_bytes, tiny.preprocess(pil))
    assert torch.equal(from_bytes, tiny.preprocess(np.asarray(pil.convert("RGB"))))


def test_grayscale_and_rgba_images_become_rgb(tiny):
    for mode in ("L", "RGBA", "P"):
        out = io.BytesIO()
        Image.new(mode, (20, 30)).save(out, format="PNG")
        assert tiny.preprocess(out.getvalue()).shape == (3, 32, 32)


def _truncated_jpeg(make_image):
    jpeg = make_image(seed=2, size=(64, 64))
    return jpeg[: len(jpeg) // 2]


@pytest.mark.parametrize(
    "make_raw, reason",
    [
        (lambda make_image: b"", "empty"),
        (lambda make_image: b"definitely not an image" * 4, "cannot decode"),
        (_truncated_jpeg, "cannot decode"),
        (lambda make_image: np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (lambda make_image: np.zeros((8, 8), dtype=np.uint8), r"\(H, W, 3\)"),
        (lambda make_image: "a string", "got str"),
    ],
    ids=["empty", "garbage", "truncated", "float-array", "2d-array", "str"],
)
def test_bad_images_raise_input_error(tiny, make_image, make_raw, reason):
    with pytest.raises(InputError, match=reason):
        tiny.preprocess(make_raw(make_image))


@pytest.mark.parametrize("suffix, prefix", [(".safetensors", "visual."), (".pt", "")])
def test_weights_round_trip(tmp_path, make_image, suffix, prefix):
    images = [make_image(seed) for seed in range(2)]
    source = load_encoder("open_clip:tiny")
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the seeded default init
    state = {prefix + k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file({**state, "text_projection": torch.zeros(32, 32)}, str(path))  # text keys are ignored
    else:
        torch.save(state, path)
    assert not torch.allclose(load_encoder("open_clip:tiny").embed(images), source.embed(images))
    loaded = load_encoder("open_clip:tiny", weights=path)
    torch.testing.assert_close(loaded.embed(images), source.embed(images))


def test_missing_weights_file_names_the_path_and_the_remedy(tmp_path):
    path = tmp_path / "nowhere" / "vit.safetensors"
    with pytest.raises(MissingWeightsError, match=f"{path}.*pretrained='openai'"):
        load_encoder("open_clip:tiny", weights=path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "wide.safetensors"
    wide = load_encoder("open_clip:tiny", config={"width": 64, "head_width": 32})
    save_file({k: v.contiguous() for k, v in wide.backbone.state_dict().items()}, str(path))
    with pytest.raises(UsageError, match="do not fit.*another shape"):
        load_encoder("open_clip:tiny", weights=path)


def test_corrupt_weights_file_is_a_usage_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read weights file"):
        load_encoder("open_clip:tiny", weights=path)


def test_config_overrides_reach_the_tower_and_the_transform(make_image):
    encoder = load_encoder("open_clip:tiny", config={"embed_dim": 16, "image_size": 48})
    assert encoder.dim == 16
    assert encoder.preprocess(make_image()).shape == (3, 48, 48)
    with pytest.raises(UsageError, match="'colour'"):
        load_encoder("open_clip:tiny", config={"colour": "red"})


def test_registered_model_name_builds_its_architecture():
    encoder = load_encoder("open_clip:ViT-B-32", config={"layers": 1, "width": 64, "head_width": 32, "image_size": 64})
    assert encoder.name == "open_clip:ViT-B-32"
    assert encoder.dim == 512  # ViT-B-32's embed_dim
    assert encoder.backbone.conv1.kernel_size == (32, 32)


def test_json_config_with_preprocess_cfg(tmp_path):
    path = tmp_path / "open_clip_config.json"
    path.write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    encoder = load_encoder(f"open_clip:{path}")
    gray = np.full((32, 32, 3), 255, dtype=np.uint8)
    torch.testing.assert_close(encoder.preprocess(gray), torch.ones(3, 32, 32))  # (1 - 0.5) / 0.5


@pytest.mark.parametrize("model", ["ViT-Nope-99", "/no/such/config.json"])
def test_unknown_model_is_a_usage_error(model):
    with pytest.raises(UsageError, match=model):
        load_encoder(f"open_clip:{model}")


@pytest.mark.parametrize("text, reason", [("{not json", "not valid JSON"), ('{"embed_dim": 8}', "needs")])
def test_bad_json_config_is_a_usage_error(tmp_path, text, reason):
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"{path}.*{reason}"):
        load_encoder(f"open_clip:{path}")


def test_unfreezing_a_resnet_tower_is_refused():
    with pytest.raises(UsageError, match="needs a ViT tower.*ModifiedResNet"):
        load_encoder(
            "open_clip:RN50",
            config={"layers": [1, 1, 1, 1], "width": 16, "image_size": 64},
            trainable={"unfreeze_last": 1},
        )
