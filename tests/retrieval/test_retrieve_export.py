"""SYNTHETIC: `mmrec retrieve export` writes a run's item vectors; quantized, they recover the planted groups."""

import json

import numpy as np
import pytest
import torch
from seq_data import planted_groups, write_lcrec

from mmrec.cli import main
from mmrec.pipelines.quantize import quantize
from mmrec.pipelines.retrieve import export_run, load_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import load_codes
from mmrec.retrieval.data import ITEM_KEY
from mmrec.store import read_embeddings

TINY = dict(dim=32, layers=1, heads=2, max_len=10, dropout=0.0)
GROUPS, PER_GROUP = 8, 5


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    sequences, group_of = planted_groups(groups=GROUPS, per_group=PER_GROUP)
    write_lcrec(root / "src", "G", sequences)
    import_sequences(root / "src", "G", root / "data")
    train(root / "data", root / "run", {"model": "sasrec", "lr": 5e-3, "batch_size": 64, "model_config": TINY,
                                        "loop": {"epochs": 6, "patience": 6, "progress": False}})
    return root, group_of


def test_export_writes_the_runs_item_vectors_keyed_by_item(sasrec_run, tmp_path):
    root, group_of = sasrec_run
    manifest = export_run(root / "run", tmp_path / "emb", shard_size=20)
    keys, vectors = read_embeddings(tmp_path / "emb")
    assert keys == [ITEM_KEY.format(i) for i in range(len(group_of))]
    assert sorted(p.name for p in (tmp_path / "emb").glob("emb-*.parquet")) == ["emb-000000.parquet", "emb-000001.parquet",
                                                                                  "emb-000002.parquet"]
    model, _ = load_run(root / "run")
    with torch.no_grad():
        np.testing.assert_array_equal(vectors, model.item_vectors().numpy())
    # the rare items are the validation targets of half the users and never occur in the training part
    assert manifest["untrained_items"] == GROUPS and manifest["samples"] == len(group_of) and manifest["dim"] == 32


def test_codes_of_exported_vectors_recover_the_planted_groups(sasrec_run, tmp_path, capsys):
    """Items of a group are interchangeable in every sequence, so the learned vectors cluster by group:
    each trained item's nearest trained item is of its group, and one level of 16 k-means codes over
    them (2 per group: the untrained items take some) holds one group each."""
    root, group_of = sasrec_run
    assert main(["retrieve", "export", "--run", str(root / "run"), "--out", str(tmp_path / "emb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "retrieve:sasrec"
    trained = np.flatnonzero(np.arange(len(group_of)) % (PER_GROUP + 1) != PER_GROUP)
    _, vectors = read_embeddings(tmp_path / "emb")
    unit = vectors[trained] / np.linalg.norm(vectors[trained], axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    assert (group_of[trained][cosine.argmax(1)] == group_of[trained]).mean() > 0.9  # chance: 4/39
    quantize(tmp_path / "emb", tmp_path / "codes", levels=1, codebook_size=2 * GROUPS, progress=False)
    _, codes, _ = load_codes(tmp_path / "codes" / "codes.parquet")
    code, group = codes[trained, 0], group_of[trained]
    purity = sum(np.bincount(group[code == c]).max() for c in np.unique(code)) / len(trained)
    assert purity > 0.9  # random codes: 0.48 on average


def test_export_refuses_a_counted_baseline(sasrec_run, tmp_path, capsys):
    root, _ = sasrec_run
    train(root / "data", tmp_path / "cooc", {"model": "cooc"})
    assert main(["retrieve", "export", "--run", str(tmp_path / "cooc"), "--out", str(tmp_path / "emb")]) == 2
    assert "cooc has no item vectors to export" in capsys.readouterr().err
