"""PLE and ESMM against their equations (Tang et al. RecSys'20 eq. 2-5; Ma et al. SIGIR'18 eq. 2-3)."""

import pytest
import torch
import torch.nn.functional as F

from mmrec.errors import UsageError
from mmrec.rankers import ESMM, PLE, masked_bce
from mmrec.rankers.esmm import product_logit


def test_ple_gates_sum_to_one_over_the_experts_they_may_use(tiny_schema, tiny_batch):
    torch.manual_seed(0)
    model = PLE(tiny_schema, {"levels": 2, "task_experts": 2, "shared_experts": 1, "expert": [8]}).eval()
    x = model.inputs.general(model.inputs(tiny_batch), with_domain=True)
    _, (w1, w2) = model.extract(x)
    K, n = len(tiny_schema.tasks), 2 * len(tiny_schema.tasks) + 1
    assert w1.shape == (64, K + 1, n) and w2.shape == (64, K, n)  # the shared gate exists between levels only
    for w in (w1, w2):
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
        for k in range(K):
            own = [i for i in range(n) if i // 2 == k or i == n - 1]  # task k's two experts and the shared one
            other = [i for i in range(n) if i not in own]
            assert (w[:, k, own] > 0).all() and (w[:, k, other] == 0).all()
    assert (w1[:, K] > 0).all()  # the shared gate mixes every expert


def test_ple_output_is_the_gated_expert_mix_level_by_level(tiny_schema, tiny_batch):
    torch.manual_seed(1)
    model = PLE(tiny_schema, {"levels": 2, "task_experts": 1, "shared_experts": 2, "expert": [8], "batch_norm": False}).eval()
    K = len(tiny_schema.tasks)
    with torch.no_grad():
        x = model.inputs.general(model.inputs(tiny_batch), with_domain=True)  # (B, D)
        out, _ = model.extract(x)
        # level 1: every stream reads x; expert i = MLP_i(x); gate g = softmax over its allowed experts
        l1, l2 = model.levels
        e1 = torch.stack([F.relu(x @ l1.experts.layers[0].weight[i] + l1.experts.layers[0].bias[i]) for i in range(K + 2)], 1)
        allowed = [[k, K, K + 1] for k in range(K)] + [list(range(K + 2))]  # tasks: own + shared; shared gate: all
        y1 = []
        for g, experts in enumerate(allowed):
            logits = x @ l1.gates.weight[g] + l1.gates.bias[g]  # (B, n)
            w = torch.softmax(logits[:, experts], -1)
            y1.append((w[:, :, None] * e1[:, experts]).sum(1))
        # level 2: task k's expert reads y1[k], the shared experts read the shared mix y1[K]
        inputs2 = [y1[k] for k in range(K)] + [y1[K], y1[K]]
        e2 = torch.stack([F.relu(inputs2[i] @ l2.experts.layers[0].weight[i] + l2.experts.layers[0].bias[i]) for i in range(K + 2)], 1)
        for k in range(K):
            w = torch.softmax((y1[k] @ l2.gates.weight[k] + l2.gates.bias[k])[:, allowed[k]], -1)
            torch.testing.assert_close(out[:, k], (w[:, :, None] * e2[:, allowed[k]]).sum(1))
        torch.testing.assert_close(model(tiny_batch), model.towers(out))


def test_ple_config_is_checked(tiny_schema):
    with pytest.raises(UsageError, match="levels must be >= 1"):
        PLE(tiny_schema, {"levels": 0})
    with pytest.raises(UsageError, match="not both 0"):
        PLE(tiny_schema, {"task_experts": 0, "shared_experts": 0})


def test_esmm_scores_are_pctr_and_pctr_times_pcvr(tiny_schema, tiny_batch):
    torch.manual_seed(0)
    model = ESMM(tiny_schema, {"ctr_task": "click", "tower": [8]}).eval()
    with torch.no_grad():
        raw = model.towers_logits(tiny_batch)  # (B, K): CTR tower in column 0, CVR towers after
        scores = torch.sigmoid(model(tiny_batch))
    p_ctr, p_cvr = torch.sigmoid(raw[:, :1]), torch.sigmoid(raw[:, 1:])
    torch.testing.assert_close(scores[:, 0], p_ctr[:, 0])
    torch.testing.assert_close(scores[:, 1:], p_ctr * p_cvr)
    assert (scores[:, 1:] <= scores[:, :1]).all()  # pCTCVR never above pCTR


def test_esmm_loss_is_bce_on_pctr_and_pctcvr_over_every_impression(tiny_schema, tiny_batch):
    torch.manual_seed(0)
    model = ESMM(tiny_schema, {"tower": [8]})
    batch = tiny_batch
    loss, per_task = masked_bce(model(batch), batch.labels, batch.label_mask)
    raw = model.towers_logits(batch)
    p_ctr = torch.sigmoid(raw[:, 0])
    expected = [F.binary_cross_entropy(p_ctr, batch.labels[:, 0])]
    for k in (1, 2):
        rows = batch.label_mask[:, k]
        p_ctcvr = p_ctr * torch.sigmoid(raw[:, k])
        expected.append(F.binary_cross_entropy(p_ctcvr[rows], batch.labels[rows, k]))
    torch.testing.assert_close(per_task, torch.stack(expected), rtol=1e-5, atol=1e-6)
    # the CVR tower learns from unclicked rows too: a loss on them alone reaches it
    model.zero_grad()
    unclicked = batch.labels[:, 0] == 0
    masked_bce(model(batch)[unclicked][:, 1:], batch.labels[unclicked][:, 1:], batch.label_mask[unclicked][:, 1:])[0].backward()
    assert model.towers.head.weight.grad[1].abs().sum() > 0


def test_product_logit_is_exact_where_the_product_rounds():
    a = torch.tensor([-30.0, 0.0, 5.0, 40.0, 40.0])
    b = torch.tensor([-30.0, 0.0, -5.0, 40.0, -3.0])
    expected = torch.logit(torch.sigmoid(a.double()) * torch.sigmoid(b.double())).float()
    out = product_logit(a, b)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[[0, 1, 2, 4]], expected[[0, 1, 2, 4]])
    assert out[3] > 38  # logit(s(40)^2) ~ 40 - ln 2, where float32 sigmoid rounds to 1


def test_esmm_ctr_task_must_be_a_task(tiny_schema):
    with pytest.raises(UsageError, match="model.ctr_task 'buy' is not a task"):
        ESMM(tiny_schema, {"ctr_task": "buy"})
