"""CUDA paths: autocast inside, float32 L2-normalised out, same directions as on CPU. Skipped without CUDA."""

import pytest
import torch

from mmrec.encoders import load_encoder
from mmrec.testing import with_cuda


@with_cuda
@pytest.mark.parametrize("spec", ["open_clip:tiny", "hf-text:tiny", "speech:tiny"])
def test_cuda_encode_matches_cpu(spec, raw_samples):
    modality = load_encoder(spec).modality
    raws = raw_samples[modality]
    cpu = load_encoder(spec).embed(raws)
    gpu = load_encoder(spec, device="cuda").embed(raws)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.norm(dim=-1).cpu(), torch.ones(len(raws)))
    assert torch.nn.functional.cosine_similarity(gpu.cpu(), cpu).min() > 0.98  # bf16/fp16 autocast
