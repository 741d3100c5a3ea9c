"""The MISS tree-scorer job (mmrec index train-tree): trained from files on SYNTHETIC planted data."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from index_data import planted, write_shard

from mmrec.cli import main
from mmrec.errors import UsageError
from mmrec.index import load_index
from mmrec.pipelines.index import build, train_tree

TOPICS, PER_USER = 40, 12


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    """SYNTHETIC: 800 items in 40 small planted topics (a tree over them), and a behaviour log in which
    each of 160 users clicks 12 items of one topic (in ts order) and skips 6 random items (click 0)."""
    folder = tmp_path_factory.mktemp("train_tree")
    x, labels = planted(800, d=16, topics=TOPICS, noise=0.3, seed=4)
    write_shard(folder / "emb-items.parquet", [f"item-{i:06d}" for i in range(len(x))], x)
    build({"emb": str(folder / "emb-items.parquet"), "out": str(folder / "tree"), "kind": "tree",
           "tree": {"branching": 4, "n_queries": 100, "target_recall": 0.8}}, progress=False)
    rng = np.random.default_rng(5)
    topic = rng.integers(0, TOPICS, 160)
    users, items, clicks = [], [], []
    for u, t in enumerate(topic):
        liked = rng.choice(np.flatnonzero(labels == t), PER_USER, replace=False)
        skipped = rng.integers(0, len(x), 6)
        users += [u] * (PER_USER + 6)
        items += [*liked, *skipped]
        clicks += [1] * PER_USER + [0] * 6
    order = rng.permutation(len(users))  # the file is not in time order: ts is
    ts = np.arange(len(users), dtype=np.int64)
    log = pa.table({"user_id": pa.array(np.asarray(users)[order], pa.int64()), "item_id": pa.array(np.asarray(items)[order], pa.int64()),
                    "ts": pa.array(ts[order]), "click": pa.array(np.asarray(clicks, np.int8)[order])})
    pq.write_table(log, folder / "behaviour.parquet")
    return folder, x, labels, topic


def test_train_tree_command_learns_the_planted_topics_and_saves_the_scorer(planted_files, tmp_path, capsys, one_torch_thread):
    folder, x, labels, topic = planted_files
    tree_dir = tmp_path / "tree"
    shutil.copytree(folder / "tree", tree_dir)
    assert main(["index", "train-tree", "--index", str(tree_dir), "--log", str(folder / "behaviour.parquet"), "--holdout", "2",
                 "--history-k", "4", "--hidden", "32", "--batch-size", "64", "--epochs", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 160 and report["positives"] == 160 * PER_USER and report["pairs"] == 160 * (PER_USER - 2 - 1)
    recall = report["recall"]
    assert recall["tree"] > 0.3 and recall["tree"] > 4 * recall["untrained"] and recall["tree"] > 10 * recall["random"]
    assert report["recall_vs_exact"] > 0.6 and report["fit"]["steps"] > 0
    loaded = load_index(tree_dir)  # the scorer travels with the tree
    assert loaded.info["scorer"]["history"] and loaded.info["scorer"]["report"]["recall"] == recall
    history = np.stack([np.flatnonzero(labels == t)[:6] for t in topic[:20]])  # (20, 6): users' histories in one topic
    _, rows = loaded.recommend(None, 10, beam=16, history_rows=history)
    assert (labels[rows] == topic[:20, None]).mean() > 0.8  # a history in one cluster retrieves that cluster


def test_train_tree_with_user_vectors_from_a_parquet_file(planted_files, tmp_path, one_torch_thread):
    folder, x, labels, topic = planted_files
    shutil.copytree(folder / "tree", tmp_path / "tree")
    rng = np.random.default_rng(6)
    codes = rng.standard_normal((TOPICS, 8)).astype(np.float32)  # the user vectors live in their own space
    vectors = codes[topic] + 0.1 * rng.standard_normal((len(topic), 8)).astype(np.float32)
    write_shard(tmp_path / "users.parquet", [f"user-{u}" for u in range(100)], vectors[:100])  # 60 users have none
    report = train_tree({"index": str(tmp_path / "tree"), "log": str(folder / "behaviour.parquet"), "user_emb": str(tmp_path / "users.parquet"),
                         "holdout": 2, "scorer": {"history_k": 4, "hidden": 32, "batch_size": 64}, "loop": {"epochs": 4, "progress": False}})
    assert report["user_vectors"] == "given" and report["users"] == 100 and report["users_without_vector"] == 60
    assert "exact_knn" not in report["recall"] and report["recall"]["tree"] > 4 * report["recall"]["untrained"]
    assert load_index(tmp_path / "tree").info["scorer"]["user_dim"] == 8


def test_train_tree_errors_name_the_problem(planted_files, tmp_path):
    folder, *_ = planted_files
    with pytest.raises(UsageError, match="unknown field 'epoch'"):
        train_tree({"index": str(folder / "tree"), "log": str(folder / "behaviour.parquet"), "loop": {"epoch": 3}})
    with pytest.raises(UsageError, match="no positive 'click' events"):
        train_tree({"index": str(folder / "tree"), "log": str(folder / "behaviour.parquet"), "item_key": "other-{}"})
