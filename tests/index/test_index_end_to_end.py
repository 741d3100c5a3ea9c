"""sample-data -> extract (tiny encoders) -> index build -> recall vs exact, and keys match the extract."""

import pyarrow.parquet as pq
import pytest

from mmrec.index import build_index, search_index
from mmrec.pipelines.extract import extract
from mmrec.pipelines.index import evaluate_index


@pytest.fixture(scope="module")
def extracted(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb")
    extract(str(sample_dir), out, image="open_clip:tiny", text="hf-text:tiny", audio="speech:tiny", num_workers=0, progress=False)
    return out


@pytest.mark.parametrize("kind", ["auto", "faiss:HNSW8", "tree"])
def test_index_over_extracted_embeddings_reaches_the_target(extracted, tmp_path, kind):
    options = {"branching": 4} if kind == "tree" else {}
    index = build_index(extracted, tmp_path / "idx", kind, target_recall=0.9, progress=False, **options)
    keys = [k for p in sorted(extracted.glob("emb-*.parquet")) for k in pq.read_table(p).column("key").to_pylist()]
    assert index.keys.to_pylist() == keys and index.n == 56  # 48 items + 8 live segments
    assert index.info["measured"]["recall"]["10"] >= 0.9
    report = evaluate_index(tmp_path / "idx", n_queries=20, ks=(1, 10))
    assert report["recall"]["10"] >= 0.9
    hits = search_index(index, keys=[keys[0]], k=3)[0]
    assert hits[0]["key"] == keys[0]
