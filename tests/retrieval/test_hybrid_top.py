"""Batched two-stage rescoring (mmrec.retrieval.transition.hybrid_top) against the per-user rescoring it
replaced, on a small SYNTHETIC catalogue."""

import numpy as np
import pytest
import torch

from mmrec.retrieval import KuaiFormer, RetrieverConfig, Sequences
from mmrec.retrieval.transition import hybrid_top, sources_of


def per_user_top(model, history, candidates, k):
    """The per-user loop hybrid_top used to be: candidates ∪ the source rows, rescored one user at a time."""
    term = model.transition
    sources = sources_of(torch.as_tensor(history), term.order)
    out = np.full((len(history), k), -1, dtype=np.int64)
    with torch.no_grad():
        users = model(torch.as_tensor(history))
        for u in range(len(history)):
            rows = [torch.as_tensor(candidates[u][candidates[u] >= 0])]
            rows += [term.row(o, int(s)) for o, s in enumerate(sources[u].tolist()) if s >= 0]
            items = torch.unique(torch.cat(rows))
            scores = (users[u] @ model.item_vectors(items).T).max(0).values + term(sources[u : u + 1], items[None])[0]
            top = items[scores.topk(min(k, len(items))).indices]
            out[u, : len(top)] = top.numpy()
    return out


@pytest.mark.parametrize("order,interests", [(1, 1), (2, 3)])
def test_batched_rescoring_equals_the_per_user_loop(order, interests):
    rng = np.random.default_rng(order)
    n_items, k = 60, 8
    # SYNTHETIC: random walks, so some sources have long count rows, some none
    seqs = Sequences.from_lists([list(rng.integers(0, n_items, rng.integers(2, 9))) for _ in range(120)], n_items)
    torch.manual_seed(0)
    model = KuaiFormer(RetrieverConfig(n_items=n_items, dim=16, layers=1, heads=2, max_len=6, dropout=0.0, interests=interests,
                                       readout="queries", transition=True, transition_order=order))
    model.transition.fit(seqs)
    model.eval()
    history = seqs.padded(np.arange(len(seqs)), 6)
    history[:5] = -1  # users with no source and, below, no candidate either
    history[5:10, :-1] = -1  # one item only: no second-order source
    candidates = rng.integers(0, n_items, (len(seqs), k))
    candidates[rng.random(candidates.shape) < 0.3] = -1
    candidates[:3] = -1
    expected = per_user_top(model, history, candidates, k)
    for chunk in (7, 1024):  # chunks cut anywhere give the same rows
        got = hybrid_top(model, history, candidates, k, chunk=chunk)
        assert np.array_equal(got, expected)
    assert (expected[:3] == -1).all() and (expected >= 0).sum(1).max() == k
