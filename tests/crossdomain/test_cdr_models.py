import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cdr_synth import write_pair

from mmrec.crossdomain import (
    AGGREGATORS,
    CDR_MODELS,
    CDRConfig,
    FrequencyFilter,
    MMoEHead,
    build_model,
    co_interaction_graph,
    ease_weights,
    histories,
    make_batch,
)
from mmrec.crossdomain.files import load_pair, read_item_embeddings
from mmrec.errors import MMRecError, UsageError

TINY = dict(dim=16, maxlen=6, gnn_topk=4, ease_items=200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdr_tiny")
    write_pair(root, users=60, items=(1100, 1050), groups=3, cold=10)
    return load_pair(root, "aa_bb")


def _batch(data, domain=0, maxlen=6, cold=0.0):
    hist = tuple(torch.as_tensor(histories(d.train, data.n_users, maxlen)) for d in data.domains)
    rows = torch.as_tensor(data.domains[domain].train[:32])
    return make_batch(domain, rows[:, 0], rows[:, 1], hist, data.domains[domain].n_items, negatives=5,
                      interaction_mask=0.1, domain_mask=cold, generator=torch.Generator().manual_seed(0)), hist


@pytest.mark.parametrize("kind", AGGREGATORS.names())
def test_aggregators_ignore_padding_and_pool_nothing_from_an_empty_history(kind):
    torch.manual_seed(0)
    n_items, dim = 20, 8
    pairs = np.array([[u, (u + k) % n_items] for u in range(30) for k in range(4)])
    sim = ease_weights(pairs, n_items, max_items=n_items) if kind == "item_similarity" else None
    agg = AGGREGATORS.build(kind, dim, maxlen=5, similarity=sim)
    table = torch.randn(n_items, dim)
    user = torch.randn(3, dim)
    items = torch.tensor([[1, 2, 3, -1, -1], [4, -1, -1, -1, -1], [-1, -1, -1, -1, -1]])
    hist = table[items.clamp(min=0)]
    out = agg(user, hist, items)
    assert out.shape == (3, dim)
    garbage = hist.clone()
    garbage[items < 0] = 100.0  # whatever sits under padding must not matter
    assert torch.allclose(agg(user, garbage, items), out, atol=1e-6)
    assert torch.allclose(out[2], 0.5 * user[2])  # empty history: λ·e_u only
    w = agg.weights(user, hist, items, items >= 0)
    assert torch.allclose(w.sum(1), torch.tensor([1.0, 1.0, 0.0]))


def test_ease_weights_link_items_bought_together():
    pairs = np.array([[u, i] for u in range(40) for i in ((0, 1) if u < 20 else (2, 3))])
    b = ease_weights(pairs, 5, lam=1.0, max_items=5).to_dense()
    assert b[0, 1] > 0.3 and b[2, 3] > 0.3
    assert abs(b[0, 2]) < 1e-3 and b[4].abs().sum() == 0 and torch.diagonal(b).abs().sum() == 0


def test_frequency_split_reconstructs_the_input():
    torch.manual_seed(0)
    freq = FrequencyFilter(8, 10)
    x = torch.randn(4, 10, 8)
    low, high = freq.split(x)
    assert torch.allclose(low + high, x, atol=1e-5)
    # the low band is smoother: less energy in first differences than the high band
    assert low.diff(dim=1).pow(2).sum() < high.diff(dim=1).pow(2).sum()
    mask = torch.ones(4, 10, dtype=torch.bool)
    with torch.no_grad():  # α = β = 1: the module is the identity
        freq.gate[-1].weight.zero_()
        freq.gate[-1].bias.fill_(50.0)
    assert torch.allclose(freq(x, mask), x, atol=1e-5)
    m = freq.low_mask()
    assert m.shape == (6,) and (m.diff() < 0).all()
    freq(x, mask).sum().backward()
    assert freq.cut.grad is not None


def test_mmoe_head_gives_one_logit_per_task():
    head = MMoEHead(8, experts=3, tasks=2)
    torch.nn.init.normal_(head.towers.weight)
    out = head(torch.randn(5, 7, 8))
    assert out.shape == (5, 7, 2) and not torch.allclose(out[..., 0], out[..., 1])


def test_co_interaction_graph_is_undirected_top_k_with_cross_edges():
    a = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 2]])
    b = np.array([[0, 0], [1, 0], [2, 1]])
    edges = co_interaction_graph((a, b), (3, 2), 3, topk=5).T.tolist()
    assert {tuple(e) for e in edges} == {(0, 1), (1, 0), (0, 3), (3, 0), (1, 3), (3, 1), (2, 4), (4, 2)}
    within = co_interaction_graph((a, b), (3, 2), 3, topk=5, cross=False).T.tolist()
    assert {tuple(e) for e in within} == {(0, 1), (1, 0)}
    top1 = co_interaction_graph((a, b), (3, 2), 3, topk=1)
    assert top1.shape[1] <= 2 * 5


@pytest.mark.parametrize("model", ["single-domain", "unicdr", "unicdr+", "farm"])
def test_models_score_shapes_and_cold_users_ignore_the_target_domain(tiny, model):
    torch.manual_seed(0)
    net = build_model(CDRConfig(model=model, **TINY), tiny)
    batch, hist = _batch(tiny, cold=0.5)
    loss, parts = net.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and "bce" in parts
    loss.backward()
    net.eval()
    tables = net.item_tables()
    assert [t.shape for t in tables] == [(tiny.domains[0].n_items, 16), (tiny.domains[1].n_items, 16)]
    users = batch.users[:4]
    cold = torch.ones(4, dtype=torch.bool)
    empty = torch.full((4, 6), -1)
    u = net.user_vectors(0, users, empty, hist[1][users], cold, tables)
    assert u.shape == (4, 16)
    # a cold-start user's vector does not depend on whatever own-domain ids are passed
    noise = torch.randint(0, 50, (4, 6))
    assert torch.allclose(net.user_vectors(0, users, noise, hist[1][users], cold, tables), u, atol=1e-6)
    scores = net.score(0, u, torch.randint(0, 100, (4, 9)), tables)
    assert scores.shape == (4, 9)
    if model != "single-domain":  # cross-domain models read the other domain's history
        other = net.user_vectors(0, users, empty, torch.randint(0, 50, (4, 6)), cold, tables)
        assert not torch.allclose(other, u)


def test_item_embeddings_feed_the_item_encoder(tiny, tmp_path):
    rng = np.random.default_rng(0)
    keys = [f"aa:{i}" for i in range(0, 200)] + [f"bb:{i}" for i in range(0, 100)] + ["zz:1"]
    vec = rng.normal(size=(len(keys), 12)).astype(np.float32)
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"key": keys, "fused": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 12)}), path)
    tables = read_item_embeddings(path, ("aa", "bb"), (tiny.domains[0].n_items, tiny.domains[1].n_items))
    assert np.allclose(tables[0][:200], vec[:200]) and np.abs(tables[0][200:]).sum() == 0
    assert np.allclose(tables[1][:100], vec[200:300])
    with pytest.raises(UsageError, match="carries no item vectors"):  # the library reads no files
        build_model(CDRConfig(model="unicdr+", item_emb=str(path), **TINY), tiny)
    net = build_model(CDRConfig(model="unicdr+", item_emb=str(path), **TINY),
                      dataclasses.replace(tiny, item_content=tuple(tables)))
    assert net.encoder.content.in_features == 12
    base = net.item_tables()[0].detach().clone()
    with torch.no_grad():
        net.encoder.content.weight.mul_(2.0)
    assert not torch.allclose(net.item_tables()[0], base)
    with pytest.raises(MMRecError, match="no column 'image'"):
        read_item_embeddings(path, ("aa", "bb"), (10, 10), column="image")


@pytest.mark.parametrize("model", ["single-domain", "unicdr", "unicdr+", "farm"])
def test_the_target_item_never_reaches_the_user_vector(tiny, model):
    """Train-time leakage check: moving the target items' embeddings leaves the user vectors as they were."""
    torch.manual_seed(0)
    net = build_model(CDRConfig(model=model, gnn_layers=0, **{k: v for k, v in TINY.items() if k != "gnn_topk"}), tiny)
    net.eval()
    batch, _ = _batch(tiny)
    # users whose full history holds their target: without masking, the target would be pooled
    assert (batch.own >= 0).any() and not (batch.own == batch.pos[:, None]).any()
    tables = [t.detach().clone() for t in net.item_tables()]
    before = net.user_vectors(0, batch.users, batch.own, batch.other, batch.cold, tables)
    for row in range(0, 32, 4):  # each row's own target, moved far away, must not change that row's vector
        moved = [t.clone() for t in tables]
        moved[0][batch.pos[row]] += 5.0
        after = net.user_vectors(0, batch.users, batch.own, batch.other, batch.cold, moved)
        assert torch.allclose(before[row], after[row], atol=1e-6)
    # and the check can fail: a history item moved does change the vector
    warm = int(torch.nonzero((batch.own >= 0).any(1) & ~batch.cold)[0])
    moved = [t.clone() for t in tables]
    moved[0][batch.own[warm][batch.own[warm] >= 0][0]] += 5.0
    after = net.user_vectors(0, batch.users, batch.own, batch.other, batch.cold, moved)
    assert not torch.allclose(before[warm], after[warm], atol=1e-6)


def test_models_and_aggregators_dispatch_through_the_registries(tiny):
    assert CDR_MODELS.names() == ["count", "ease", "farm", "item-knn", "single-domain", "unicdr", "unicdr+"]
    assert AGGREGATORS.names() == ["item_similarity", "mean", "position_attention", "user_attention"]
    for name in CDR_MODELS.names():
        net = build_model(CDRConfig(model=name, **TINY), tiny)
        assert type(net) is CDR_MODELS.get(name)
    # each model's default aggregator, and an explicit one reaching the model's aggregators
    assert [CDRConfig(model=m).aggregator for m in ("single-domain", "unicdr", "unicdr+", "farm")] == \
        ["mean", "user_attention", "position_attention", "mean"]
    net = build_model(CDRConfig(model="unicdr", aggregator="item_similarity", **TINY), tiny)
    assert type(net.agg_specific[0]) is AGGREGATORS.get("item_similarity") and net.agg_specific[0].similarity is not None
    with pytest.raises(UsageError, match=r"unknown cross-domain model 'bert4rec'; known: count, ease, farm, item-knn, single-domain"):
        CDRConfig(model="bert4rec")
    with pytest.raises(UsageError, match="unknown aggregator 'max'; known: item_similarity, mean"):
        CDRConfig(aggregator="max")
