"""Encoder.for_inference: bfloat16 weights on CPU and torch.compile keep the vectors, bad options fail early."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from mmrec.encoders import load_encoder
from mmrec.errors import UsageError

SPECS = [
    pytest.param("open_clip:tiny", "image", id="open_clip"),
    pytest.param("hf-text:tiny", "text", id="hf-text"),
    pytest.param("speech:tiny", "audio", id="speech"),
]


@pytest.mark.parametrize("spec, modality", SPECS)
def test_bf16_on_cpu_keeps_the_vectors(spec, modality, raw_samples):
    raws = raw_samples[modality]
    reference = load_encoder(spec).embed(raws)
    encoder = load_encoder(spec).for_inference(precision="bf16")
    out = encoder.embed(raws)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert all(p.dtype == torch.bfloat16 for p in encoder.backbone.parameters() if p.is_floating_point())
    assert F.cosine_similarity(out, reference).min() > 0.99
    assert not torch.equal(out, reference)  # the weights really are bfloat16
    assert encoder.describe()["precision"] == "bf16"


def test_fp32_precision_changes_nothing_on_cpu(raw_samples):
    raws = raw_samples["image"]
    reference = load_encoder("open_clip:tiny").embed(raws)
    assert torch.equal(load_encoder("open_clip:tiny").for_inference(precision="fp32").embed(raws), reference)


@pytest.mark.slow
def test_compiled_encoder_matches_eager_for_any_batch_size(raw_samples):
    """Batches of 3 and 7 rows run as padded chunks of 4: same vectors as eager, padding never leaks."""
    raws = raw_samples["image"]
    eager = load_encoder("open_clip:tiny")
    compiled = load_encoder("open_clip:tiny").for_inference(compile=True, compile_batch=4)
    assert compiled.describe()["compiled"]
    for n in (3, 7):
        batch = eager.collate([eager.preprocess(raws[i % len(raws)]) for i in range(n)])
        torch.testing.assert_close(compiled.encode(batch), eager.encode(batch), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "options, trainable, match",
    [
        ({"precision": "half"}, False, "precision must be one of"),
        ({"precision": "fp16"}, False, "fp16 needs CUDA"),
        ({"precision": "bf16"}, True, "frozen encoders"),
        ({"compile": True}, True, "frozen encoders"),
        ({"compile": True, "compile_batch": 0}, False, "compile_batch"),
    ],
)
def test_bad_inference_options_fail_early(options, trainable, match):
    encoder = load_encoder("open_clip:tiny", trainable=trainable)
    with pytest.raises(UsageError, match=match):
        encoder.for_inference(**options)


def test_bf16_warns_on_a_cpu_without_native_bfloat16(monkeypatch):
    import mmrec.encoders.base as base

    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        load_encoder("open_clip:tiny").for_inference(precision="bf16")
    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_encoder("open_clip:tiny").for_inference(precision="bf16")
