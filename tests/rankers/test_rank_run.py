"""`mmrec rank train --set/--resume`, `rank evaluate`, `rank predict` and `rank export` on a saved run."""

import json

import numpy as np
import pytest
import yaml
from rank_data import TINY_SIM, tiny_rank_config

from mmrec.cli import main
from mmrec.rankers import load_config, simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("rankrun")
    simulate(root, **TINY_SIM)
    config = tiny_rank_config()
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


@pytest.fixture(scope="module")
def run(sim, tmp_path_factory):
    from mmrec.pipelines.rank import train

    out = tmp_path_factory.mktemp("esmm-run")
    train(sim / "rank.yaml", out=out, progress=False, overrides=["model={\"name\": \"esmm\", \"embedding_dim\": 8, \"tower\": [16]}"])
    return out


def test_evaluate_without_a_log_gives_the_numbers_of_metrics_json(run, capsys):
    assert main(["rank", "evaluate", "--run", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())
    assert report["model"] == "esmm" and report["split"] == "test" and report["rows"] == saved["test"]["rows"]
    assert report["metrics"] == saved["metrics"]


def test_evaluate_and_predict_on_another_log(run, sim, tmp_path, capsys):
    import pyarrow.parquet as pq

    log = pq.read_table(sim / "behaviour.parquet")
    perm = np.random.default_rng(0).permutation(len(log))
    shuffled = log.take(perm)  # predict keeps the file's row order
    pq.write_table(shuffled, tmp_path / "shuffled.parquet")
    assert main(["rank", "evaluate", "--run", str(run), "--log", str(tmp_path / "shuffled.parquet"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "all" and report["rows"] == len(log) and set(report["metrics"]) == {"click", "like", "follow"}

    unlabelled = shuffled.drop(["like", "follow"])  # outcomes unknown; click stays: it is the history's positive label
    pq.write_table(unlabelled, tmp_path / "new.parquet")
    out = tmp_path / "scores" / "p.parquet"
    assert main(["rank", "predict", "--run", str(run), "--log", str(tmp_path / "new.parquet"), "--out", str(out)]) == 0
    assert "probs_click, probs_like, probs_follow" in capsys.readouterr().out
    scores = pq.read_table(out)
    assert scores.column_names == ["user_id", "item_id", "author_id", "domain", "ts", "probs_click", "probs_like", "probs_follow"]
    assert scores.column("user_id").to_pylist() == shuffled.column("user_id").to_pylist()
    p = np.stack([scores.column(f"probs_{t}").to_numpy() for t in ("click", "like", "follow")], 1)
    assert ((p > 0) & (p < 1)).all() and (p[:, 1:] <= p[:, :1] + 1e-6).all()  # ESMM: pCTCVR <= pCTR

    # the same rows scored in Python, in time order, give the same numbers
    from mmrec.pipelines.rank import load_run, predict_run

    loaded = load_run(run)
    predict_run(loaded, sim / "behaviour.parquet", tmp_path / "in-order.parquet")
    ordered = pq.read_table(tmp_path / "in-order.parquet")
    reference = np.stack([ordered.column(f"probs_{t}").to_numpy() for t in ("click", "like", "follow")], 1)
    np.testing.assert_allclose(p, reference[perm], rtol=1e-5)  # file row i of the shuffled log is log row perm[i]


def test_predict_needs_the_history_label_and_known_domains(run, sim, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    log = pq.read_table(sim / "behaviour.parquet")
    pq.write_table(log.drop(["click"]), tmp_path / "noclick.parquet")
    assert main(["rank", "predict", "--run", str(run), "--log", str(tmp_path / "noclick.parquet"), "--out", str(tmp_path / "x.parquet")]) == 1
    assert "missing column 'click', the history's positive label" in capsys.readouterr().err
    other = log.set_column(log.column_names.index("domain"), "domain", pa.array(["shorts"] * len(log)))
    pq.write_table(other, tmp_path / "shorts.parquet")
    assert main(["rank", "evaluate", "--run", str(run), "--log", str(tmp_path / "shorts.parquet")]) == 1
    assert "domain 'shorts' was not in the run's training log" in capsys.readouterr().err
    assert main(["rank", "evaluate", "--run", str(tmp_path)]) == 2
    assert "not a run folder written by mmrec rank train" in capsys.readouterr().err
