"""FAISS indexes: recall against exact search, streaming from Parquet, incremental add, validation."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from index_data import write_shard

from mmrec.errors import UsageError
from mmrec.index import add_to_index, build_index, load_index, search_index
from mmrec.index.exact import exact_knn, recall_at

FAST = {"progress": False, "n_queries": 300}


def _recall_vs_exact(index, x, queries, k=10):
    truth = exact_knn([x], queries, k)[1]
    return recall_at(index.search(queries, k)[1], truth, k)


@pytest.mark.parametrize("kind,family", [("auto", "flat"), ("faiss:IVF64,Flat", "ivf_flat"), ("faiss:HNSW16", "hnsw"), ("faiss:IVF32,SQ8", "ivf_sq8")])
def test_recall_at_10_reaches_the_target_on_held_out_queries(tmp_path, emb_dir, fresh_queries, kind, family):
    build_index(emb_dir, tmp_path / "idx", kind, target_recall=0.95, **FAST)
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["family"] == family and info["n"] == 4000
    assert info["measured"]["recall"]["10"] >= 0.95 and info["measured"]["qps"] > 0
    assert set(info["times"]) >= {"train_s", "add_s", "tune_s", "build_s"}
    # fresh queries from the same planted topics, never seen at build time
    x = np.concatenate([pq.read_table(p).column("fused").combine_chunks().flatten().to_numpy().reshape(-1, 32) for p in sorted(emb_dir.glob("emb-*.parquet"))])
    assert _recall_vs_exact(load_index(tmp_path / "idx"), x, fresh_queries) >= 0.93
    if info["tuning"]["param"]:
        assert info["tuning"]["target_reached"]
        value = info["tuning"]["value"]
        assert info["search_params"] == {info["tuning"]["param"]: value}


def test_ids_map_rows_to_keys_and_search_by_key(tmp_path, emb_dir, topics_data):
    x, labels, keys = topics_data
    build_index(emb_dir, tmp_path / "idx", "faiss:IVF64,Flat", **FAST)
    ids = pq.read_table(tmp_path / "idx" / "ids.parquet")
    assert ids.column("row").to_pylist() == list(range(4000)) and ids.column("key").to_pylist() == keys
    hits = search_index(tmp_path / "idx", keys=["item-00042"], k=5)[0]
    assert hits[0]["key"] == "item-00042" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(labels[int(h["key"][5:])] == labels[42] for h in hits)  # neighbours share the planted topic


def test_loading_memory_maps_and_a_mapped_index_refuses_add(tmp_path, topics_data):
    x, _, _ = topics_data
    build_index(x, tmp_path / "idx", "faiss:IVF64,Flat", **FAST)
    mapped = load_index(tmp_path / "idx")
    assert mapped.mmapped
    with pytest.raises(UsageError, match="memory-mapped"):
        mapped.add(x[:10], keys=[f"new-{i}" for i in range(10)])
    assert not load_index(tmp_path / "idx", mmap=False).mmapped


@pytest.mark.parametrize("kind", ["faiss:Flat", "faiss:IVF64,Flat"])
def test_incremental_add_equals_rebuild_on_the_union(tmp_path, topics_data, fresh_queries, kind):
    x, _, keys = topics_data
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_shard(a / "emb-a.parquet", keys[:3000], x[:3000])
    write_shard(b / "emb-b.parquet", keys[3000:], x[3000:])
    build_index(a, tmp_path / "added", kind, **FAST)
    event = add_to_index(tmp_path / "added", b, progress=False)
    assert event["rows"] == 1000 and event["n"] == 4000
    union = build_index([a / "emb-a.parquet", b / "emb-b.parquet"], tmp_path / "union", kind, **FAST)
    added = load_index(tmp_path / "added")
    assert added.n == union.n == 4000 and added.keys.to_pylist() == union.keys.to_pylist()
    assert json.loads((tmp_path / "added" / "index.json").read_text())["adds"][0]["rows"] == 1000
    queries = fresh_queries
    if kind == "faiss:Flat":  # exact: identical answers
        np.testing.assert_array_equal(added.search(queries, 10)[1], union.search(queries, 10)[1])
    else:  # IVF trained on different samples: same vectors stored, same recall within noise
        rows = np.arange(0, 4000, 97)
        np.testing.assert_allclose(added.vectors(rows), union.vectors(rows), atol=1e-6)
        assert abs(_recall_vs_exact(added, x, queries) - _recall_vs_exact(union, x, queries)) < 0.03
    assert search_index(added, keys=["item-03999"], k=1)[0][0]["key"] == "item-03999"


def test_null_vectors_are_skipped_and_row_ids_stay_dense(tmp_path, topics_data):
    x, _, keys = topics_data
    write_shard(tmp_path / "emb-n.parquet", keys[:500], x[:500], null_rows=[0, 7, 499])
    index = build_index(tmp_path, None, "faiss:Flat", **FAST)
    assert index.n == 497 and index.info["skipped_null_rows"] == 3
    assert index.keys_of(np.array([[0, 6]])) == [["item-00001", "item-00008"]]


def test_bad_inputs_fail_early_with_one_clear_message(tmp_path, emb_dir, topics_data):
    x, _, keys = topics_data
    cases = [
        (lambda: build_index(emb_dir, None, column="image", **FAST), "no column 'image'"),
        (lambda: build_index(tmp_path / "nowhere", None, **FAST), "not found"),
        (lambda: build_index(np.zeros((0, 8)), None, **FAST), "non-empty"),
        (lambda: build_index(np.full((10, 4), np.nan), None, **FAST), "NaN"),
        (lambda: build_index(x, None, "faiss:IVF64,Bogus", **FAST), "bad FAISS factory string"),
        (lambda: build_index(x[:100], None, "faiss:IVF4096,Flat", **FAST), "cannot train"),
        (lambda: build_index(x, None, "nope", **FAST), "unknown index kind 'nope'"),
        (lambda: build_index(x, None, target_recall=1.5, **FAST), "target_recall"),
        (lambda: build_index(x[:4], None, keys=["a", "b", "a", "c"], **FAST), "key 'a' appears more than once"),
    ]
    for call, message in cases:
        with pytest.raises(UsageError, match=message):
            call()
    bad = tmp_path / "bad"
    bad.mkdir()
    v = x[:10].copy()
    v[3, 0] = np.nan
    write_shard(bad / "emb-x.parquet", keys[:10], v)
    with pytest.raises(UsageError, match="item-00003.*NaN"):
        build_index(bad, None, "faiss:Flat", **FAST)
    build_index(x[:200], tmp_path / "idx", "faiss:Flat", **FAST)
    with pytest.raises(UsageError, match="dim 16, expected 32"):
        add_to_index(tmp_path / "idx", np.ones((5, 16)), keys=list("abcde"), progress=False)
    with pytest.raises(UsageError, match="appears more than once"):
        add_to_index(tmp_path / "idx", x[:2], keys=["1", "zz"], progress=False)
    assert load_index(tmp_path / "idx").n == 200  # a failed add leaves the saved index untouched


def _faiss_gpus():
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


@pytest.mark.gpu
@pytest.mark.skipif(_faiss_gpus() == 0, reason="needs faiss-gpu and a GPU")
def test_gpu_build_and_search_match_the_cpu_recall(tmp_path, topics_data, fresh_queries):
    x, _, _ = topics_data
    built = build_index(x, tmp_path / "idx", "faiss:IVF64,Flat", gpu=True, **FAST)
    assert built.info["device"].startswith("gpu") and built.info["measured"]["recall"]["10"] >= 0.95
    on_gpu = load_index(tmp_path / "idx", gpu=True)
    assert on_gpu.on_gpu and _recall_vs_exact(on_gpu, x, fresh_queries) >= 0.93


@pytest.mark.skipif(_faiss_gpus() > 0, reason="checks the message on machines without a GPU")
def test_asking_for_a_gpu_without_one_is_a_usage_error(topics_data):
    with pytest.raises(UsageError, match="no GPU"):
        build_index(topics_data[0], None, "faiss:Flat", gpu=True, **FAST)

