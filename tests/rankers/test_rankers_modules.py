"""Each gate and module against its equation on small hand-checked cases (PEPNet, MMoE, HoME, DIN)."""

import math

import torch
import torch.nn.functional as F

from mmrec.quantization import target_attention
from mmrec.rankers import (
    EPNet,
    GateNU,
    HoME,
    MMoE,
    PEPNet,
    PPNet,
    TargetAttention,
    masked_bce,
)
from mmrec.rankers.home import FeatureGate, NormalizedExperts, masked_mix


def test_gate_nu_is_gamma_sigmoid_of_a_relu_layer():
    gate = GateNU(2, 2, 2, gamma=2.0)
    with torch.no_grad():
        for layer in (gate.fc1, gate.fc2):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    out = gate(torch.tensor([[1.0, -1.0]]))
    torch.testing.assert_close(out, torch.tensor([[2 / (1 + math.exp(-1)), 1.0]]))


def test_gate_nu_stays_in_zero_to_gamma():
    gate = GateNU(3, 8, 5)
    x = 100 * torch.randn(256, 3)
    out = gate(x)
    assert out.min() >= 0 and out.max() <= 2
    x = torch.randn(256, 3)
    with torch.no_grad():
        gate.fc2.bias.fill_(50.0)
    torch.testing.assert_close(gate(x), torch.full((256, 5), 2.0))
    with torch.no_grad():
        gate.fc2.bias.fill_(-50.0)
    assert gate(x).max() < 1e-12


def test_epnet_scales_e_by_a_domain_gate_and_stops_its_gradient():
    torch.manual_seed(0)
    epnet = EPNet(3, 4, hidden=8)
    domain = torch.randn(5, 3, requires_grad=True)
    e = torch.randn(5, 4, requires_grad=True)
    out = epnet(domain, e)
    delta = epnet.gate(torch.cat([domain, e], -1)).detach()
    torch.testing.assert_close(out, delta * e)
    out.sum().backward()
    torch.testing.assert_close(e.grad, delta)  # no term through the gate's stopgrad(E) input
    assert domain.grad.abs().sum() > 0  # the domain gate learns


def test_ppnet_gates_every_layer_per_task_and_stops_the_gradient_into_o_ep():
    torch.manual_seed(0)
    K, B = 2, 6
    ppnet = PPNet(prior_dim=2, in_dim=3, tower=[4], tasks=K, hidden=5)
    prior = torch.randn(B, 2)
    o_ep = torch.randn(B, 3, requires_grad=True)
    out = ppnet(prior, o_ep)
    out.sum().backward()
    grad = o_ep.grad.clone()

    # the equations, with the gates taken as constants: delta_l = GateNU_l([prior, O_ep]) split per task
    x = o_ep.detach().clone().requires_grad_(True)
    gate_in = torch.cat([prior, x.detach()], -1)
    d0 = ppnet.gates[0](gate_in).detach().view(B, K, 3)
    d1 = ppnet.gates[1](gate_in).detach().view(B, K, 4)
    W0, b0, Wo, bo = ppnet.layers[0].weight, ppnet.layers[0].bias, ppnet.head.weight, ppnet.head.bias
    expected = []
    for k in range(K):
        h1 = torch.relu((d0[:, k] * x) @ W0[k] + b0[k])  # (B, 4)
        expected.append(((d1[:, k] * h1) @ Wo[k] + bo[k]).squeeze(-1))
    expected = torch.stack(expected, 1)
    torch.testing.assert_close(out, expected)
    expected.sum().backward()
    torch.testing.assert_close(grad, x.grad)  # PPNet's gradient into O_ep skips its gates


def test_pepnet_uses_the_domain_only_through_epnet(tiny_schema, tiny_batch):
    torch.manual_seed(0)
    model = PEPNet(tiny_schema, {"tower": [8], "gate_hidden": 8})
    out = model(tiny_batch)
    assert out.shape == (64, 3)
    other = tiny_batch.to("cpu")
    other.domain = (tiny_batch.domain + 1) % 3
    assert not torch.allclose(model(other), out)
    assert model.inputs.general_dim(with_domain=False) == model.epnet.gate.fc2.out_features
    no_ep = PEPNet(tiny_schema, {"tower": [8], "epnet": False})
    assert no_ep.epnet is None and torch.allclose(no_ep(other), no_ep(tiny_batch))


def test_code_levels_can_be_summed_or_kept_side_by_side(tiny_schema, tiny_batch):
    summed = PEPNet(tiny_schema, {"embedding_dim": 4})
    side_by_side = PEPNet(tiny_schema, {"embedding_dim": 4, "code_mode": "concat"})
    assert summed.inputs.item_dim == 4 * 3 and side_by_side.inputs.item_dim == 4 * (1 + 2 + 1)
    assert side_by_side(tiny_batch).shape == (64, 3)


def test_mmoe_mixes_experts_with_per_task_softmax_gates(tiny_schema):
    torch.manual_seed(0)
    model = MMoE(tiny_schema, {"experts": 3, "expert": [8]})
    x = torch.randn(4, model.inputs.general_dim(with_domain=True))
    mixed, weights = model.mix(x)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 3))
    experts = model.experts(x[:, None, :].expand(-1, 3, -1))  # (B, n, H)
    for k in range(3):
        torch.testing.assert_close(mixed[:, k], (weights[:, k, :, None] * experts).sum(1))


def test_home_expert_normalisation_is_swish_of_standardised_units():
    experts = NormalizedExperts(3, 5, 4, norm="batch").train()
    x = torch.randn(32, 3, 5)
    h = experts.linear(x)
    z = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + experts.norm.eps)
    torch.testing.assert_close(experts(x), F.silu(z), atol=1e-5, rtol=1e-4)


def test_home_feature_gate_starts_at_one_and_stays_in_zero_two():
    gate = FeatureGate(2, 6, 3)
    x = torch.randn(10, 2, 6)
    torch.testing.assert_close(gate(x), x)
    with torch.no_grad():
        gate.up.normal_(0, 10)
    g = gate.gate(x)
    assert g.min() >= 0 and g.max() <= 2 and g.std() > 0.1


def test_home_hierarchy_masks_keep_tasks_to_their_groups_experts(tiny_schema, tiny_batch):
    model = HoME(tiny_schema, {"task_groups": [["click"], ["like", "follow"]], "shared_experts": 1,
                               "group_experts": 1, "task_experts": 1})
    # level 1 experts: [shared, group click, group like+follow]; level 2: [click, like, follow]
    assert model.mask1.tolist() == [[True, True, False], [True, False, True]]
    assert model.mask2.tolist() == [
        [True, True, False, True, False, False],
        [True, False, True, False, True, False],
        [True, False, True, False, False, True],
    ]
    logits = torch.randn(7, 3, 6)
    _, weights = masked_mix(logits, model.mask2, torch.randn(7, 6, 4))
    assert (weights[:, ~model.mask2] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, 3))
    assert model(tiny_batch).shape == (64, 3)


def test_target_attention_ignores_padding_and_matches_din():
    torch.manual_seed(0)
    att = TargetAttention(4, hidden=8)
    q, k = torch.randn(3, 4), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = att(q, k, mask)
    qq = q[:, None].expand_as(k)
    scores = att.mlp(torch.cat([qq, k, qq - k, qq * k], -1)).squeeze(-1)  # DIN's unit on the concatenation
    torch.testing.assert_close(out, ((scores * mask)[..., None] * k).sum(1))
    k2 = k.clone()
    k2[0, 2:] = 100.0
    torch.testing.assert_close(att(q, k2, mask)[0], out[0])
    assert not out[2].any()  # no history -> zeros
    dot = TargetAttention(4, scorer="dot")
    torch.testing.assert_close(dot(q, k, mask), target_attention(q, k, k, mask))


def test_masked_bce_ignores_unobserved_labels():
    logits = torch.zeros(4, 2, requires_grad=True)
    labels = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    total, per_task = masked_bce(logits, labels, mask, weights=[1.0, 2.0])
    torch.testing.assert_close(per_task, torch.full((2,), math.log(2)))
    torch.testing.assert_close(total, torch.tensor(3 * math.log(2)))
    total.backward()
    assert (logits.grad[1:, 1] == 0).all() and (logits.grad[:, 0] != 0).all()
    moved = logits.detach().clone()
    moved[1:, 1] = 50.0
    torch.testing.assert_close(masked_bce(moved, labels, mask)[1], per_task.detach())
