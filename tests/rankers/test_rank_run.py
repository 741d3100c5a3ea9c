"""`mmrec rank train --set/--resume`, `rank evaluate`, `rank predict` and `rank export` on a saved run."""

import json

import numpy as np
import pytest
import yaml

from mmrec.cli import main
from mmrec.rankers import load_config, simulate

TINY = {"users": 40, "items": 80, "authors": 10, "impressions": 20, "seed": 1}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("rankrun")
    simulate(root, **TINY)
    config = {
        "data": {"log": "behaviour.parquet", "tasks": ["click", "like", "follow"], "history": {"length": 5}},
        "features": [{"name": "content", "kind": "embeddings", "path": "emb", "dim": 32}],
        "model": {"name": "pepnet", "embedding_dim": 8, "tower": [16]},
        "optim": {"epochs": 1, "batch_size": 256, "threads": 1},
        "out": "run",
    }
    (root / "rank.yaml").write_text(yaml.safe_dump(config))
    return root


def train_json(capsys, *argv):
    assert main(["rank", "train", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_set_overrides_dotted_paths_of_the_config(sim, tmp_path, capsys):
    report = train_json(capsys, "--config", str(sim / "rank.yaml"), "--out", str(tmp_path / "run"),
                        "--set", "optim.epochs=2", "--set", "model.tower=[8, 4]", "--set", "data.history.length=3",
                        "--set", "features.0.column=fused", "--set", "model.name=mmoe", "--set", "model.experts=2")
    assert report["model"] == "mmoe" and report["train"]["epochs"] == 2
    assert report["config"]["model"]["tower"] == [8, 4] and report["config"]["model"]["experts"] == 2
    assert report["config"]["data"]["history"]["length"] == 3 and report["schema"]["history"] == 3
    assert report["config"]["data"]["log"] == str(sim / "behaviour.parquet")  # YAML paths still from its folder


@pytest.mark.parametrize("item,message", [
    ("optim.lrr=1", "optim: unknown field 'lrr'"),
    ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
    ("optim", "--set expects KEY=VALUE"),
    ("features.3.dim=4", "features.3 is not an entry of a 1-entry list"),
    ("optim.epochs.x=1", "optim.epochs is a value, not a section"),
    ("optim.lr.x=1", "optim.lr: expected a number, got dict"),
])
def test_bad_overrides_fail_with_one_line(sim, capsys, item, message):
    assert main(["rank", "train", "--config", str(sim / "rank.yaml"), "--set", item]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_resume_continues_after_the_last_epoch_and_matches_a_straight_run(sim, tmp_path, capsys):
    config = str(sim / "rank.yaml")
    straight = train_json(capsys, "--config", config, "--out", str(tmp_path / "straight"), "--set", "optim.epochs=2")
    first = train_json(capsys, "--config", config, "--out", str(tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file() and not first["train"]["resumed"]
    resumed = train_json(capsys, "--config", config, "--out", str(tmp_path / "resumed"), "--set", "optim.epochs=2", "--resume")
    assert resumed["train"]["resumed"] and resumed["train"]["epochs"] == 2
    assert [e["epoch"] for e in resumed["train"]["history"]] == [1, 2]
    assert resumed["train"]["history"][0]["loss"] == first["train"]["history"][0]["loss"]
    assert resumed["train"]["history"][1]["steps"] == straight["train"]["history"][1]["steps"]  # only epoch 2 ran again
    np.testing.assert_allclose(resumed["train"]["history"][1]["loss"], straight["train"]["history"][1]["loss"], rtol=1e-6)
    assert resumed["metrics"] == straight["metrics"]


def test_load_config_takes_overrides_in_python(sim):
    cfg = load_config(sim / "rank.yaml", ["optim.lr=0.01", "model.embedding_dim=4"])
    assert cfg.optim.lr == 0.01 and cfg.model.embedding_dim == 4
    assert load_config(cfg, ["optim.batch_size=64"]).optim.batch_size == 64
