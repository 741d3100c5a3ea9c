"""HFTextEncoder: the packaged MiniLM, local checkpoint folders, text checks and missing models."""

from __future__ import annotations

import pytest
import torch

from mmrec.encoders import DEFAULT_TEXT, load_encoder
from mmrec.errors import InputError, MissingWeightsError, UsageError

SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "The central bank raised interest rates."]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder(DEFAULT_TEXT)


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("hf-text:tiny")


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm):
    anchor, paraphrase, unrelated = minilm.embed(SENTENCES)
    assert minilm.dim == 384
    assert anchor @ paraphrase > 0.6 > anchor @ unrelated


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    folder = minilm.tokenizer.name_or_path
    reference = sentence_transformers.SentenceTransformer(folder, device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(SENTENCES, normalize_embeddings=True))
    torch.testing.assert_close(minilm.embed(SENTENCES), expected, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_a_sentence_vector(tiny):
    alone = tiny.embed(["short"])
    padded = tiny.embed(["short", "a much longer sentence that forces padding of the first one"])[:1]
    torch.testing.assert_close(padded, alone)


def test_preprocess_strips_and_decodes(tiny):
    assert tiny.preprocess("  hello \n") == "hello"
    assert tiny.preprocess("你好，世界".encode()) == "你好，世界"


@pytest.mark.parametrize("raw", ["", "  \n\t ", b"", b"\xff\xfe\xfa", 42, None])
def test_bad_text_raises_input_error(tiny, raw):
    with pytest.raises(InputError):
        tiny.preprocess(raw)


def test_max_length_truncates(tiny):
    encoder = load_encoder("hf-text:tiny", config={"max_length": 8})
    batch = encoder.collate([" ".join(["word"] * 50)])
    assert batch["input_ids"].shape == (1, 8)
    assert tiny.collate([" ".join(["word"] * 50)])["input_ids"].shape[1] == 52  # [CLS] + 50 + [SEP]
    with pytest.raises(UsageError, match="max_length=100000"):
        load_encoder("hf-text:tiny", config={"max_length": 100_000})


def test_local_checkpoint_folder_round_trip(tmp_path):
    tiny = load_encoder("hf-text:tiny")
    with torch.no_grad():
        for p in tiny.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the seeded default init
    tiny.backbone.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    expected = tiny.embed(SENTENCES)
    from_folder = load_encoder(f"hf-text:{tmp_path}")
    assert from_folder.name == f"hf-text:{tmp_path}" and from_folder.dim == 32
    torch.testing.assert_close(from_folder.embed(SENTENCES), expected)
    torch.testing.assert_close(load_encoder("hf-text:tiny", weights=tmp_path).embed(SENTENCES), expected)


@pytest.mark.parametrize("spec", ["hf-text:bert-base-chinese", "hf-text:/no/such/checkpoint"])
def test_models_not_on_this_machine_say_how_to_get_them(spec):
    name = spec.partition(":")[2]
    with pytest.raises(MissingWeightsError, match=f"'{name}'.*never downloads.*huggingface-cli download {name}"):
        load_encoder(spec)


def test_missing_weights_folder_is_named(tmp_path):
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "gone")):
        load_encoder("hf-text:tiny", weights=tmp_path / "gone")


def test_a_folder_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(MissingWeightsError, match=f"{tmp_path}.*holds no checkpoint"):
        load_encoder(f"hf-text:{tmp_path}")
