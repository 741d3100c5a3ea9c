"""SpeechEncoder: decoding, resampling, input checks, padding, model kinds and local weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_configs import WHISPER_TINY
from transformers import WhisperConfig, WhisperModel

from mmrec.encoders import load_encoder
from mmrec.errors import InputError, MissingWeightsError, UsageError

W2V_TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32, 32),
    "conv_kernel": (10, 4),
    "conv_stride": (5, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("speech:tiny")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_encoded_files_decode_to_16khz_mono(tiny, make_audio, fmt):
    wave = tiny.preprocess(make_audio(440.0, rate=16_000, seconds=0.5, fmt=fmt))
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(len(wave) - 8000) <= 16  # lossy codecs may pad a few samples
    assert torch.isfinite(tiny.embed([make_audio(fmt=fmt)])).all()


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_odd_sample_rates_are_resampled(tiny, make_audio, rate):
    wave = tiny.preprocess(make_audio(440.0, rate=rate, seconds=0.5))
    assert abs(len(wave) - 8000) <= 1
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) * 16_000 / len(wave) - 440.0) < 5  # the tone keeps its pitch
    assert torch.isfinite(tiny.embed([make_audio(rate=rate)])).all()


def test_arrays_stereo_and_pcm_integers(tiny, make_tone):
    stereo = make_tone(440.0, rate=22_050, seconds=0.5, channels=2)  # (T, 2)
    assert abs(len(tiny.preprocess((stereo, 22_050))) - 8000) <= 1
    assert abs(len(tiny.preprocess((stereo.T, 22_050))) - 8000) <= 1  # (2, T)
    mono = make_tone(440.0, seconds=0.5)
    pcm = (mono * 32767).astype(np.int16)
    torch.testing.assert_close(tiny.preprocess(pcm), tiny.preprocess(mono), atol=1e-4, rtol=0)
    assert torch.equal(tiny.preprocess(mono), tiny.preprocess(torch.from_numpy(mono)))


def test_long_audio_is_cropped_to_max_seconds(make_audio):
    encoder = load_encoder("speech:tiny", config={"max_seconds": 0.5})
    assert len(encoder.preprocess(make_audio(rate=44_100, seconds=2.0))) == 8000


@pytest.mark.parametrize(
    "make_raw, reason",
    [
        (lambda tone: b"", "empty audio bytes"),
        (lambda tone: b"RIFF garbage that is not audio" * 8, "cannot decode audio"),
        (lambda tone: np.zeros(0, dtype=np.float32), "empty audio"),
        (lambda tone: tone(seconds=0.05), "0.050 s long"),
        (lambda tone: np.zeros(16_000, dtype=np.float32), "silent"),
        (lambda tone: np.full(16_000, np.nan, dtype=np.float32), "NaN"),
        (lambda tone: (tone(rate=16_000), 500), "sample rate 500 Hz"),
        (lambda tone: (tone(rate=16_000), 500_000), "sample rate 500000 Hz"),
        (lambda tone: np.zeros((2, 3, 4), dtype=np.float32), "1-D or 2-D"),
        (lambda tone: "speech.wav", "got str"),
    ],
    ids=["no-bytes", "garbage", "no-samples", "too-short", "silent", "nan", "rate-low", "rate-high", "3d", "str"],
)
def test_bad_audio_raises_input_error(tiny, make_tone, make_raw, reason):
    with pytest.raises(InputError, match=reason):
        tiny.preprocess(make_raw(make_tone))


@pytest.mark.parametrize(
    "spec, config",
    [("speech:tiny", {"feat_extract_norm": "layer"}), ("speech:whisper", WHISPER_TINY)],
    ids=["wav2vec2-layernorm", "whisper"],
)
def test_padding_in_a_batch_does_not_change_a_vector(make_audio, spec, config):
    encoder = load_encoder(spec, config=config)
    short, long = make_audio(440.0, seconds=0.3), make_audio(880.0, seconds=0.9)
    alone = encoder.embed([short])
    torch.testing.assert_close(encoder.embed([short, long])[:1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "spec, config, backbone",
    [
        ("speech:wav2vec2", W2V_TINY, "Wav2Vec2Model"),
        ("speech:hubert", W2V_TINY, "HubertModel"),
        ("speech:whisper", WHISPER_TINY, "WhisperEncoder"),
    ],
)
def test_model_kinds_build_their_architecture(make_audio, spec, config, backbone):
    encoder = load_encoder(spec, config=config)
    assert type(encoder.backbone).__name__ == backbone
    assert encoder.embed([make_audio()]).shape == (1, 32)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(UsageError, match="'wavlm'.*wav2vec2, hubert, whisper, tiny"):
        load_encoder("speech:wavlm")


def test_whisper_window_must_be_whole_seconds():
    with pytest.raises(UsageError, match="multiple of 50.*got 60"):
        load_encoder("speech:whisper", config={**WHISPER_TINY, "max_source_positions": 60})


def test_wav2vec2_weights_folder_round_trip(tmp_path, make_audio):
    source = load_encoder("speech:tiny")
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the seeded default init
    source.backbone.save_pretrained(tmp_path)
    clips = [make_audio(220.0), make_audio(660.0, seconds=0.8)]
    torch.testing.assert_close(load_encoder("speech:tiny", weights=tmp_path).embed(clips), source.embed(clips))


def test_whisper_loads_the_encoder_of_a_full_checkpoint(tmp_path):
    full = WhisperModel(WhisperConfig(**WHISPER_TINY, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64))
    full.save_pretrained(tmp_path)
    encoder = load_encoder("speech:whisper", weights=tmp_path)
    expected = full.get_encoder().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in encoder.backbone.state_dict().items())


def test_missing_or_empty_weights_folder_is_named(tmp_path):
    with pytest.raises(MissingWeightsError, match=f"{tmp_path / 'gone'}.*never downloads"):
        load_encoder("speech:hubert", weights=tmp_path / "gone")
    with pytest.raises(MissingWeightsError, match=f"{tmp_path}.*holds no HubertModel checkpoint"):
        load_encoder("speech:hubert", weights=tmp_path)
