"""Wired ranker inputs on SYNTHETIC logs with planted structure: QARM code cross features and
user-side vectors (the files of `mmrec quantize` and `mmrec cdr export` / `mmrec graph export`)
each beat the same ranker without them; early stopping on a validation split keeps the best epoch."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrec.errors import UsageError
from mmrec.pipelines.rank import train
from mmrec.quantization.files import save_codes
from mmrec.rankers import auc, load_config, load_ranker, predict, prepare_data, simulate
from mmrec.rankers.features import UserVectorProvider

OPTIM = {"lr": 0.003, "batch_size": 256, "epochs": 3, "seed": 0, "threads": 1}


def write_log(path, user, item, click, seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 10**6, len(user)))
    pq.write_table(pa.table({"user_id": user, "item_id": item, "author_id": np.zeros(len(user), np.int64),
                             "domain": ["video"] * len(user), "ts": ts, "click": click.astype(np.int8)}), path)


def vectors_column(v):
    return pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).ravel()), v.shape[1])


@pytest.fixture(scope="module")
def coded_log(tmp_path_factory):
    """SYNTHETIC: items carry 3-level codes (level 1 = topic); a user clicks items of their favourite
    topic far more often, and half of the items are shown only in the test period (cold there)."""
    root = tmp_path_factory.mktemp("cross")
    rng = np.random.default_rng(0)
    n_users, n_items, per_user = 300, 1200, 40
    codes = np.stack([rng.integers(0, 4, n_items), rng.integers(0, 4, n_items), rng.integers(0, 4, n_items)], 1)
    save_codes(root / "codes.parquet", [f"item-{i:06d}" for i in range(n_items)], codes, info={"codebook_sizes": [4, 4, 4]})
    favourite = rng.integers(0, 4, n_users)
    user = np.repeat(np.arange(n_users), per_user)
    rng.shuffle(user)
    late = np.arange(len(user)) >= int(0.8 * len(user))  # the test period (rows are written in time order)
    item = np.where(late & (rng.random(len(user)) < 0.5), rng.integers(n_items // 2, n_items, len(user)),
                    rng.integers(0, n_items // 2, len(user)))
    logit = -1.5 + 3.0 * (codes[item, 0] == favourite[user])
    write_log(root / "log.parquet", user, item, rng.random(len(user)) < 1 / (1 + np.exp(-logit)), seed=1)
    return root


def test_code_cross_features_beat_the_same_ranker_without_them(coded_log):
    def run(tag, features):
        config = {"data": {"log": str(coded_log / "log.parquet"), "tasks": ["click"], "history": {"length": 20}},
                  "features": features, "model": {"name": "pepnet", "embedding_dim": 8, "tower": [32]}, "optim": OPTIM}
        return train(config, out=coded_log / tag, progress=False)

    cross = run("cross", [{"name": "sid_x", "kind": "code_cross", "path": str(coded_log / "codes.parquet"), "levels": 3}])
    plain = run("plain", [])
    with_cross, without = cross["metrics"]["click"]["all"]["auc"], plain["metrics"]["click"]["all"]["auc"]
    assert with_cross > without + 0.15, (with_cross, without)  # seed 0: 0.737 against 0.504
    assert cross["schema"]["cross"] == {"sid_x": [4, 4, 4]} and cross["schema"]["codes"] == {}
    assert cross["features"]["sid_x"]["kind"] == "code_cross" and cross["features"]["sid_x"]["misses"] == 0
    ranker = load_ranker(coded_log / "cross")  # the checkpoint rebuilds the cross module
    assert "sid_x" in ranker.inputs.cross


def test_code_cross_needs_a_history(coded_log):
    with pytest.raises(UsageError, match="code_cross feature compares the candidate with the history"):
        load_config({"data": {"log": str(coded_log / "log.parquet"), "tasks": ["click"], "history": {"length": 0}},
                     "features": [{"name": "x", "kind": "code_cross", "path": str(coded_log / "codes.parquet")}],
                     "model": {"name": "mmoe"}})


@pytest.fixture(scope="module")
def user_log(tmp_path_factory):
    """SYNTHETIC: every user has a planted vector v_u and every item a topic t; a click depends on
    v_u[t] only. A quarter of the users appear only in the test period (cold: their ids are unknown)."""
    root = tmp_path_factory.mktemp("users")
    rng = np.random.default_rng(0)
    n_users, n_items, rows = 400, 100, 16000
    v = rng.normal(0, 1, (n_users, 4))
    topic = rng.integers(0, 4, n_items)
    cut = int(0.8 * rows)
    user = np.r_[rng.integers(0, 300, cut), rng.integers(0, n_users, rows - cut)]  # users 300.. only in the test period
    item = rng.integers(0, n_items, rows)
    logit = 2.0 * v[user, topic[item]]
    write_log(root / "log.parquet", user, item, rng.random(rows) < 1 / (1 + np.exp(-logit)), seed=2)
    kept = np.arange(n_users) != 7  # one user missing from the file: zeros, counted
    pq.write_table(pa.table({"key": [f"user-{u}" for u in np.flatnonzero(kept)], "fused": vectors_column(v[kept])}),
                   root / "cdr-users.parquet")  # the layout of `mmrec cdr export`
    return root


def test_user_vectors_beat_the_same_ranker_without_them(user_log):
    def run(tag, features):
        config = {"data": {"log": str(user_log / "log.parquet"), "tasks": ["click"], "history": {"length": 0}},
                  "features": features, "model": {"name": "shared_bottom", "embedding_dim": 8}, "optim": OPTIM}
        return train(config, out=user_log / tag, progress=False)

    feature = {"name": "cdr", "kind": "user_dense", "path": str(user_log / "cdr-users.parquet"), "key_format": "user-{}"}
    with_users, without = run("users", [feature]), run("plain", [])
    a, b = with_users["metrics"]["click"]["all"]["auc"], without["metrics"]["click"]["all"]["auc"]
    assert a > b + 0.1, (a, b)  # seed 0: 0.830 against 0.645
    stats = with_users["features"]["cdr"]
    assert stats["kind"] == "user_dense" and stats["misses"] == (1 if 7 in _users(user_log) else 0)
    assert with_users["schema"]["user_dense"] == {"cdr": 4}
    cfg = load_config(with_users["config"])
    data = prepare_data(cfg.data, cfg.features)
    again = predict(load_ranker(user_log / "users"), data.test, data.items)
    assert auc(data.test.labels[:, 0].numpy(), again[:, 0]) == pytest.approx(a, abs=1e-6)


def _users(root):
    return set(pq.read_table(root / "log.parquet", columns=["user_id"]).column(0).to_pylist())


def test_user_vectors_from_a_graph_export_file(tmp_path):
    v = np.arange(12, dtype=np.float32).reshape(4, 3)
    pq.write_table(pa.table({"node_type": ["user", "user", "author", "author"], "node_id": [0, 1, 0, 1],
                             "vector": vectors_column(v)}), tmp_path / "graph.parquet")
    p = UserVectorProvider(tmp_path / "graph.parquet", key_column="node_id", column="vector", node_type="user")
    out = p.lookup(p.keys_of(np.array([1, 0, 5])))
    assert p.width == 3 and np.array_equal(out, np.stack([v[1], v[0], np.zeros(3)]))
    assert p.stats.misses == 1 and p.stats.requests == 3
    with pytest.raises(UsageError, match="has dim 3, expected 8"):
        UserVectorProvider(tmp_path / "graph.parquet", key_column="node_id", column="vector", dim=8)
    with pytest.raises(Exception, match="no column 'fused'"):
        UserVectorProvider(tmp_path / "graph.parquet", key_column="node_id")


def test_early_stopping_on_validation_keeps_the_best_epoch(tmp_path):
    simulate(tmp_path, users=60, items=100, authors=10, impressions=30, seed=3)
    config = {"data": {"log": str(tmp_path / "behaviour.parquet"), "tasks": ["click", "like", "follow"],
                       "history": {"length": 5}, "validation_fraction": 0.2},
              "model": {"name": "mmoe", "embedding_dim": 16},
              "optim": {"lr": 0.05, "batch_size": 64, "epochs": 30, "patience": 2, "threads": 1}}
    report = train(config, out=tmp_path / "run", progress=False)
    t = report["train"]
    assert t["stopped"] == "early_stop" and t["epochs"] < 30 and t["epochs"] == t["best_epoch"] + 2
    assert report["validation"]["rows"] > 0
    best = max(h["valid_auc"] for h in t["history"])
    assert report["validation"]["best_auc"] == pytest.approx(best)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["train"]["best_epoch"] == t["best_epoch"]
    cfg = load_config(report["config"])
    data = prepare_data(cfg.data, cfg.features)
    scores = predict(load_ranker(tmp_path / "run"), data.valid, data.items)  # the saved weights are the best epoch's
    labels, mask = data.valid.labels.numpy(), data.valid.label_mask.numpy()
    aucs = [auc(labels[mask[:, k], k], scores[mask[:, k], k]) for k in range(3)]
    assert np.nanmean(aucs) == pytest.approx(best, abs=1e-6)
    with pytest.raises(UsageError, match="patience needs validation rows"):
        load_config({**config, "data": {**config["data"], "validation_fraction": 0.0}})
