import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from graph_data import community_log, log_table, write_log

from mmrec.errors import InputError, UsageError
from mmrec.graphs import GraphConfig, build_graphs, load_graph, save_graph, swing_scores

# (user, author, watch, gift, gift_value[, domain]); hand-countable
ROWS = [
    (0, 0, 1, 1, 2.0), (0, 0, 1, 1, 3.0), (0, 1, 1, 1, 1.0), (0, 2, 1, 0, 0.0),
    (1, 0, 1, 1, 5.0), (1, 1, 1, 1, 1.0), (1, 2, 1, 1, 1.0), (1, 2, 1, 0, 0.0),
    (2, 1, 1, 1, 4.0), (2, 2, 1, 1, 1.0), (3, 3, 1, 0, 0.0), (3, 3, 0, 0, 0.0, "video"),
]


def _edges(graph, edge_type, attr="edge_weight"):
    index, weight = graph[edge_type].edge_index, graph[edge_type][attr]
    return {(int(s), int(d)): float(w) for s, d, w in zip(index[0], index[1], weight)}


def test_build_counts_edges_by_hand(tmp_path):
    graph = build_graphs(write_log(tmp_path / "log.parquet", ROWS))
    assert graph["user"].num_nodes == 4 and graph["author"].num_nodes == 4
    assert graph["user"].node_id.tolist() == [0, 1, 2, 3]
    assert _edges(graph, ("user", "gifts", "author")) == {(0, 0): 2, (0, 1): 1, (1, 0): 1, (1, 1): 1, (1, 2): 1, (2, 1): 1, (2, 2): 1}
    assert _edges(graph, ("user", "gifts", "author"), "edge_value")[(0, 0)] == 5.0
    back = _edges(graph, ("author", "gifted_by", "user"))
    assert back == {(a, u): w for (u, a), w in _edges(graph, ("user", "gifts", "author")).items()}
    assert _edges(graph, ("user", "watches", "author")) == {(0, 0): 2, (0, 1): 1, (0, 2): 1, (1, 0): 1, (1, 1): 1,
                                                           (1, 2): 2, (2, 1): 1, (2, 2): 1, (3, 3): 1}
    assert graph["user"].gift_count.tolist() == [3, 3, 2, 0]
    assert graph["author"].gift_count.tolist() == [3, 3, 2, 0]
    by_value = build_graphs(write_log(tmp_path / "log.parquet", ROWS), config={"gift_weight": "value"})
    assert _edges(by_value, ("user", "gifts", "author"))[(1, 0)] == 5.0


def test_swing_on_a_hand_made_graph():
    # gifting baskets: u0 {0, 1}, u1 {0, 1, 2}, u2 {1, 2} (as in ROWS).
    # s(0,1): users {u0, u1}: w0 w1 / (1 + |{0,1}|) = (2 ** -.5 * 3 ** -.5) / 3; s(1,2) likewise with {u1, u2};
    # s(0,2): only u1 gifts both -> no pair of users -> 0, so no edge.
    hand = 1 / (3 * math.sqrt(6))
    graph = build_graphs(log_table(ROWS))
    assert _edges(graph, ("author", "swing", "author")) == pytest.approx({(0, 1): hand, (1, 0): hand, (1, 2): hand, (2, 1): hand})
    # alpha 0 and user_power 0: s(i,j) = sum over user pairs of 1 / overlap
    baskets = [np.array([0, 1]), np.array([0, 1, 2]), np.array([1, 2]), np.array([0, 1])]
    got = {(int(i), int(j)): float(s) for a, b, c in swing_scores(baskets, 3, alpha=0.0, user_power=0.0) for i, j, s in zip(a, b, c)}
    # pairs sharing 0 and 1: (u0,u1): 1/2, (u0,u3): 1/2, (u1,u3): 1/2 -> 1.5; sharing 1 and 2: (u1,u2): 1/2
    assert got == pytest.approx({(0, 1): 1.5, (1, 0): 1.5, (1, 2): 0.5, (2, 1): 0.5})


def test_swing_keeps_top_n_best_first():
    rng = np.random.default_rng(1)
    baskets = [np.unique(rng.integers(0, 12, 5)) for _ in range(60)]
    for items, partners, scores in swing_scores(baskets, 12, top_n=3):
        assert len(partners) <= 3 and (np.diff(scores) <= 0).all() and (partners != items).all()


def test_build_is_the_same_streamed_in_small_batches_and_from_several_inputs(tmp_path):
    table, _, _ = community_log(n_users=40, n_authors=9, seed=3)
    whole = build_graphs(table)
    small = build_graphs(table, config=GraphConfig(batch_rows=7, merge_rows=5))
    half = len(table) // 2
    pq.write_table(table.slice(0, half), tmp_path / "a.parquet")
    pq.write_table(table.slice(half), tmp_path / "b.parquet")
    split = build_graphs([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    for other in (small, split):
        for edge_type in whole.edge_types:
            assert torch.equal(whole[edge_type].edge_index, other[edge_type].edge_index), edge_type
            assert torch.allclose(whole[edge_type].edge_weight, other[edge_type].edge_weight), edge_type


def test_domains_filter_and_explicit_node_counts(tmp_path):
    graph = build_graphs(log_table(ROWS), config={"domains": ["video"], "n_users": 10, "n_authors": 5})
    assert graph["user"].num_nodes == 10 and graph["author"].num_nodes == 5
    assert _edges(graph, ("user", "watches", "author")) == {}
    assert graph[("user", "gifts", "author")].edge_index.shape == (2, 0)
    pq.write_table(pa.table({"user_id": pa.array(range(7), pa.int64())}), tmp_path / "users.parquet")
    graph = build_graphs(log_table(ROWS), config={"users": str(tmp_path / "users.parquet"), "domains": "live"})
    assert graph["user"].num_nodes == 7 and graph["author"].num_nodes == 4
    assert (3, 3) in _edges(graph, ("user", "watches", "author"))


def test_graph_round_trips_through_safetensors(tmp_path):
    graph = build_graphs(log_table(ROWS))
    loaded = load_graph(save_graph(graph, tmp_path / "g", meta={"config": {"k": 1}}))
    assert loaded.meta == {"config": {"k": 1}} and loaded.log_rows == len(ROWS)
    assert set(loaded.edge_types) == set(graph.edge_types)
    for edge_type in graph.edge_types:
        for key, value in graph[edge_type].items():
            assert torch.equal(loaded[edge_type][key], value)
    assert loaded["author"].num_nodes == 4 and torch.equal(loaded["user"].gift_count, graph["user"].gift_count)
    with pytest.raises(UsageError, match="not a graph folder"):
        load_graph(tmp_path)


def _bad(table, column, values):
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(column), pa.array(values, table.schema.field(column).type))


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"log.parquet: missing column\(s\) \['gift_value'\]"),
    ("string_ids", r"column 'user_id' has type string, expected integer"),
    ("negative_value", r"column 'gift_value' has negative or non-finite values \(1 rows; first at row 2: .*'gift_value': -1.0"),
    ("stray_value", r"column 'gift_value' is > 0 on rows where gift == 0 .*row 3:"),
    ("null_id", r"column 'author_id' has nulls .*row 5:"),
    ("negative_id", r"column 'user_id' has negative ids"),
    ("too_large_id", r"column 'author_id' has ids outside 0..2 .*row 10:"),
    ("unknown_author", r"column 'author_id' has author ids absent from the authors table .*row 3: .*'author_id': 2"),
])
def test_malformed_logs_raise_a_clear_error(tmp_path, case, pattern):
    table = log_table(ROWS)
    config = {}
    if case == "missing":
        table = table.drop(["gift_value"])
    elif case == "string_ids":
        table = table.set_column(0, "user_id", pa.array([str(u) for u in table.column("user_id").to_pylist()]))
    elif case == "negative_value":
        table = _bad(table, "gift_value", [-1.0 if i == 2 else v for i, v in enumerate(table.column("gift_value").to_pylist())])
    elif case == "stray_value":
        table = _bad(table, "gift_value", [1.0 if i == 3 else v for i, v in enumerate(table.column("gift_value").to_pylist())])
    elif case == "null_id":
        table = _bad(table, "author_id", [None if i == 5 else v for i, v in enumerate(table.column("author_id").to_pylist())])
    elif case == "negative_id":
        table = _bad(table, "user_id", [-3 if i == 7 else v for i, v in enumerate(table.column("user_id").to_pylist())])
    elif case == "too_large_id":
        config = {"n_authors": 3}
    else:
        pq.write_table(pa.table({"author_id": pa.array([0, 1, 3], pa.int64()), "community": pa.array([0, 0, 1], pa.int64())}),
                       tmp_path / "authors.parquet")
        config = {"authors": str(tmp_path / "authors.parquet")}
    pq.write_table(table, tmp_path / "log.parquet", row_group_size=4)
    with pytest.raises(InputError, match=pattern):
        build_graphs(tmp_path / "log.parquet", config=config)


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        build_graphs(tmp_path / "nope.parquet")
    with pytest.raises(UsageError, match="gift_weight"):
        build_graphs(log_table(ROWS), config={"gift_weight": "log"})
    with pytest.raises(UsageError, match="graph config: unknown field"):
        build_graphs(log_table(ROWS), config={"topn": 3})
    with pytest.raises(InputError, match="no rows"):
        build_graphs(log_table(ROWS).slice(0, 0))
