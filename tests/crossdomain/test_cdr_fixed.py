"""The fixed count weight (``residual_gate=fixed``) and validation every N steps (``eval_every``), SYNTHETIC."""

import numpy as np
import pytest
import torch
from cdr_synth import write_pair

from mmrec.crossdomain import CDRConfig
from mmrec.crossdomain.baselines import evaluate_baseline, fit_baseline
from mmrec.crossdomain.data import domain_histories
from mmrec.crossdomain.evaluate import HeldoutEvaluator
from mmrec.crossdomain.files import load_pair
from mmrec.crossdomain.train import build_model, steps_per_epoch, train_model

FAST = dict(dim=8, maxlen=8, batch_size=128, lr=0.02, gnn_topk=4, epochs=3, patience=3)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    # SYNTHETIC: every user takes 6 items of its latent group in each domain; the group transfers across
    # domains, but with 240 users the co-counts are sparse, so most candidates tie with the held-out item
    root = tmp_path_factory.mktemp("cdr_fixed")
    planted = write_pair(root, per_user=8)
    planted["root"] = root
    return load_pair(root, "aa_bb"), planted


def _scores(model, data, target):
    ev = HeldoutEvaluator(data, domain_histories(data, model_maxlen := 8), {target: data.domains[target].valid}, 0)
    held, cand = ev.sets[target]
    users, items = torch.as_tensor(held[:, 0]), torch.as_tensor(cand)
    with torch.no_grad():
        tables = model.item_tables()
        own, other = ev.hist[target][users][:, :model_maxlen], ev.other[1 - target][users]
        cold = (own < 0).all(1)
        return model.score(target, model.user_vectors(target, users, own, other, cold, tables), items, tables,
                           users=users, cold=cold).numpy(), held, cand


@pytest.mark.parametrize("name", ["farm", "unicdr+"])
def test_the_fixed_weight_keeps_the_counts_order_and_breaks_its_ties_by_taste(groups, name):
    groups, planted = groups
    model, report = train_model(groups, CDRConfig(model=name, residual_gate="fixed", residual_init=30.0, residual_popularity=1.0, **FAST))
    assert "residual.bias" not in dict(model.named_parameters())  # the weight is not learned
    assert torch.allclose(torch.nn.functional.softplus(model.residual.bias), torch.tensor([30.0, 30.0]))
    for target in (0, 1):
        scores, held, cand = _scores(model, groups, target)
        count = fit_baseline("count", groups, target)
        c = np.take_along_axis(count.user_scores(held[:, 0]), cand, 1)
        # the pairs of candidates the count tells apart are ordered as the count orders them (all but the
        # few whose log-count step, at high counts, is below what the learned scores span)
        differ = c[:, :, None] > c[:, None, :]
        assert (scores[:, :, None] > scores[:, None, :])[differ].mean() > 0.999


def test_the_untrained_fixed_residual_ranks_exactly_as_the_count(groups):
    # w·log(1 + c) + p·log(1 + n_i) with w = 30, p = 1: the count's order, its ties broken by popularity, as
    # the count baseline breaks them; the model starts from the count's ranking
    groups, _ = groups
    model = build_model(CDRConfig(model="farm", residual_gate="fixed", residual_init=30.0, residual_popularity=1.0, dim=8),
                        groups)
    for target in (0, 1):
        ev = HeldoutEvaluator(groups, domain_histories(groups, 1), {target: groups.domains[target].valid}, 0)
        with torch.no_grad():
            got = ev.evaluate_fn(lambda d, users, items: model.residual(d, torch.as_tensor(users), torch.as_tensor(items)))
        assert got[groups.domains[target].name] == evaluate_baseline(fit_baseline("count", groups, target), groups, target)


def test_the_popularity_term_leaves_the_users_own_interaction_out(groups):
    groups, _ = groups
    model = build_model(CDRConfig(model="farm", residual_gate="fixed", residual_popularity=1.0, dim=8), groups)
    train = groups.domains[1].train
    degree = np.bincount(train[:, 1], minlength=groups.domains[1].n_items)
    users, items = train[:50, 0], train[:50, 1]
    got = model.residual.popularity(1, torch.as_tensor(users), torch.as_tensor(items[:, None]))[:, 0].numpy()
    assert np.allclose(got, np.log1p(degree[items] - 1))  # its own interaction left out
    stranger = np.setdiff1d(np.arange(groups.n_users), train[:, 0])[:1].repeat(50)
    got = model.residual.popularity(1, torch.as_tensor(stranger), torch.as_tensor(items[:, None]))[:, 0].numpy()
    assert np.allclose(got, np.log1p(degree[items]))


def test_validation_every_n_steps_keeps_the_best_step(groups):
    groups, _ = groups
    config = CDRConfig(model="farm", eval_every=3, residual_gate="fixed", **{**FAST, "epochs": 2, "patience": 100})
    model, report = train_model(groups, config)
    per_epoch = steps_per_epoch(groups, config)
    assert len(report["history"]) == -(-2 * per_epoch // 3) > 2
    assert [h["steps"] for h in report["history"]][:-1] == [3] * (len(report["history"]) - 1)
    # the kept weights are those of the best validation, not the last
    ev = HeldoutEvaluator(groups, domain_histories(groups, 8), {d: groups.domains[d].valid for d in (0, 1)}, 0)
    again = ev(model)
    best = report["history"][report["best_epoch"] - 1]["valid_ndcg10"]
    assert {k: round(v["NDCG@10"], 4) for k, v in again.items()} == best


def test_a_run_with_the_fixed_weight_and_popularity_saves_and_loads(groups, tmp_path):
    from mmrec.pipelines.cdr import evaluate_run, train_cdr

    groups, planted = groups
    config = CDRConfig(model="unicdr+", residual_gate="fixed", residual_init=30.0, residual_popularity=1.0,
                       eval_every=5, **{**FAST, "epochs": 1})
    report = train_cdr(planted["root"], "aa_bb", out=tmp_path / "run", config=config, targets=("bb",))
    again = evaluate_run(tmp_path / "run", planted["root"] / "bb_aa" / "valid.txt")["metrics"]
    assert again["NDCG@10"] == pytest.approx(report["metrics"]["bb"]["NDCG@10"], abs=1e-6)
