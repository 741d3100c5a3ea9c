import pytest
import torch
from graph_data import community_log

from mmrec.errors import UsageError
from mmrec.graphs import NeighborSampler, build_graphs


@pytest.fixture(scope="module")
def graph():
    table, _, _ = community_log(n_users=80, n_authors=12, watches=6, gifts=3, seed=5)
    return build_graphs(table)


def _edge_set(graph, edge_type):
    return set(map(tuple, graph[edge_type].edge_index.T.tolist()))


@pytest.mark.parametrize("seed_type", ["user", "author"])
def test_sampled_subgraph_is_part_of_the_graph(graph, seed_type):
    sampler = NeighborSampler(graph, [4, 3], seed=0)
    seeds = torch.tensor([5, 2, 7, 0])
    for _ in range(2):  # the relabelling buffer is reset between calls
        batch = sampler.sample(seed_type, seeds)
        assert batch[seed_type].node_id[:4].tolist() == seeds.tolist() and batch[seed_type].batch_size == 4
        for node_type in batch.node_types:
            ids = batch[node_type].node_id
            assert len(ids) == batch[node_type].num_nodes == len(set(ids.tolist()))
        n_edges = 0
        for edge_type in graph.edge_types:
            src_type, _, dst_type = edge_type
            local = batch[edge_type].edge_index
            pairs = torch.stack([batch[src_type].node_id[local[0]], batch[dst_type].node_id[local[1]]]).T.tolist()
            assert set(map(tuple, pairs)) <= _edge_set(graph, edge_type)
            assert len(set(map(tuple, pairs))) == len(pairs)  # each edge once
            n_edges += len(pairs)
        assert n_edges > 0


def test_fanout_is_respected_and_small_neighbourhoods_are_taken_whole(graph):
    sampler = NeighborSampler(graph, [3], seed=1)
    seeds = torch.arange(12)
    batch = sampler.sample("author", seeds)
    for edge_type in graph.edge_types:
        if edge_type[2] != "author":
            assert batch[edge_type].edge_index.shape[1] == 0  # one hop: only edges into the seeds
            continue
        dst = batch[edge_type].edge_index[1]
        per_node = torch.bincount(dst, minlength=12)
        degree = torch.bincount(graph[edge_type].edge_index[1], minlength=12)
        assert (per_node <= 3).all() and (per_node >= 1)[degree > 0].all()
        assert torch.equal(per_node[degree <= 3], degree[degree <= 3])
    assert torch.equal(sampler.degree("author"), sum(torch.bincount(graph[e].edge_index[1], minlength=12)
                                                     for e in graph.edge_types if e[2] == "author"))


def test_sampling_is_seeded_and_checks_its_seeds(graph):
    a = NeighborSampler(graph, [2, 2], seed=3).sample("user", torch.arange(10))
    b = NeighborSampler(graph, [2, 2], seed=3).sample("user", torch.arange(10))
    assert all(torch.equal(a[t].node_id, b[t].node_id) for t in a.node_types)
    sampler = NeighborSampler(graph, [2])
    with pytest.raises(UsageError, match="distinct"):
        sampler.sample("user", torch.tensor([1, 1]))
    with pytest.raises(UsageError, match="seed ids"):
        sampler.sample("user", torch.tensor([1000]))
    with pytest.raises(UsageError, match="fanouts"):
        NeighborSampler(graph, [])
