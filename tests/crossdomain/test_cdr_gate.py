"""The gated count residual, leakage and the baselines as run folders (all SYNTHETIC)."""

import dataclasses

import numpy as np
import pytest
import torch
from cdr_synth import write_mixed_pair, write_partner_pair

from mmrec.crossdomain import CDRConfig
from mmrec.crossdomain.baselines import GRID, evaluate_baseline, fit_baseline, select_baseline
from mmrec.crossdomain.files import load_pair
from mmrec.crossdomain.train import build_model, train_model
from mmrec.pipelines.cdr import evaluate_run, export_user_features, load_run, train_cdr

FAST = dict(dim=8, maxlen=8, batch_size=128, lr=0.02, gnn_topk=4, epochs=3, patience=3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdr_mixed")
    return root, write_mixed_pair(root)


@pytest.fixture(scope="module")
def partner(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdr_partner_gate")
    write_partner_pair(root)
    return root


def _gate(model, users, items):
    with torch.no_grad():
        return model.residual.weight(1, torch.as_tensor(users), torch.as_tensor(items)).numpy()


def test_the_gate_leans_on_the_count_for_co_interaction_users_and_not_for_taste_users(mixed):
    # SYNTHETIC: partner users' bb items are the partners of their 3 aa items (the count finds them),
    # taste users' bb items follow their own bb taste and their 24 aa items are noise to the count
    root, planted = mixed
    data = load_pair(root, "aa_bb")
    model, report = train_model(data, CDRConfig(model="farm", **FAST), targets=("bb",))
    held = data.domains[1].valid
    w = {kind: _gate(model, held[np.isin(held[:, 0], users), 0], held[np.isin(held[:, 0], users), 1][:, None]).mean()
         for kind, users in (("partner", planted["partner_users"]), ("taste", planted["taste_users"]))}
    # both started at 4; the taste users' weight falls towards 0, the partner users' stays high
    assert w["partner"] > 1.0 > 0.5 > w["taste"] and w["partner"] > 4 * w["taste"], w
    # one weight per domain cannot tell them apart: it is the same for every user and item
    single = build_model(CDRConfig(model="farm", residual_gate="global", dim=8), data)
    assert _gate(single, [0, 1], [[0], [5]]).shape == (1, 1)


def _losses(data, **overrides):
    config = CDRConfig(model="unicdr+", **{**FAST, "epochs": 2, **overrides})
    _, report = train_model(data, config, targets=("bb",))
    return [h["loss"] for h in report["history"]]


def test_training_reads_no_held_out_item(partner, monkeypatch):
    # two copies of the pair that differ only in their held-out items: the training losses of every epoch
    # are identical (evaluation selects the epoch but never feeds the training), so nothing in training
    # (batches, negatives, item graph, count residual) read a held-out pair
    data = load_pair(partner, "aa_bb")
    other = load_pair(partner, "aa_bb")
    rng = np.random.default_rng(1)
    other.domains[1].valid = np.stack([other.domains[1].valid[:, 0], rng.integers(0, 1200, len(other.domains[1].valid))], 1)
    clean = _losses(data)
    assert clean == _losses(other)
    # positive control: a residual whose counts also see the held-out pairs (a planted leak) is detected
    import mmrec.crossdomain.residual as residual

    def leaky(name, data, target, **params):
        dom = data.domains[target]
        if dom.valid is None:
            return fit_baseline(name, data, target, **params)
        leaked = dataclasses.replace(dom, train=np.concatenate([dom.train, dom.valid]))
        domains = tuple(leaked if d == target else other for d, other in enumerate(data.domains))
        return fit_baseline(name, dataclasses.replace(data, domains=domains), target, **params)

    monkeypatch.setattr(residual, "fit_baseline", leaky)
    assert _losses(data) != clean


@pytest.mark.parametrize("name", ["count", "ease", "item-knn"])
def test_a_baseline_run_folder_evaluates_as_evaluate_baseline(partner, tmp_path, name):
    run = tmp_path / name
    report = train_cdr(partner, "aa_bb", out=run, config=CDRConfig(model=name, dim=8))
    data = load_pair(partner, "aa_bb")
    key = name.replace("-", "_")
    params, metrics, _ = select_baseline(key, data, 1)
    assert report["params"]["bb"] == params and report["metrics"]["bb"] == metrics and report["epochs_run"] == 0
    if GRID[key]:
        assert set(params) == set(GRID[key]) and params[next(iter(GRID[key]))] in next(iter(GRID[key].values()))
    again = evaluate_run(run, partner / "bb_aa" / "valid.txt")
    assert again["metrics"] == evaluate_baseline(fit_baseline(key, data, 1, **params), data, 1)
    assert again["metrics"]["HR@10"] > 0.5  # SYNTHETIC partners: every baseline finds them
    model, config, _ = load_run(run)
    assert config.model == name and model.params[1] == params
    manifest = export_user_features(run, tmp_path / "users", target="bb", users=np.arange(5))
    assert manifest["users"] == 5 and manifest["dim"] == 8


def test_cli_trains_evaluates_and_exports_the_count(partner, tmp_path, capsys):
    import json

    from mmrec.cli import main

    run = tmp_path / "count"
    assert main(["cdr", "train", "--data", str(partner), "--pair", "aa_bb", "--model", "count", "--out", str(run),
                 "--set", "dim=8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "count" and report["stopped"] == "selected" and report["params"] == {"aa": {}, "bb": {}}
    assert main(["cdr", "evaluate", "--run", str(run), "--test", str(partner / "bb_aa" / "valid.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == report["metrics"]["bb"]
    assert main(["cdr", "export", "--run", str(run), "--out", str(tmp_path / "users"), "--target", "bb", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dim"] == 8


def test_a_run_from_before_the_gate_still_loads(partner, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    report = train_cdr(partner, "aa_bb", out=run, targets=("bb",),
                       config=CDRConfig(model="unicdr", residual_gate="global", **{**FAST, "epochs": 1}))
    # rewrite it as the previous version wrote it: a plain weight per domain, no residual_gate field
    tensors = load_file(str(run / "model.safetensors"))
    tensors["model.residual.weight"] = torch.nn.functional.softplus(tensors.pop("model.residual.bias"))
    save_file(tensors, str(run / "model.safetensors"))
    config = json.loads((run / "config.json").read_text())
    del config["model"]["residual_gate"], config["model"]["residual_init"]
    (run / "config.json").write_text(json.dumps(config))
    model, loaded, _ = load_run(run)
    assert loaded.residual_gate == "global"
    again = evaluate_run(run, partner / "bb_aa" / "valid.txt")["metrics"]
    assert again["NDCG@10"] == pytest.approx(report["metrics"]["bb"]["NDCG@10"], abs=1e-6)
