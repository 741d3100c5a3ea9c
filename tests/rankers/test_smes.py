"""SMES (rankers/smes.py): routing equations, activation bounds, balance loss, sparse dispatch, CLI run and
export; and the many-task SYNTHETIC simulator it is measured on."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from rank_data import TINY_SIM, tiny_rank_config

from mmrec.cli import main
from mmrec.errors import UsageError
from mmrec.rankers import RANKERS, SMES, simulate
from mmrec.rankers.losses import training_loss
from mmrec.rankers.smes import Experts, balance_loss, load_cv, route


def test_shared_subset_is_the_top_of_the_summed_task_scores_by_hand():
    # one instance, two tasks, four experts; gate logits = log of these softmax scores
    p0, p1 = torch.tensor([0.5, 0.3, 0.15, 0.05]), torch.tensor([0.1, 0.25, 0.3, 0.35])
    logits = torch.stack([p0, p1]).log()[None]  # (1, 2, 4)
    r = route(logits, k_shared=2, k_private=1)
    # summed scores 0.6, 0.55, 0.45, 0.40 -> {0, 1}, though task 1 alone would take {3, 2}
    assert sorted(r.shared[0].tolist()) == [0, 1]
    # private: task 0 takes 2 (0.15 > 0.05) among {2, 3}, task 1 takes 3 (0.35 > 0.3)
    assert r.select[0].tolist() == [[True, True, True, False], [True, True, False, True]]
    torch.testing.assert_close(r.mix_weights[0, 0], torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95)
    torch.testing.assert_close(r.mix_weights[0, 1], torch.tensor([0.1, 0.25, 0.0, 0.35]) / 0.7)
    torch.testing.assert_close(r.probs[0], torch.stack([p0, p1]))
    # the max of the scores (0.5, 0.3, 0.3, 0.35) picks {0, 3} instead
    assert sorted(route(logits, 2, 1, shared_score="max").shared[0].tolist()) == [0, 3]


@pytest.mark.parametrize("k_shared,k_private", [(2, 1), (0, 2), (3, 0), (1, 3)])
def test_a_task_runs_at_most_ks_plus_kp_experts_and_an_instance_ks_plus_tasks_times_kp(tiny_schema, tiny_batch, k_shared, k_private):
    torch.manual_seed(0)
    K, n = 6, 10
    r = route(torch.randn(500, K, n) * 3, k_shared, k_private)
    assert (r.select.sum(-1) == k_shared + k_private).all()
    assert (r.active.sum(-1) <= k_shared + K * k_private).all() and (r.active.sum(-1) >= k_shared + k_private).all()
    assert ((r.mix_weights > 0) == r.select).all()
    # in the ranker, on a real batch (3 tasks)
    model = SMES(tiny_schema, {"experts": 8, "k_shared": k_shared, "k_private": k_private}).eval()
    r = model.routing(tiny_batch)
    assert (r.select.sum(-1) == k_shared + k_private).all() and (r.active.sum(-1) <= k_shared + 3 * k_private).all()


def _use(counts):
    """A routing with one pick per instance where expert i gets counts[i] instances and every gate's
    scores equal the use shares: ``(select, probs)``."""
    counts = torch.tensor(counts)
    share = counts.float() / counts.sum()
    select = torch.nn.functional.one_hot(torch.repeat_interleave(torch.arange(len(counts)), counts), len(counts)).bool()[:, None]
    return select, share.expand(select.shape).clone()


def test_balance_loss_is_one_and_minimal_at_uniform_use():
    assert float(balance_loss(*_use([5, 5, 5, 5]))) == pytest.approx(1.0)
    losses = [float(balance_loss(*_use(c))) for c in ([5, 5, 5, 5], [6, 5, 5, 4], [8, 6, 4, 2], [14, 2, 2, 2], [20, 0, 0, 0])]
    assert losses == sorted(losses) and losses[-1] == pytest.approx(4.0)  # all on one expert: n
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert float(balance_loss(*_use((torch.rand(4, generator=g) * 50).long().add(1).tolist()))) >= 1.0
    assert load_cv(torch.tensor([3, 3, 3])) == 0.0 and load_cv(torch.tensor([4, 0])) == pytest.approx(1.0)


def _train_loads(tiny_schema, batch, balance_weight):
    torch.manual_seed(0)
    model = SMES(tiny_schema, {"experts": 6, "k_shared": 1, "k_private": 1, "balance_weight": balance_weight})
    with torch.no_grad():
        model.gates.bias.view(3, 6)[:, :2] += 3.0  # every (task) gate starts out overloading experts 0 and 1
    before = load_cv(model.routing(batch).select.sum((0, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = training_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return before, load_cv(model.routing(batch).select.sum((0, 1)))


def test_balance_loss_lowers_the_load_cv_in_a_short_training_run(tiny_schema, batch_factory):
    batch = batch_factory(tiny_schema, 256)
    before, plain = _train_loads(tiny_schema, batch, 0.0)
    _, balanced = _train_loads(tiny_schema, batch, 1.0)
    assert balanced < 0.5 * plain and balanced < 0.5 * before


@pytest.mark.parametrize("train", [False, True])
def test_sparse_dispatch_equals_dense_compute_under_the_same_mask(tiny_schema, tiny_batch, train, monkeypatch):
    torch.manual_seed(0)
    sparse = SMES(tiny_schema, {"experts": 8, "k_shared": 1, "k_private": 1}).train(train)
    dense = SMES(tiny_schema, {"experts": 8, "k_shared": 1, "k_private": 1, "dispatch": "dense"}).train(train)
    dense.load_state_dict(sparse.state_dict())
    ran = []
    real = Experts.run
    monkeypatch.setattr(Experts, "run", lambda self, i, x, params=None: ran.append(len(x)) or real(self, i, x, params))
    out_sparse = sparse(tiny_batch)
    assert sum(ran) == int(sparse.routing(tiny_batch).active.sum()) < 8 * len(tiny_batch.domain)  # chosen rows only
    out_dense = dense(tiny_batch)
    torch.testing.assert_close(out_sparse, out_dense)
    out_sparse.sum().backward()
    out_dense.sum().backward()
    for (name, a), (_, b) in zip(sparse.named_parameters(), dense.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name) if a.grad is not None else None


@pytest.mark.parametrize("fields,message", [
    ({"k_shared": 0, "k_private": 0}, "not both 0"), ({"experts": 3, "k_shared": 2, "k_private": 2}, "must be <= experts"),
    ({"dispatch": "masked"}, "dispatch must be one of sparse, dense"), ({"balance_weight": -1}, "balance_weight must be >= 0"),
])
def test_bad_smes_configs_fail_with_one_line(tiny_schema, fields, message):
    with pytest.raises(UsageError, match=message):
        RANKERS.get("smes")(tiny_schema, fields)


def test_many_task_simulator_plants_skewed_rates_and_task_relations(tmp_path):
    summary = simulate(tmp_path, users=200, impressions=40, tasks=10, task_relation=0.7, seed=3)
    names = ["click", "like", "follow"] + [f"t{j:02d}" for j in range(3, 10)]
    assert summary["tasks"] == names and summary["task_parent"]["t03"] == "click" and summary["task_parent"]["t08"] == "follow"
    log, truth = pq.read_table(tmp_path / "behaviour.parquet"), pq.read_table(tmp_path / "truth.parquet")
    assert log.column_names[-7:] == names[3:] and truth.column_names == [f"p_{t}" for t in names]
    planted = np.geomspace(0.2, 0.003, 7)
    for name, rate in zip(names[3:], planted):
        p = truth.column(f"p_{name}").to_numpy().astype(np.float64)
        assert p.mean() == pytest.approx(rate, rel=1e-3)
        assert summary["positive_rate"][name] == pytest.approx(rate, rel=0.5)  # drawn labels around it
        logit, parent = np.log(p / (1 - p)), truth.column(f"p_{summary['task_parent'][name]}").to_numpy().astype(np.float64)
        assert np.corrcoef(logit, np.log(parent / (1 - parent)))[0, 1] == pytest.approx(0.7, abs=2e-3)
    assert sum(summary["positive_rate"][t] < 0.01 for t in names) >= 2
    assert yaml.safe_load((tmp_path / "rank.yaml").read_text())["data"]["tasks"] == names
    three = tmp_path / "three"
    simulate(three, users=200, impressions=40, seed=3)  # the default keeps the 3-task log
    assert pq.read_table(three / "behaviour.parquet").column_names[-3:] == ["click", "like", "follow"]


@pytest.fixture(scope="module")
def smes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smes")
    simulate(root, **TINY_SIM, tasks=8)
    config = tiny_rank_config()
    config["data"]["tasks"] = ["click", "like", "follow"] + [f"t{j:02d}" for j in range(3, 8)]
    config["model"] = {"name": "smes", "embedding_dim": 8, "experts": 6, "k_shared": 1, "k_private": 1, "balance_weight": 0.05,
                       "expert": [16], "tower": [8]}
    (root / "rank.yaml").write_text(yaml.safe_dump(config))
    return root


def test_rank_train_takes_smes_from_yaml_and_rank_export_works(smes_run, tmp_path, capsys):
    assert main(["rank", "train", "--config", str(smes_run / "rank.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "smes" and len(report["metrics"]) == 8
    assert report["config"]["model"]["k_shared"] == 1 and report["train"]["history"][0]["aux_loss"] > 0
    out = tmp_path / "export"
    assert main(["rank", "export", "--run", str(smes_run / "run"), "--out", str(out), "--json", "--no-onnx"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["model"] == "smes" and exported["max_abs_diff"] < 1e-5 and (out / "ranker.pt2").is_file()
