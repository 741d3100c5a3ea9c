"""The graphs on the SYNTHETIC live simulator's output (the issue-8 contract between the two)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec.graphs import build_graphs, expand_metapaths
from mmrec.live_sim import simulate_live


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
