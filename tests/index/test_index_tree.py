"""MISS index tree: structure and node count, beam-search recall vs flat, TDM-trained scorer, save/load."""

import numpy as np
import pytest
from index_data import planted

from mmrec.errors import UsageError
from mmrec.index import build_index, load_index
from mmrec.index.exact import exact_knn, recall_at
from mmrec.index.tree import IndexTree

FAST = {"progress": False, "n_queries": 300}


@pytest.fixture(scope="module")
def tree_and_data(tmp_path_factory, topics_data):
    x, labels, keys = topics_data
    folder = tmp_path_factory.mktemp("tree")
    tree = build_index(x, folder, "tree", keys=keys, branching=16, target_recall=0.9, **FAST)
    return tree, folder, x, labels


def test_structure_node_count_and_inner_nodes_are_means_of_their_leaves():
    x, _ = planted(1000, d=16, topics=8)
    tree = IndexTree.build(x, None, branching=8, **FAST)
    assert tree.depth == 4 and tree.node_counts() == [8, 64, 512, 1000]  # 8^3 < 1000 <= 8^4
    assert tree.info["nodes"] == 8 + 64 + 512 + 1000
    assert sorted(tree.items.tolist()) == list(range(1000))  # every item is exactly one leaf
    for level in range(tree.depth):
        assert np.diff(tree.offsets[level]).max() <= 8 and np.diff(tree.offsets[level]).min() >= 1
    anc = tree.ancestors(np.arange(1000))  # (n, L)
    for level in range(tree.depth - 1):
        sizes = np.bincount(anc[:, level])
        assert sizes.max() - sizes.min() <= 1  # balanced k-means: equal-size subtrees
        node = 5
        np.testing.assert_allclose(tree.embeddings[level][node], x[anc[:, level] == node].mean(0), atol=1e-5)
    np.testing.assert_array_equal(tree.vectors(np.arange(10)), x[:10])


def test_beam_search_recall_vs_flat_on_planted_topics(tree_and_data, fresh_queries):
    tree, _, x, _ = tree_and_data
    truth = exact_knn([x], fresh_queries, 10)[1]
    assert tree.info["tuning"]["target_reached"] and tree.info["measured"]["recall"]["10"] >= 0.9
    assert recall_at(tree.search(fresh_queries, 10)[1], truth, 10) >= 0.88
    recalls, counts = [], []
    for beam in (1, 4, 16, 256):
        _, rows, scored = tree.search_with_count(fresh_queries, 10, beam=beam)
        recalls.append(recall_at(rows, truth, 10))
        counts.append(scored)
    assert recalls == sorted(recalls) and counts == sorted(counts)
    assert recalls[-1] == 1.0 and counts[-1] == sum(tree.node_counts())  # full beam = exhaustive search


def test_unbalanced_tree_holds_every_item_once_and_finds_neighbours(tree_and_data, fresh_queries):
    _, _, x, _ = tree_and_data
    tree = IndexTree.build(x, None, {"branching": 16, "balanced": False, "k": 10, "n_queries": 100}, progress=False)
    assert sorted(tree.items.tolist()) == list(range(len(x)))  # a permutation: no item lost or doubled
    sizes = [np.diff(o) for o in tree.offsets]
    assert all(s.min() >= 1 for s in sizes)  # no empty node
    assert tree.info["config"]["balanced"] is False
    truth = exact_knn([x], fresh_queries, 10)[1]
    _, rows, _ = tree.search_with_count(fresh_queries, 10, beam=16)
    assert recall_at(rows, truth, 10) >= 0.9


def test_upper_beam_narrows_the_levels_above_the_last_inner_one(tree_and_data, fresh_queries):
    tree, _, x, _ = tree_and_data
    truth = exact_knn([x], fresh_queries, 10)[1]
    same = tree.search_with_count(fresh_queries, 10, beam=16)
    np.testing.assert_array_equal(tree.search_with_count(fresh_queries, 10, beam=16, upper_beam=16)[1], same[1])
    _, rows, scored = tree.search_with_count(fresh_queries, 10, beam=16, upper_beam=4)
    counts = tree.node_counts()  # levels 1..L; the last inner level keeps 16, the ones above it 4
    branching = tree.width
    expected = counts[0] + sum(min(4 * branching, c) for c in counts[1:-1]) + (16 * branching if tree.depth > 2 else 0)
    assert scored < same[2] and scored <= expected
    assert recall_at(rows, truth, 10) >= 0.5  # still finds most neighbours on the planted topics
    with pytest.raises(UsageError):
        tree.search_with_count(fresh_queries, 10, beam=16, upper_beam=0)


def _users_with_topics(labels, n_users=96, seed=0):
    """SYNTHETIC users: each likes one planted topic; 20 positives from it."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, labels.max() + 1, n_users)
    positives = np.stack([rng.choice(np.flatnonzero(labels == t), 20, replace=False) for t in topic])  # (U, 20)
    return topic, positives


def test_tdm_trained_scorer_retrieves_the_users_topic(tree_and_data, one_torch_thread):
    tree, _, x, labels = tree_and_data
    topic, positives = _users_with_topics(labels)
    rng = np.random.default_rng(1)
    # the user vector lives in its own space: a random code of the topic plus noise
    codes = rng.standard_normal((labels.max() + 1, 8)).astype(np.float32)
    users = codes[topic] + 0.1 * rng.standard_normal((len(topic), 8)).astype(np.float32)
    user_index = np.repeat(np.arange(len(topic)), positives.shape[1])
    result = tree.fit_scorer(users, user_index, positives.reshape(-1), epochs=10, progress=False)
    losses = [epoch["loss"] for epoch in result.history]
    assert len(losses) == 10 and losses[-1] < losses[0] * 0.6
    _, rows = tree.recommend(users, 10, beam=8)
    precision = (labels[rows] == topic[:, None]).mean()
    assert precision > 0.8  # chance is 1/16


def test_scorer_with_co_and_mm_gsu_reads_the_lifelong_history(tree_and_data, tmp_path, one_torch_thread):
    tree, folder, x, labels = tree_and_data
    topic, positives = _users_with_topics(labels, seed=2)
    rng = np.random.default_rng(3)
    users = rng.standard_normal((len(topic), 4)).astype(np.float32)  # no signal: only the history has it
    history_rows = positives[:, :10].copy()  # (U, 10) index rows of past behaviours
    history_rows[:, 8:] = -1  # padding
    user_index = np.repeat(np.arange(len(topic)), 10)
    tree.fit_scorer(users, user_index, positives[:, 10:].reshape(-1), history_rows=history_rows, history_k=4, epochs=10, progress=False)
    _, rows = tree.recommend(users, 10, beam=8, history_rows=history_rows)
    assert (labels[rows] == topic[:, None]).mean() > 0.8
    tree.save(tmp_path / "t")
    loaded = load_index(tmp_path / "t")
    assert loaded.info["scorer"]["history_k"] == 4 and loaded.info["scorer"]["history"]
    np.testing.assert_array_equal(loaded.recommend(users, 10, beam=8, history_rows=history_rows)[1], rows)
    with pytest.raises(UsageError, match="history_rows"):
        loaded.recommend(users, 10)


def test_node_scorer_reads_the_id_history_through_co_gsu(tree_and_data, one_torch_thread):
    """Same multimodal history, other ID history: the score changes (Co-GSU is wired in)."""
    import torch

    from mmrec.index.tree import NodeScorer

    tree = tree_and_data[0]
    torch.manual_seed(0)
    scorer = NodeScorer(4, tree.dim, tree.node_counts(), hidden=16, id_dim=8, history_k=3).eval()
    rows = np.arange(6)[None]  # (1, T=6)
    hist, ids, mask = tree.history_tensors(rows)
    nodes = torch.from_numpy(tree.embeddings[0][None, :5])  # (1, C=5, d): level-1 nodes
    node_ids = torch.from_numpy(tree.level_starts[0] + np.arange(5))[None]
    level = torch.zeros(5, dtype=torch.long)
    user = torch.randn(1, 4)
    with torch.no_grad():
        base = scorer(user, nodes, node_ids, level, hist, ids, mask)
        other_ids = scorer(user, nodes, node_ids, level, hist, ids.flip(1) + 7, mask)
        scorer.ids.weight[ids[0]] += 1.0  # move the ID embeddings of the history items only
        moved = scorer(user, nodes, node_ids, level, hist, ids, mask)
    assert not torch.allclose(base, other_ids) and not torch.allclose(base, moved)


def test_save_load_roundtrip_and_no_add(tree_and_data, fresh_queries):
    tree, folder, x, _ = tree_and_data
    loaded = load_index(folder)
    assert isinstance(loaded, IndexTree) and loaded.node_counts() == tree.node_counts()
    np.testing.assert_array_equal(loaded.search(fresh_queries, 10)[1], tree.search(fresh_queries, 10)[1])
    assert loaded.search_keys(["item-00007"], 1)[1][0, 0] == 7
    with pytest.raises(UsageError, match="does not support add"):
        loaded.add(x[:3])
    with pytest.raises(UsageError, match="fit_scorer"):
        IndexTree.build(x[:300], None, branching=4, **FAST).recommend(x[:2], 5)
