import numpy as np
import pytest
import torch

from mmrec.errors import UsageError
from mmrec.retrieval import Sequences, evaluate, metrics_from_ranks, target_ranks


def _data(users=400, items=50, seed=0):
    rng = np.random.default_rng(seed)
    seqs = Sequences.from_lists([rng.integers(0, items, size=int(rng.integers(1, 6))).tolist() for _ in range(users)], items)
    return seqs, rng.integers(0, items, size=users)


def test_perfect_scorer_scores_one_and_random_scorer_k_over_n():
    seqs, targets = _data()
    truth = {}

    def perfect(hist):
        out = torch.zeros(len(hist), seqs.n_items)
        out[torch.arange(len(hist)), torch.as_tensor(targets[truth["rows"]])] = 1.0
        return out

    def batched(scorer):
        def call(hist):
            truth["rows"] = np.arange(truth["start"], truth["start"] + len(hist))
            truth["start"] += len(hist)
            return scorer(hist)
        truth["start"] = 0
        return call

    m = evaluate(batched(perfect), seqs, targets, batch_size=64)
    assert m["recall@5"] == m["recall@10"] == m["ndcg@5"] == m["ndcg@10"] == 1.0 and m["history"] == "kept"
    g = torch.Generator().manual_seed(0)
    seqs, targets = _data(users=4000, seed=1)
    m = evaluate(lambda h: torch.rand(len(h), seqs.n_items, generator=g), seqs, targets)
    assert abs(m["recall@10"] - 10 / 50) < 0.02 and abs(m["recall@5"] - 5 / 50) < 0.015
    assert m["ndcg@10"] < m["recall@10"]


def test_ties_are_broken_against_the_true_item():
    seqs, targets = _data()
    m = evaluate(lambda h: torch.zeros(len(h), seqs.n_items), seqs, targets)
    assert m["recall@10"] == 0.0  # a constant scorer ranks the target last among 50 ties
    assert target_ranks(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([1])).item() == 1
    assert metrics_from_ranks(np.array([0, 1, 9, 10]), ks=(10,)) == pytest.approx(
        {"recall@10": 0.75, "ndcg@10": (1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4})


def test_history_items_are_kept_unless_excluded():
    seqs = Sequences.from_lists([[3, 4], [5]], 10)
    targets = np.array([0, 1])

    def favours_history(hist):  # scores history items highest, the target next
        out = torch.zeros(len(hist), 10)
        for r, row in enumerate(hist):
            out[r, torch.as_tensor(row[row >= 0])] = 2.0
            out[r, targets[r]] = 1.0
        return out

    kept = evaluate(favours_history, seqs, targets, return_ranks=True)
    dropped = evaluate(favours_history, seqs, targets, exclude_history=True, return_ranks=True)
    assert kept["ranks"].tolist() == [2, 1] and dropped["ranks"].tolist() == [0, 0]
    assert (kept["history"], dropped["history"]) == ("kept", "excluded")


def test_long_tail_metrics_cover_only_targets_with_few_training_interactions():
    seqs = Sequences.from_lists([[1], [2], [3], [4]], 6)
    targets = np.array([0, 0, 5, 5])
    counts = np.array([100, 0, 0, 0, 0, 3])  # item 0 is popular, item 5 is in the tail

    def knows_popular(hist):  # ranks item 0 first, item 5 last
        return torch.tensor([[5.0, 1, 1, 1, 1, 0]]).expand(len(hist), -1)

    m = evaluate(knows_popular, seqs, targets, train_counts=counts, tail_max=5, ks=(1,))
    assert m["recall@1"] == 0.5
    assert m["tail"] == {"max_train_interactions": 5, "users": 2, "recall@1": 0.0, "ndcg@1": 0.0}
    assert "tail" not in evaluate(knows_popular, seqs, targets, ks=(1,))
    with pytest.raises(UsageError, match="train_counts"):
        evaluate(knows_popular, seqs, targets, train_counts=counts[:3])
