"""Co-GSU / MM-GSU top-k over a lifelong history, and DIN-style target attention."""

import numpy as np
import torch

from mmrec.index.gsu import LifelongInterest, TargetAttention, gather_behaviours, gsu_topk


def test_gsu_topk_matches_brute_force_and_never_picks_padding():
    g = torch.Generator().manual_seed(0)
    target, history = torch.randn(3, 8, generator=g), torch.randn(3, 12, 8, generator=g)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 4:] = False  # user 1 has only 4 behaviours
    index, valid = gsu_topk(target, history, 5, mask)
    assert index.shape == valid.shape == (3, 5)
    for b in range(3):
        scores = (history[b] @ target[b]).numpy()
        scores[~mask[b].numpy()] = -np.inf
        expected = np.argsort(-scores)[: int(valid[b].sum())]
        assert index[b][valid[b]].tolist() == expected.tolist()
    assert valid[1].tolist() == [True] * 4 + [False] and valid[0].all()
    per_node, _ = gsu_topk(torch.stack([target, -target], 1), history, 5, mask)  # (B, C=2, k)
    assert per_node.shape == (3, 2, 5) and torch.equal(per_node[:, 0], index)


def test_target_attention_ignores_invalid_slots_and_learns_to_pool_relevant_behaviours(one_torch_thread):
    torch.manual_seed(0)
    att = TargetAttention(4, hidden=16)
    target = torch.randn(2, 4)
    behaviours = torch.randn(2, 3, 4)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    changed = behaviours.clone()
    changed[~valid] = 100.0
    torch.testing.assert_close(att(target, behaviours, valid), att(target, changed, valid))

    # SYNTHETIC task: the answer is the behaviour equal to the target among distractors
    opt = torch.optim.Adam(att.parameters(), lr=1e-2)
    for _ in range(200):
        t = torch.nn.functional.normalize(torch.randn(64, 4), dim=-1)
        b = torch.nn.functional.normalize(torch.randn(64, 5, 4), dim=-1)
        b[:, 2] = t
        loss = ((att(t, b, torch.ones(64, 5, dtype=torch.bool)) - t) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_lifelong_interest_runs_co_gsu_and_mm_gsu_on_their_own_embeddings():
    torch.manual_seed(0)
    model = LifelongInterest(id_dim=6, mm_dim=10, k=3)
    hid, hmm = torch.nn.functional.normalize(torch.randn(4, 20, 6), dim=-1), torch.randn(4, 20, 10)
    out = model(hid[:, 0], hmm[:, 5], hid, hmm, torch.ones(4, 20, dtype=torch.bool))
    assert out.shape == (4, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    idx, _ = gsu_topk(hid[:, 0], hid, 3)
    assert (idx[:, 0] == 0).all()  # the target's own behaviour is its best Co-GSU match
    assert gather_behaviours(hid, idx).shape == (4, 3, 6)
