import numpy as np
import torch

from mmrec.crossdomain import metrics_from_ranks, ranks, sample_candidates
from mmrec.crossdomain.evaluate import evaluate_scores


def _heldout(n=300, users=100, items=2000, seed=0):
    rng = np.random.default_rng(seed)
    heldout = np.stack([rng.integers(0, users, n), rng.integers(0, items, n)], 1)
    seen = np.concatenate([heldout, np.stack([rng.integers(0, users, 2000), rng.integers(0, items, 2000)], 1)])
    return heldout, seen


def test_candidates_exclude_every_seen_item_and_are_reproducible():
    heldout, seen = _heldout()
    cand = sample_candidates(heldout, seen, 2000, seed=3)
    assert cand.shape == (300, 1000)
    assert (cand[:, 0] == heldout[:, 1]).all()
    seen_sets = {}
    for u, i in seen:
        seen_sets.setdefault(u, set()).add(i)
    for row, (u, _) in zip(cand, heldout):
        assert len(set(row[1:])) == 999
        assert not set(row[1:]) & seen_sets[u]
        assert ((row >= 0) & (row < 2000)).all()
    assert (sample_candidates(heldout, seen, 2000, seed=3) == cand).all()
    assert not (sample_candidates(heldout, seen, 2000, seed=4) == cand).all()


def test_perfect_scorer_and_random_scorer():
    heldout, seen = _heldout(n=4000, users=400)
    cand = sample_candidates(heldout, seen, 2000, seed=0)
    perfect = evaluate_scores(lambda u, c: torch.as_tensor((c == c[:, :1]).astype(np.float32)), heldout, cand)
    assert perfect["HR@1"] == perfect["HR@10"] == perfect["MRR"] == perfect["NDCG@10"] == 1.0
    gen = torch.Generator().manual_seed(0)
    rand = evaluate_scores(lambda u, c: torch.rand(c.shape, generator=gen), heldout, cand)
    assert abs(rand["HR@10"] - 0.01) < 0.005  # 10 / 1000, sd of the mean 0.0016
    assert abs(rand["HR@1"] - 0.001) < 0.002
    assert 0.004 < rand["MRR"] < 0.011  # E[1/(rank+1)] = H_1000 / 1000 = 0.0075


def test_ties_count_against_the_true_item():
    scores = torch.tensor([[1.0, 1.0, 0.0, 0.0], [2.0, 1.0, 3.0, 2.0], [5.0, 1.0, 1.0, 1.0]])
    assert ranks(scores).tolist() == [1, 2, 0]
    m = metrics_from_ranks(np.array([0, 1, 9, 10]))
    assert m["HR@1"] == 0.25 and m["HR@10"] == 0.75 and m["HR@5"] == 0.5
    assert np.isclose(m["NDCG@10"], (1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)
    assert np.isclose(m["MRR"], (1 + 1 / 2 + 1 / 10 + 1 / 11) / 4)
