import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmrec.errors import UsageError
from mmrec.losses import info_nce
from mmrec.pipelines.align import align
from mmrec.quantization.align import AlignConfig, align_vectors, pair_metrics, split_pairs
from mmrec.store import read_embeddings


def test_info_nce_is_symmetric_cross_entropy_and_masks_duplicates():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    logits = a @ b.T / 0.1
    expected = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert info_nce(a, b, 0.1) == pytest.approx(float(expected), rel=1e-6)
    assert info_nce(a, a, 0.1) < info_nce(a, b, 0.1)  # matched pairs score better
    # rows 0 and 1 hold the same right item: its copy must not count as a negative
    b2 = b.clone()
    b2[1] = b2[0]
    right = torch.tensor([0, 0, 2, 3, 4])
    masked = info_nce(b2, b2, 0.1, right=right, left=right)
    unmasked = info_nce(b2, b2, 0.1)
    assert masked < unmasked


def test_split_pairs_dedups_unordered_and_is_seeded():
    pairs = np.array([[1, 2], [2, 1], [3, 3], [4, 5], [5, 6], [6, 7], [7, 8], [1, 2]])
    train, held = split_pairs(pairs, 0.4, seed=0)
    both = np.concatenate([train, held])
    assert len(both) == 5 and len(held) == 2  # {1,2} once, (3,3) dropped
    assert len({tuple(p) for p in both.tolist()}) == 5
    assert np.array_equal(split_pairs(pairs, 0.4, seed=0)[1], held)


def test_pair_metrics_see_through_a_shrinking_space():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    pairs = np.stack([np.arange(0, 100), np.arange(100, 200)], 1)
    x[100:] = x[:100] + 0.3 * rng.normal(size=(100, 16))
    good = pair_metrics(x, pairs)
    assert good["auc"] > 0.95 and good["gap"] > 0.5
    shrunk = pair_metrics(rng.normal(size=(200, 16)) + 10.0, pairs)  # every cosine near 1, pairs mean nothing
    assert shrunk["pair_cosine"] > 0.9 and abs(shrunk["auc"] - 0.5) < 0.1 and abs(shrunk["gap"]) < 0.05


def _style_gap(vectors, topics, styles):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    same_topic = topics[:, None] == topics[None]
    same_style = styles[:, None] == styles[None]
    off = ~np.eye(len(unit), dtype=bool)
    return sims[same_topic & same_style & off].mean() - sims[same_topic & ~same_style].mean()


def test_alignment_brings_behaviour_pairs_closer(sample_items, tmp_path):
    report = align(sample_items["log"], sample_items["emb"], tmp_path / "aligned", config={"train": {"epochs": 10}}, progress=False)
    before, after = report["before"], report["after"]
    assert report["heldout_pairs"] >= 100 and report["pairs"]["swing"]["pairs"] > 0
    assert after["pair_cosine"] > before["pair_cosine"] + 0.1  # held-out pairs come closer ...
    assert after["gap"] > before["gap"] + 0.1  # ... than random pairs do
    assert after["auc"] > before["auc"]
    assert report["epoch_loss"][-1] < report["epoch_loss"][0]

    keys, raw = read_embeddings(sample_items["emb"], "fused")
    aligned_keys, aligned = read_embeddings(tmp_path / "aligned", "fused")
    assert aligned_keys == keys and aligned.shape == raw.shape
    assert np.allclose(np.linalg.norm(aligned, axis=1), 1.0, atol=1e-5)
    # the hidden sub-style (only a few title words show it) is what alignment learned to bring out
    topics, styles = sample_items["topics"], sample_items["styles"]
    assert _style_gap(aligned, topics, styles) > 2 * _style_gap(raw, topics, styles)
    names = {p.name for p in (tmp_path / "aligned").iterdir()}
    assert {"pairs.parquet", "head.safetensors", "align.json", "manifest.json"} <= names


@pytest.mark.parametrize("learn", [True, False])
def test_temperature_learnable_or_fixed(learn):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    pairs = np.stack([np.arange(32), np.arange(32, 64)], 1)
    aligned, head, history = align_vectors(x, pairs, AlignConfig(epochs=3, batch_size=16, temperature=0.5, learn_temperature=learn, lr=1e-2))
    assert aligned.shape == (64, 8)
    assert (history["temperature"] != pytest.approx(0.5)) == learn


def test_mlp_head_starts_at_identity_and_out_dim():
    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    pairs = np.stack([np.arange(20), np.arange(20, 40)], 1)
    aligned, head, _ = align_vectors(x, pairs, AlignConfig(head="mlp", epochs=1, batch_size=8, lr=1e-9))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.allclose(aligned, unit, atol=1e-4)
    aligned, _, _ = align_vectors(x, pairs, AlignConfig(out_dim=4, epochs=1, batch_size=8))
    assert aligned.shape == (40, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"head": "transformer"}, "unknown alignment head 'transformer'"),
    ({"temperature": 0}, "temperature and lr must be > 0"),
    ({"holdout": 1.0}, "holdout must be in"),
    ({"batch_size": 1}, "batch_size >= 2"),
])
def test_bad_align_config(kwargs, message):
    with pytest.raises(UsageError, match=message):
        AlignConfig(**kwargs)


def test_align_rejects_nan_embeddings():
    x = np.ones((10, 4), np.float32)
    x[4, 2] = np.inf
    with pytest.raises(UsageError, match="row 4 has NaN or inf"):
        align_vectors(x, np.array([[0, 1], [2, 3]]))
