import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from graph_data import community_log

from mmrec.errors import InputError, UsageError
from mmrec.graphs import (
    build_graphs,
    build_model,
    embed_nodes,
    export_embeddings,
    fit_graphcl,
    nt_xent,
    read_author_features,
    read_node_embeddings,
    save_graph,
    train_graphcl,
)
from mmrec.pipelines.graph import graph_train, load_run
from mmrec.testing import with_cuda

CONFIG = {"dim": 32, "epochs": 6, "batch_size": 64, "fanouts": (8, 4)}


def _gap(embeddings, community):
    """Mean cosine within planted communities minus across them."""
    e = F.normalize(embeddings, dim=1)
    sim = e @ e.T
    same = torch.from_numpy(community[:, None] == community[None, :])
    return float(sim[same & ~torch.eye(len(e), dtype=torch.bool)].mean() - sim[~same].mean())


def test_nt_xent_matches_the_graphcl_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 4), torch.randn(5, 4)
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / 0.5
    one_way = lambda m: np.mean([-(m[n][n] - math.log(sum(math.exp(m[n][j]) for j in range(5) if j != n))) for n in range(5)])
    expected = 0.5 * (one_way(s.tolist()) + one_way(s.T.tolist()))
    assert float(nt_xent(z1, z2, 0.5)) == pytest.approx(expected, rel=1e-5)
    aligned = torch.eye(5)
    assert float(nt_xent(aligned, aligned, 0.1)) < float(nt_xent(aligned, aligned.roll(1, 0), 0.1))


@pytest.mark.parametrize("seed", [0, 1])
def test_graphcl_loss_falls_and_planted_communities_come_out(seed):
    table, user_c, author_c = community_log(n_users=150, n_authors=24, n_communities=3, seed=seed, noise=0.1)
    graph = build_graphs(table)
    config = {**CONFIG, "seed": seed}
    torch.manual_seed(seed)
    untrained = embed_nodes(build_model(graph, config=config), graph, config=config)
    model, report = fit_graphcl(graph, config=config)
    trained = embed_nodes(model, graph, config=config)
    losses = report["epoch_loss"]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0]
    for node_type, community in (("author", author_c), ("user", user_c)):
        assert trained[node_type].shape == (graph[node_type].num_nodes, 32)
        assert _gap(trained[node_type], community) > 0.15
        assert _gap(trained[node_type], community) > _gap(untrained[node_type], community) + 0.1


def test_graphcl_with_author_attributes_and_capped_steps(tmp_path):
    table, _, author_c = community_log(n_users=60, n_authors=12, seed=2)
    graph = build_graphs(table)
    rng = np.random.default_rng(0)
    features = torch.from_numpy(np.eye(3)[author_c] + 0.1 * rng.normal(size=(12, 3))).float()
    model, report = fit_graphcl(graph, features={"author": features}, config={**CONFIG, "epochs": 2, "max_steps": 1})
    assert report["steps"] == 2 and isinstance(model.encoder.inputs["author"], torch.nn.Linear)
    embeddings = train_graphcl(graph, features={"author": features}, config={**CONFIG, "epochs": 1})
    assert set(embeddings) == {"user", "author"} and torch.isfinite(embeddings["author"]).all()
    with pytest.raises(InputError, match=r"features\['author'\] must be \(12, d\)"):
        train_graphcl(graph, features={"author": features[:5]})
    with pytest.raises(UsageError, match="GraphCL config: unknown field"):
        train_graphcl(graph, config={"epoch": 1})


def test_author_features_from_author_or_segment_keyed_parquet(tmp_path):
    table, _, _ = community_log(n_users=20, n_authors=6, seed=0)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 2)
    pq.write_table(pa.table({"author_id": pa.array([0, 0, 3, 9], pa.int64()), "fused": vectors}), tmp_path / "a.parquet")
    features, report = read_author_features(tmp_path / "a.parquet", 6)
    assert features[0].tolist() == [1.0, 2.0] and features[3].tolist() == [4.0, 5.0] and features[1].tolist() == [0, 0]
    assert report == {"authors_with_vector": 2, "authors": 6, "rows_skipped": 1}
    keys = table.column("item_id").to_pylist()[:2]
    authors = table.column("author_id").to_pylist()[:2]
    folder = tmp_path / "emb"
    folder.mkdir()
    pq.write_table(pa.table({"key": keys + ["seg-unknown"], "fused": pa.FixedSizeListArray.from_arrays(
        pa.array(np.array([1, 1, 3, 3, 7, 7], np.float32)), 2)}), folder / "emb-000000.parquet")
    features, report = read_author_features(folder, 6, logs=table)
    expected = {a: [] for a in authors}
    for a, v in zip(authors, ([1, 1], [3, 3])):
        expected[a].append(v)
    for a, vs in expected.items():
        assert features[a].tolist() == np.mean(vs, 0).tolist()
    assert report["rows_skipped"] == 1
    with pytest.raises(UsageError, match="pass the live log"):
        read_author_features(folder, 6)


def test_graph_train_and_export_round_trip(tmp_path):
    table, _, _ = community_log(n_users=40, n_authors=9, seed=1)
    graph = build_graphs(table)
    save_graph(graph, tmp_path / "graph")
    summary = graph_train(tmp_path / "graph", tmp_path / "run", config={**CONFIG, "epochs": 1})
    embeddings, saved = load_run(tmp_path / "run")
    assert saved == summary and embeddings["user"].shape == (40, 32)
    export_embeddings(embeddings, graph, tmp_path / "emb.parquet")
    back = read_node_embeddings(tmp_path / "emb.parquet")
    assert back["author"][0].tolist() == list(range(9))
    np.testing.assert_array_equal(back["user"][1], embeddings["user"].numpy())
    with pytest.raises(UsageError, match="rows; the graph has"):
        export_embeddings({"user": embeddings["user"][:3]}, graph, tmp_path / "bad.parquet")
    with pytest.raises(UsageError, match="not a graph training run"):
        load_run(tmp_path)


@with_cuda
def test_graphcl_on_cuda_recovers_communities_too():
    table, _, author_c = community_log(n_users=150, n_authors=24, n_communities=3, seed=0, noise=0.1)
    graph = build_graphs(table)
    model, report = fit_graphcl(graph, config={**CONFIG, "device": "cuda"})
    assert next(model.parameters()).device.type == "cuda"
    embeddings = embed_nodes(model, graph, config=CONFIG)
    assert embeddings["author"].device.type == "cpu" and report["epoch_loss"][-1] < report["epoch_loss"][0]
    assert _gap(embeddings["author"], author_c) > 0.15


def test_graph_run_save_then_load_run_gives_identical_embeddings(tmp_path):
    from mmrec.graphs import load_graph
    from mmrec.graphs.graphcl import embed_nodes
    from mmrec.pipelines.graph import load_graphcl
    from mmrec.runs import load_run as load_run_folder

    table, _, _ = community_log(n_users=30, n_authors=8, seed=2)
    graph = build_graphs(table)
    save_graph(graph, tmp_path / "graph")
    summary = graph_train(tmp_path / "graph", tmp_path / "run", config={**CONFIG, "epochs": 1})
    config, _, _, metrics = load_run_folder(tmp_path / "run", kind="graph")
    assert metrics == summary and config["model"]["num_nodes"] == {"user": 30, "author": 8}
    assert config["job"]["graph"] == str(tmp_path / "graph")
    saved, _ = load_run(tmp_path / "run")
    # the graph as graph_train read it (a saved graph's edge order, which the neighbour sampling follows)
    again = embed_nodes(load_graphcl(tmp_path / "run"), load_graph(tmp_path / "graph"), config={**CONFIG, "epochs": 1})
    assert saved.keys() == again.keys() and all(torch.equal(saved[t], again[t]) for t in saved)
