"""``cold_drop_user``: cold samples leave the user embedding out, in training and in evaluation, SYNTHETIC."""

import pytest
import torch

from mmrec.crossdomain import CDRConfig
from mmrec.crossdomain.data import domain_histories, make_batch, other_histories
from mmrec.crossdomain.files import load_pair
from mmrec.crossdomain.train import build_model

MODELS = ["farm", "unicdr", "unicdr+"]


@pytest.fixture(scope="module")
def pair(small_pair):
    return load_pair(small_pair, "aa_bb")


def _batch(data, domain, cold_share, seed=0):
    # SYNTHETIC overlap users' training pairs of one domain (their other-domain history is not empty), a
    # `cold_share` of the samples domain-masked
    hist = domain_histories(data, 8)
    other = other_histories(data, hist)
    train = torch.as_tensor(data.domains[domain].train)
    train = train[(other[1 - domain][train[:, 0]] >= 0).any(1)][:64]
    gen = torch.Generator().manual_seed(seed)
    return make_batch(domain, train[:, 0], train[:, 1], hist, data.domains[domain].n_items, negatives=5,
                      interaction_mask=0.0, domain_mask=cold_share, generator=gen, other_hist=other)


def _user_tables(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("drop", [True, False])
def test_a_cold_sample_trains_no_user_embedding_when_dropped(pair, name, drop):
    # the leak: an overlap user's embedding is trained by its target items, so a domain-masked sample that
    # reads it knows its target tastes; dropped, no cold sample's loss reaches the user tables (positive
    # control: kept, it does), while a warm sample's still does
    model = build_model(CDRConfig(model=name, dim=8, maxlen=8, cold_drop_user=drop, dropout=0.0), pair)
    for cold_share, expect_grad in ((1.0, not drop), (0.0, True)):
        model.zero_grad(set_to_none=True)
        batch = _batch(pair, 1, cold_share)
        assert bool(batch.cold.all()) == (cold_share == 1.0)
        model.loss(batch)[0].backward()
        grads = [t.grad for t in _user_tables(model)]
        reached = any(g is not None and g.coalesce().values().abs().sum() > 0 for g in grads)
        assert reached == expect_grad, (cold_share, drop)


@pytest.mark.parametrize("name", MODELS)
def test_a_cold_users_vector_reads_only_its_source_history_when_dropped(pair, name):
    # evaluation: scrambling every user embedding leaves a cold-start user's vector unchanged with the
    # option, changes it without (positive control), and changes a warm user's vector either way
    batch = _batch(pair, 1, 0.5)
    tables_of = {}
    for drop in (True, False):
        torch.manual_seed(0)
        model = build_model(CDRConfig(model=name, dim=8, maxlen=8, cold_drop_user=drop), pair).eval()
        with torch.no_grad():
            tables = model.item_tables()
            before = model.user_vectors(1, batch.users, batch.own, batch.other, batch.cold, tables)
            for t in _user_tables(model):
                t.normal_(std=1.0)
            after = model.user_vectors(1, batch.users, batch.own, batch.other, batch.cold, tables)
        moved = (after - before).abs().amax(1) > 1e-6  # (B,)
        tables_of[drop] = moved
        assert moved[~batch.cold].all()
    assert batch.cold.sum() > 10
    assert not tables_of[True][batch.cold].any()
    assert tables_of[False][batch.cold].all()
