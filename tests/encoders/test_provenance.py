"""Weight provenance (mmrec.encoders.base): random with seed, file / folder + sha256, package + version."""

import hashlib
import warnings

import pytest
import torch

from mmrec.encoders import RandomWeightsWarning, load_encoder, weights_provenance
from mmrec.encoders.speech import SpeechEncoder


def test_file_and_folder_hashes_follow_the_bytes(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt/model.safetensors").write_bytes(b"one")
    (tmp_path / "ckpt/config.json").write_text("{}")
    folder = weights_provenance(tmp_path / "ckpt")
    assert folder["kind"] == "folder" and folder["path"] == str((tmp_path / "ckpt").resolve())
    file = weights_provenance(tmp_path / "ckpt/model.safetensors")
    assert file == {"kind": "file", "path": str((tmp_path / "ckpt/model.safetensors").resolve()),
                    "sha256": hashlib.sha256(b"one").hexdigest()}
    (tmp_path / "ckpt/model.safetensors").write_bytes(b"two!")
    assert weights_provenance(tmp_path / "ckpt")["sha256"] != folder["sha256"]


def test_random_seed_is_recorded_and_only_non_test_models_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)  # the tiny test preset never warns
        assert load_encoder("open_clip:tiny").provenance == {"kind": "random", "seed": 0}
    torch.manual_seed(5)
    with pytest.warns(RandomWeightsWarning, match="speech:wav2vec2 runs with random weights .*--audio-weights DIR"):
        encoder = SpeechEncoder("wav2vec2", config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "intermediate_size": 32, "conv_dim": (32,), "conv_kernel": (10,),
                                                    "conv_stride": (5,), "num_conv_pos_embeddings": 16,
                                                    "num_conv_pos_embedding_groups": 2})
    assert encoder.provenance == {"kind": "random", "seed": 5}
