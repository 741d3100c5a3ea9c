"""The graphs on the SYNTHETIC live simulator's output (the issue-8 contract between the two)."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mmrec.graphs import build_graphs, expand_metapaths
from mmrec.synthetic.live_sim import simulate_live


@pytest.mark.parametrize("seed", [0, 1])
def test_swing_and_expansion_recover_the_planted_co_gifting_communities(tmp_path, seed):
    # SYNTHETIC: a small world with a strong community bonus on gifting (gift_community 3 logits)
    simulate_live(tmp_path, users=600, authors=40, communities=4, days=4, video_ratio=1.0, gift_rate=0.05,
                  gift_community=3.0, seed=seed)
    community = pq.read_table(tmp_path / "authors.parquet").sort_by("author_id").column("community").to_numpy()
    graph = build_graphs(tmp_path, config={"authors": str(tmp_path / "authors.parquet"), "users": str(tmp_path / "users.parquet")})
    assert graph["author"].num_nodes == 40 and graph["user"].num_nodes == 600
    chance = np.mean([(community == c).sum() - 1 for c in community]) / (len(community) - 1)
    src, dst = graph["author", "swing", "author"].edge_index.numpy()
    weight = graph["author", "swing", "author"].edge_weight.numpy()
    assert len(src) > 20
    assert (weight * (community[src] == community[dst])).sum() / weight.sum() > 2 * chance
    table = expand_metapaths(graph, "author>user>author", k=5)  # authors gifted by the same users
    rows = table.to_pylist()
    same = np.mean([np.mean(community[r["dst_ids"]] == community[r["src_id"]]) for r in rows])
    assert len(rows) > 30 and same > 1.5 * chance


def test_graph_train_finds_author_vectors_of_extracted_live_segments(tmp_path, capsys):
    """README chain: `mmrec live simulate --shards` -> `mmrec extract` (segment-keyed emb-*.parquet) ->
    `mmrec graph train --author-emb emb/ --logs ...`: segment keys reach their authors through the log."""
    import json

    from mmrec.cli import main
    from mmrec.graphs import read_author_features
    from mmrec.store import write_embeddings

    live = tmp_path / "live"
    simulate_live(live, users=150, authors=12, communities=3, days=2, video_ratio=1.0, seed=0)  # SYNTHETIC
    segments = pq.read_table(live / "segments.parquet", columns=["item_id", "author_id"])
    keys = segments.column("item_id").to_pylist()
    owner = dict(zip(keys, segments.column("author_id").to_pylist()))
    rng = np.random.default_rng(0)
    vectors = {k: (np.eye(12)[owner[k]] + 0.1 * rng.normal(size=12)).astype(np.float32) for k in keys}
    half = len(keys) // 2  # two shards, as extract writes one file per input shard
    write_embeddings(tmp_path / "emb", {"segments-000000": keys[:half], "segments-000001": keys[half:]}, vectors,
                     "fused", info={"encoders": "test"})
    watched = set(pq.read_table(live / "live-behaviour.parquet", columns=["item_id"]).column(0).to_pylist())
    for logs, seen in ((live / "live-behaviour.parquet", [k for k in keys if k in watched]), (live / "segments.parquet", keys)):
        features, report = read_author_features(tmp_path / "emb", 12, logs=logs)
        authors = sorted({owner[k] for k in seen})
        assert report == {"authors_with_vector": len(authors), "authors": 12, "rows_skipped": len(keys) - len(seen)}
        for a in authors:
            np.testing.assert_allclose(features[a].numpy(), np.mean([vectors[k] for k in seen if owner[k] == a], 0), rtol=1e-5)
        assert int(features.argmax(1)[authors].eq(torch.tensor(authors)).sum()) == len(authors)
    assert main(["graph", "build", "--logs", str(live), "--authors", str(live / "authors.parquet"), "--out", str(tmp_path / "g"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["graph", "train", "--graph", str(tmp_path / "g"), "--author-emb", str(tmp_path / "emb"), "--logs", str(live),
                 "--out", str(tmp_path / "gcl"), "--dim", "8", "--epochs", "1", "--fanouts", "4,2", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["features"]["authors_with_vector"] == len({owner[k] for k in keys if k in watched}) > 6
