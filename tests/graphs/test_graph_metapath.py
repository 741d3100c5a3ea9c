import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from torch_geometric.data import HeteroData

from mmrec.errors import InputError, UsageError
from mmrec.graphs import expand_metapaths, read_expansions, write_expansions


def _toy_graph(seed=0, n_users=9, n_authors=7, density=0.35):
    """A random toy graph with continuous weights (no ties): gifts, watches, swing."""
    rng = np.random.default_rng(seed)
    data = HeteroData()
    data["user"].num_nodes, data["author"].num_nodes = n_users, n_authors
    dense = {}
    for rel, (s, d) in {"gifts": ("user", "author"), "watches": ("user", "author"), "swing": ("author", "author")}.items():
        shape = (data[s].num_nodes, data[d].num_nodes)
        w = rng.random(shape) * (rng.random(shape) < density)
        if rel == "swing":
            np.fill_diagonal(w, 0)
        dense[rel] = w
        src, dst = np.nonzero(w)
        data[s, rel, d].edge_index = torch.from_numpy(np.stack([src, dst]))
        data[s, rel, d].edge_weight = torch.from_numpy(w[src, dst].astype(np.float32))
    src, dst = np.nonzero(dense["gifts"].T)
    data["author", "gifted_by", "user"].edge_index = torch.from_numpy(np.stack([src, dst]))
    data["author", "gifted_by", "user"].edge_weight = torch.from_numpy(dense["gifts"].T[src, dst].astype(np.float32))
    dense["gifted_by"] = dense["gifts"].T
    return data, {k: v.astype(np.float32).astype(np.float64) for k, v in dense.items()}


def _norm(w):
    return w / np.maximum(w.sum(1, keepdims=True), 1e-300)


def _dense_topk(product, k, exclude):
    out = {}
    for r in range(product.shape[0]):
        row = np.where(exclude[r], -np.inf, product[r])
        row[row <= 0] = -np.inf
        top = np.argsort(-row, kind="stable")[:k]
        top = top[np.isfinite(row[top])]
        if len(top):
            out[r] = (top.tolist(), row[top])
    return out


def _as_dict(table, metapath):
    rows = table.filter(pc.equal(table.column("metapath"), metapath)).to_pylist()
    return {r["src_id"]: (r["dst_ids"], np.array(r["scores"])) for r in rows}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk_nnz", [1, 5, 1 << 23])
def test_expansion_equals_the_dense_product_top_k(seed, chunk_nnz):
    graph, w = _toy_graph(seed)
    k = 3
    table = expand_metapaths(graph, ("user>author>author", "author>user>author", "user-watches>author>author"), k=k, chunk_nnz=chunk_nnz)
    uaa = _norm(w["gifts"]) @ _norm(w["swing"])
    expected = _dense_topk(uaa, k, exclude=w["gifts"] > 0)  # the authors each user already gifted
    got = _as_dict(table, "user>author>author")
    assert got.keys() == expected.keys() and len(got) > 3
    for src, (ids, scores) in expected.items():
        assert got[src][0] == ids
        np.testing.assert_allclose(got[src][1], scores, rtol=1e-5)
    aua = _norm(w["gifted_by"]) @ _norm(w["gifts"])
    expected = _dense_topk(aua, k, exclude=np.eye(len(aua), dtype=bool))  # the author itself
    got = _as_dict(table, "author>user>author")
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in expected.items()}
    watched = _dense_topk(_norm(w["watches"]) @ _norm(w["swing"]), k, exclude=w["watches"] > 0)
    assert {s: v[0] for s, v in _as_dict(table, "user-watches>author>author").items()} == {s: v[0] for s, v in watched.items()}


def test_expansion_unnormalised_is_the_raw_path_weight_product():
    graph, w = _toy_graph(2)
    got = _as_dict(expand_metapaths(graph, "author>author>author", k=2, normalize=False), "author>author>author")
    two_hop = w["swing"] @ w["swing"]
    expected = _dense_topk(two_hop, 2, exclude=np.eye(len(two_hop), dtype=bool) | (w["swing"] > 0))
    assert {s: v[0] for s, v in got.items()} == {s: v[0] for s, v in expected.items()}
    for src, (_, scores) in expected.items():
        np.testing.assert_allclose(got[src][1], scores, rtol=1e-5)


def test_expansion_store_round_trip_and_errors(tmp_path):
    graph, _ = _toy_graph(0)
    table = expand_metapaths(graph, k=4)
    assert set(table.column("metapath").to_pylist()) == {"user>author>author", "author>user>author"}
    path = write_expansions(table, tmp_path / "exp.parquet")
    assert read_expansions(path).equals(table)
    with pytest.raises(UsageError, match="no edge type"):
        expand_metapaths(graph, "user>user")
    with pytest.raises(UsageError, match="joined by"):
        expand_metapaths(graph, "user")
    with pytest.raises(UsageError, match="k and chunk_nnz"):
        expand_metapaths(graph, k=0)
    pq.write_table(table.drop(["scores"]), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="missing column"):
        read_expansions(tmp_path / "bad.parquet")


def test_chunks_keep_each_product_under_the_entry_budget():
    from mmrec.graphs.metapath import _chunks, parse_metapath, transition_matrix

    graph, _ = _toy_graph(3, n_users=40, n_authors=15)
    hops = parse_metapath("user>author>author", graph.edge_types)
    matrices = [transition_matrix(graph, hop) for hop in hops]
    ranges = _chunks(matrices, 20)
    assert ranges[0][0] == 0 and ranges[-1][1] == 40 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert 2 < len(ranges) < 40
    for start, stop in ranges:
        rows = matrices[0].to_dense()[start:stop] @ matrices[1].to_dense()
        assert stop - start == 1 or int((rows != 0).sum()) <= 20
