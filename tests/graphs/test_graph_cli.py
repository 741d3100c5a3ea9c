import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from graph_data import community_log

from mmrec.cli import main
from mmrec.graphs import load_graph, read_expansions, read_node_embeddings


def test_graph_build_expand_train_export(tmp_path, capsys):
    table, _, _ = community_log(n_users=50, n_authors=9, seed=4)
    pq.write_table(table, tmp_path / "live-behaviour.parquet")
    graph_dir, run_dir = tmp_path / "graph", tmp_path / "run"
    assert main(["graph", "build", "--logs", str(tmp_path), "--out", str(graph_dir), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["nodes"] == {"user": 50, "author": 9} and built["log_rows"] == len(table)
    assert load_graph(graph_dir)["user", "gifts", "author"].edge_index.shape[1] == built["edges"]["user__gifts__author"]
    out = tmp_path / "exp.parquet"
    assert main(["graph", "expand", "--graph", str(graph_dir), "--metapath", "user>author>author", "--k", "3",
                 "--out", str(out)]) == 0
    assert "user>author>author" in capsys.readouterr().out
    expansions = read_expansions(out)
    assert set(expansions.column("metapath").to_pylist()) == {"user>author>author"}
    assert max(len(x) for x in expansions.column("dst_ids").to_pylist()) <= 3
    assert main(["graph", "train", "--graph", str(graph_dir), "--out", str(run_dir), "--dim", "16", "--epochs", "2",
                 "--fanouts", "4,2", "--batch-size", "32", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert len(trained["report"]["epoch_loss"]) == 2
    assert main(["graph", "export", "--run", str(run_dir), "--out", str(tmp_path / "emb.parquet")]) == 0
    assert "exported 9 author, 50 user embeddings (16-d)" in capsys.readouterr().out
    embeddings = read_node_embeddings(tmp_path / "emb.parquet")
    assert embeddings["user"][1].shape == (50, 16) and embeddings["author"][0].tolist() == list(range(9))
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.random.default_rng(0).normal(size=9 * 5).astype(np.float32)), 5)
    pq.write_table(pa.table({"author_id": pa.array(range(9), pa.int64()), "fused": vectors}), tmp_path / "authors-emb.parquet")
    assert main(["graph", "train", "--graph", str(graph_dir), "--out", str(tmp_path / "run2"), "--author-emb",
                 str(tmp_path / "authors-emb.parquet"), "--dim", "8", "--epochs", "1", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["features"] == {"authors_with_vector": 9, "authors": 9, "rows_skipped": 0}


def test_graph_cli_errors(tmp_path, capsys):
    table, _, _ = community_log(n_users=10, n_authors=3, seed=0)
    pq.write_table(table.drop(["gift"]), tmp_path / "log.parquet")
    assert main(["graph", "build", "--logs", str(tmp_path / "log.parquet"), "--out", str(tmp_path / "g")]) == 1
    assert "missing column(s) ['gift']" in capsys.readouterr().err
    assert main(["graph", "expand", "--graph", str(tmp_path), "--out", str(tmp_path / "e.parquet")]) == 2
    assert "not a graph folder" in capsys.readouterr().err
    pq.write_table(table, tmp_path / "log.parquet")
    assert main(["graph", "build", "--logs", str(tmp_path / "log.parquet"), "--out", str(tmp_path / "g")]) == 0
    with pytest.raises(SystemExit) as exit_:  # argparse rejects the value before any work
        main(["graph", "train", "--graph", str(tmp_path / "g"), "--out", str(tmp_path / "r"), "--fanouts", "a,b"])
    assert exit_.value.code == 2 and "--fanouts" in capsys.readouterr().err
    assert main(["graph", "expand", "--graph", str(tmp_path / "g"), "--metapath", "user>user", "--out", str(tmp_path / "e.parquet")]) == 2
