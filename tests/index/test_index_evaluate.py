"""mmrec index eval: recall@1/10/100 vs exact, QPS, the recall-vs-QPS curve and its PNG."""

import pytest

from mmrec.errors import UsageError
from mmrec.index import build_index
from mmrec.pipelines.index import evaluate_index


def test_eval_reports_recall_qps_and_writes_the_curve(tmp_path, emb_dir, fresh_queries):
    build_index(emb_dir, tmp_path / "idx", "faiss:IVF64,Flat", progress=False, n_queries=300)
    report = evaluate_index(tmp_path / "idx", n_queries=300, out_json=tmp_path / "eval.json")
    assert set(report["recall"]) == {"1", "10", "100"} and report["queries_from"].startswith("index rows")
    assert report["recall"]["10"] >= 0.95 and report["qps"] > 0 and report["ms_per_query"] > 0
    curve = report["curve"]
    assert [p["value"] for p in curve] == sorted(p["value"] for p in curve) and curve[0]["value"] == 1
    assert curve[-1]["recall"] >= 0.999 and curve[-1]["recall"] >= curve[0]["recall"]
    png = tmp_path / "idx" / "recall-qps.png"
    assert report["png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "eval.json").is_file()
    given = evaluate_index(tmp_path / "idx", queries=fresh_queries, ks=(1, 10), png=tmp_path / "c.png")
    assert given["queries_from"] == "given" and given["recall"]["10"] >= 0.9


def test_eval_of_a_tree_and_of_an_index_built_from_arrays(tmp_path, topics_data):
    x, _, keys = topics_data
    tree = build_index(x, None, "tree", keys=keys, branching=16, progress=False, n_queries=200)
    report = evaluate_index(tree, x, n_queries=200, ks=(1, 10))
    assert report["kind"] == "tree" and report["recall"]["10"] >= 0.9 and report["curve"]
    with pytest.raises(UsageError, match="pass the embeddings as data="):
        evaluate_index(tree)
    with pytest.raises(UsageError, match="the embeddings hold 100 vectors, the index 4000"):
        evaluate_index(tree, x[:100], n_queries=10)
