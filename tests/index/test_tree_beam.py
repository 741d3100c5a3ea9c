"""The MISS tree's batched torch beam search against a plain per-query, per-node reference (SYNTHETIC data)."""

import numpy as np
import pytest
import torch
from index_data import planted

from mmrec.errors import UsageError
from mmrec.index.tree import IndexTree
from mmrec.testing import with_cuda

FAST = {"progress": False, "n_queries": 50}


def reference_beam(tree: IndexTree, q: np.ndarray, k: int, beam: int, upper_beam: int | None = None) -> list[int]:
    """The beam search written out for one query, one node at a time (float64): the items it returns, best first."""
    last = tree.depth - 1

    def sim(level: int, node: int) -> float:
        e = tree.embeddings[level][node].astype(np.float64)
        if tree.metric == "l2":
            return -float(((q - e) ** 2).sum())
        return float(q @ e) / (np.linalg.norm(e) if level < last else 1.0)

    cand = list(range(len(tree.embeddings[0])))
    for level in range(tree.depth):
        width = k if level == last else beam if level == last - 1 or upper_beam is None else upper_beam
        kept = sorted(cand, key=lambda node: sim(level, node), reverse=True)[:width]
        if level == last:
            return [int(tree.items[node]) for node in kept]
        off = tree.offsets[level + 1]
        cand = [child for node in kept for child in range(off[node], off[node + 1])]
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def small():
    x, _ = planted(700, d=8, topics=6, seed=4)
    q, _ = planted(40, d=8, topics=6, seed=5)
    return x, q.astype(np.float64)


@pytest.mark.parametrize("engine", ["torch", "faiss"])
@pytest.mark.parametrize("metric,balanced,branching,beam,upper", [
    ("ip", True, 4, 3, None), ("ip", False, 5, 2, None), ("l2", True, 3, 4, 2), ("ip", True, 6, 5, 1)])
def test_beam_returns_the_reference_items(small, metric, balanced, branching, beam, upper, engine):
    """The batched torch beam and the FAISS list scan both return the reference beam's items, best first."""
    x, q = small
    tree = IndexTree.build(x, None, {"branching": branching, "balanced": balanced, "metric": metric, "k": 10}, **FAST)
    assert tree.depth >= 3  # at least two inner levels, so the upper beam matters
    scores, rows, scored = tree.search_with_count(q.astype(np.float32), 10, beam=beam, upper_beam=upper, engine=engine)
    for i in range(len(q)):
        assert rows[i][rows[i] >= 0].tolist() == reference_beam(tree, q[i], 10, beam, upper), f"query {i}"
    other = tree.search_with_count(q.astype(np.float32), 10, beam=beam, upper_beam=upper, engine="faiss" if engine == "torch" else "torch")
    np.testing.assert_allclose(scores, other[0], rtol=1e-4, atol=1e-4)  # same scores (cosine / ip / -L2²) and count
    assert scored == other[2]


def test_faiss_engine_is_cpu_only(small):
    x, q = small
    tree = IndexTree.build(x, None, {"branching": 4, "k": 10}, **FAST)
    with pytest.raises(UsageError, match="CPU"):
        tree.search_with_count(q.astype(np.float32), 10, device="meta", engine="faiss")
    with pytest.raises(UsageError, match="engine"):
        tree.search_with_count(q.astype(np.float32), 10, engine="numpy")


def test_widest_beam_is_exhaustive_search(small):
    x, q = small
    tree = IndexTree.build(x, None, {"branching": 4, "k": 10}, **FAST)
    exact = np.argsort(-(q @ x.T.astype(np.float64)), axis=1)[:, :10]
    for engine in ("torch", "faiss"):
        _, rows, scored = tree.search_with_count(q.astype(np.float32), 10, beam=max(tree.node_counts()), engine=engine)
        np.testing.assert_array_equal(rows, exact)
        assert scored == sum(tree.node_counts())


def test_scorer_beam_at_full_width_is_the_scorers_top_items(small, one_torch_thread):
    """recommend: the trained-scorer path of the same beam; a full beam ranks every item by the scorer."""
    x, _ = small
    tree = IndexTree.build(x, None, {"branching": 4, "k": 10}, **FAST)
    scorer = tree.init_scorer(5, {"hidden": 8})
    users = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    scores, rows = tree.recommend(users, 10, beam=max(tree.node_counts()))
    leaves = torch.from_numpy(tree.embeddings[-1])[None].expand(len(users), -1, -1)  # (U, n, d)
    level = torch.full((tree.n,), tree.depth - 1)
    with torch.no_grad():
        logits = scorer(torch.from_numpy(users), leaves, torch.zeros(len(users), tree.n, dtype=torch.long), level)  # (U, n)
    top = logits.topk(10, dim=1).values.numpy()  # an untrained scorer has near-ties: compare the scores
    np.testing.assert_allclose(scores, top, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(logits.numpy(), tree.leaf_of[rows], 1), scores, rtol=1e-5, atol=1e-6)


@with_cuda
def test_cuda_beam_matches_cpu(small):
    x, q = small
    tree = IndexTree.build(x, None, {"branching": 4, "k": 10}, **FAST)
    cpu = tree.search_with_count(q.astype(np.float32), 10, beam=3)
    gpu = tree.search_with_count(q.astype(np.float32), 10, beam=3, device="cuda")
    np.testing.assert_array_equal(cpu[1], gpu[1])
    assert cpu[2] == gpu[2]



def test_list_scan_is_safe_across_threads(small):
    """The FAISS engine passes the lists to probe per call (no shared nprobe): concurrent searches with
    different beams give what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    x, q = small
    tree = IndexTree.build(x, None, {"branching": 4, "k": 10}, **FAST)
    q = q.astype(np.float32)
    alone = {beam: tree.search_with_count(q, 10, beam=beam)[1] for beam in (1, 2, 6)}
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda beam: (beam, tree.search_with_count(q, 10, beam=beam)[1]), [1, 2, 6] * 20))
    for beam, rows in together:
        np.testing.assert_array_equal(rows, alone[beam])
