import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seq_data import planted, write_lcrec

from mmrec.cli import main
from mmrec.errors import UsageError
from mmrec.pipelines.retrieve import TrainJob, evaluate_run, serve_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.retrieval import KuaiFormer, RetrieverConfig, interest_scores, sampled_softmax_loss
from mmrec.retrieval.kuaiformer import full_softmax_loss, smoothed_cross_entropy

TINY = dict(dim=32, layers=1, heads=2, max_len=10, dropout=0.0)


@pytest.mark.parametrize("readout", ["queries", "last"])
def test_causal_mask_future_items_never_change_earlier_outputs(readout):
    torch.manual_seed(0)
    model = KuaiFormer(RetrieverConfig(n_items=30, readout=readout, interests=3, **TINY)).eval()
    hist = torch.tensor([[-1, -1, 4, 7, 9, 2, 11, 5]])
    changed = hist.clone()
    changed[0, 5:] = torch.tensor([20, 21, 22])
    a, b = model.positions(hist), model.positions(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)  # positions before the change read the same items
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)
    assert not torch.allclose(model(hist), model(changed), atol=1e-4)  # the interests read the whole history
    every, every_changed = model.interests_at(hist), model.interests_at(changed)  # (1, L, k, D): training's one pass
    assert torch.allclose(every[:, :5], every_changed[:, :5], atol=1e-6) and not torch.allclose(every[:, 5:], every_changed[:, 5:], atol=1e-4)
    assert torch.allclose(every[:, -1], model(hist), atol=1e-5)  # the last position's interests are the served ones


def test_logq_correction_follows_the_formula():
    g = torch.Generator().manual_seed(0)
    users, vectors = torch.randn(6, 2, 8, generator=g), torch.randn(6, 8, generator=g)
    targets = torch.tensor([0, 1, 2, 3, 4, 1])  # item 1 twice: its other column is masked
    log_p = torch.log(torch.tensor([0.4, 0.3, 0.1, 0.1, 0.05, 0.05]))
    logits = (users @ vectors.T).amax(1)  # (B, k, C) max over interests
    q = log_p[targets] + math.log(6)  # expected count among the batch's 6 candidates
    expected = logits - q
    expected[0, 0] = expected[0, 0]
    for b in range(6):
        for c in range(6):
            if b != c and targets[b] == targets[c]:
                expected[b, c] = -torch.inf
    got = sampled_softmax_loss(users, targets, vectors, log_p=log_p)
    assert got == pytest.approx(F.cross_entropy(expected, torch.arange(6)).item(), rel=1e-6)
    plain = sampled_softmax_loss(users, targets, vectors)
    assert abs(got - plain) > 1e-3
    negatives = torch.tensor([5, 0])
    with_neg = sampled_softmax_loss(users, targets, vectors, log_p=log_p, negatives=negatives,
                                    negative_vectors=vectors[[4, 0]], n_items=6)
    full = torch.cat([logits - q[None], interest_scores(users, vectors[[4, 0]]) - math.log(2 / 6)], 1)
    full[:, :6] = expected[:, :6]
    full[0, 7] = -torch.inf  # negative item 0 is row 0's target
    assert with_neg == pytest.approx(F.cross_entropy(full, torch.arange(6)).item(), rel=1e-6)


def test_label_smoothing_spreads_the_target_over_the_candidates_a_row_can_pick():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(5, 9, generator=g), torch.tensor([0, 3, 8, 2, 2])
    assert smoothed_cross_entropy(logits, targets, 0.2) == pytest.approx(
        F.cross_entropy(logits, targets, label_smoothing=0.2).item(), rel=1e-6)  # torch's, when nothing is masked
    assert smoothed_cross_entropy(logits, targets, 0.0) == F.cross_entropy(logits, targets)
    masked = logits.clone()
    masked[0, 5:] = -torch.inf  # row 0 can pick 5 candidates only: the masked ones take no share
    got = smoothed_cross_entropy(masked, targets, 0.3)
    logp0 = F.log_softmax(logits[0, :5], -1)
    row0 = -(0.7 * logp0[0] + 0.3 * logp0.mean())
    rest = F.cross_entropy(logits[1:], targets[1:], label_smoothing=0.3, reduction="none")
    assert torch.isfinite(got) and got == pytest.approx(((row0 + rest.sum()) / 5).item(), rel=1e-6)
    # the two losses pass it on: a batch with a repeated target (a masked column) stays finite
    users, vectors = torch.randn(6, 2, 8, generator=g), torch.randn(6, 8, generator=g)
    batch = torch.tensor([0, 1, 2, 3, 4, 1])
    smooth, plain = (sampled_softmax_loss(users, batch, vectors, label_smoothing=e) for e in (0.2, 0.0))
    assert torch.isfinite(smooth) and abs(smooth - plain) > 1e-3
    items = torch.randn(10, 8, generator=g)
    assert full_softmax_loss(users, batch, items, label_smoothing=0.2) == pytest.approx(
        F.cross_entropy(interest_scores(users, items), batch, label_smoothing=0.2).item(), rel=1e-6)
    for bad in ({"label_smoothing": 1.0}, {"label_smoothing": -0.1}, {"model": "pop", "label_smoothing": 0.1}):
        with pytest.raises(UsageError, match="label_smoothing"):
            TrainJob(**bad)


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    write_lcrec(root / "src", "P", planted(users=300, items=40, length=8, noise=0.1))
    import_sequences(root / "src", "P", root / "data")
    return root


LOOP = {"epochs": 15, "patience": 3, "progress": False}


@pytest.fixture(scope="module")
def trained(planted_data):
    """The popularity and KuaiFormer runs ``pop/`` and ``kf/`` on the planted data, trained once for the
    module (every test that serves or evaluates them gets them from here, whatever the order)."""
    root = planted_data
    pop = train(root / "data", root / "pop", {"model": "pop"})
    kf = train(root / "data", root / "kf", {"model": "kuaiformer", "loss": "inbatch", "lr": 5e-3, "batch_size": 64, "uniform_negatives": 16,
                                            "model_config": {**TINY, "interests": 2}, "loop": LOOP})
    return root, pop, kf


def test_retriever_learns_a_planted_next_item_rule_far_above_pop(trained):
    root, pop, kf = trained
    sas = train(root / "data", root / "sas", {"model": "sasrec", "lr": 5e-3, "batch_size": 32,
                                              "model_config": TINY, "loop": LOOP})
    assert pop["validation"]["recall@10"] < 0.4
    assert kf["validation"]["recall@10"] > 0.8 and kf["validation"]["ndcg@10"] > 3 * pop["validation"]["ndcg@10"]
    assert sas["validation"]["recall@10"] > 0.8
    smooth = train(root / "data", root / "sas-ls", {"model": "sasrec", "lr": 5e-3, "batch_size": 32, "label_smoothing": 0.3,
                                                    "model_config": TINY, "loop": LOOP})
    assert smooth["validation"]["recall@10"] > 0.8  # the smoothed target still learns the rule
    assert smooth["train"]["history"][0]["loss"] > sas["train"]["history"][0]["loss"] + 0.1  # and is the loss trained
    assert json.loads((root / "sas-ls" / "config.json").read_text())["job"]["label_smoothing"] == 0.3
    assert {p.name for p in (root / "kf").iterdir()} >= {"model.safetensors", "config.json", "vocab.json", "metrics.json"}
    assert kf["train"]["best_epoch"] is not None and kf["train"]["samples_per_s"] > 0
    again = evaluate_run(root / "kf")  # reloaded weights give the same validation figures
    assert again["ndcg@10"] == pytest.approx(kf["validation"]["ndcg@10"], abs=1e-6)


def test_cli_evaluate_test_file_and_serving(trained, tmp_path, capsys):
    root = trained[0]
    (tmp_path / "test.tsv").write_text("u0\t3\nu1\t999\nnobody\t3\nu2\t5\n")
    assert main(["retrieve", "evaluate", "--run", str(root / "pop"), "--test", str(tmp_path / "test.tsv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["users"] == 2 and report["skipped"] == {"unknown_user": 1, "unknown_item": 1}
    (tmp_path / "bad.tsv").write_text("nobody\t3\n")
    assert main(["retrieve", "evaluate", "--run", str(root / "pop"), "--test", str(tmp_path / "bad.tsv")]) == 1
    exact = serve_run(root / "kf", kind="exact", k=20)
    assert exact["recall@20_vs_exact"] == pytest.approx(1.0) and exact["items_scored_per_query"] == 40
    ivf = serve_run(root / "kf", kind="IVF4,Flat", k=20)
    assert ivf["items_scored_per_query"] < 40 and 0 < ivf["recall@20_vs_exact"] <= 1
    assert main(["retrieve", "serve", "--run", str(root / "kf"), "--kind", "exact", "--k", "10"]) == 0
    assert "recall@10 vs exact 1.0000" in capsys.readouterr().out


def test_tree_serving_beam_trades_items_scored_for_recall(trained):
    root = trained[0]
    full = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=16, max_users=150)
    assert full["recall@10_vs_exact"] == pytest.approx(1.0) and full["items_scored_per_query"] >= 40  # beam = widest level: exhaustive
    narrow = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=1, max_users=150)
    assert narrow["items_scored_per_query"] < 0.5 * full["items_scored_per_query"] and narrow["recall@10_vs_exact"] < 1.0
    tuned = serve_run(root / "kf", kind="tree", k=10, branching=4, max_users=150, target_recall=0.9)
    chosen = [b for b in tuned["beams"] if b["beam"] == tuned["beam"]][-1]
    assert tuned["beam_tuned_on_users"] == 150  # users 150..299, not the reported ones
    assert chosen["recall@10_vs_exact"] >= 0.9 and all(b["recall@10_vs_exact"] < 0.9 for b in tuned["beams"] if b["beam"] < tuned["beam"])
    tried = sorted(b["beam"] for b in tuned["beams"])
    assert tuned["beam"] == 1 or tuned["beam"] - 1 in tried  # bisection: the beam just below the chosen one missed the target
    upper = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=4, upper_beam=1, max_users=150)
    wide = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=4, max_users=150)
    assert upper["upper_beam"] == 1 and upper["items_scored_per_query"] < wide["items_scored_per_query"]
    assert 0 < tuned["scored_fraction"] and tuned["factory"] == f"tree(branching=4, beam={tuned['beam']}, mips)"


def test_joint_tree_search_shares_one_beam_among_a_users_interests(trained):
    root = trained[0]
    full = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=16, max_users=150, joint=True)
    assert full["recall@10_vs_exact"] == pytest.approx(1.0) and full["joint"]  # exhaustive beam: exact max over interests
    joint = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=2, max_users=150, joint=True)
    apart = serve_run(root / "kf", kind="tree", k=10, branching=4, beam=2, max_users=150)
    assert joint["interests"] == 2 and joint["factory"] == "tree(branching=4, beam=2, joint, mips)"
    # one beam per user visits about the nodes of one interest's search (subtrees differ in width);
    # each node it visits costs k dot products, as k separate searches do
    assert joint["items_scored_per_query"] == pytest.approx(apart["items_scored_per_query"], rel=0.05)
    assert joint["items_scored_per_user"] == pytest.approx(2 * joint["items_scored_per_query"])
    assert 0 < joint["recall@10_vs_exact"] < 1.0


def test_an_epoch_reads_every_training_position_once_in_batches_of_about_batch_size():
    from mmrec.retrieval import Sequences
    from mmrec.retrieval.samples import TrainingSamples as _Samples

    rng = np.random.default_rng(0)
    seqs = Sequences.from_lists([rng.integers(0, 50, size=int(rng.integers(2, 30))).tolist() for _ in range(200)], 50)
    samples = _Samples(seqs, max_len=10)
    expected = sum(min(n - 1, 10) for n in seqs.lengths)
    assert len(samples) == expected
    seen = []
    for batch in samples.epochs(batch_size=32, seed=0)(0):
        n = int((batch["targets"] >= 0).sum())
        assert n <= 32 + 10  # one user past the budget at most
        hist, targets = batch["history"], batch["targets"]
        seen += [(tuple(hist[r, : c + 1][hist[r, : c + 1] >= 0].tolist()), int(targets[r, c])) for r, c in zip(*np.nonzero(targets.numpy() >= 0))]
    assert len(seen) == expected
    window = [max(0, len(seqs[u]) - 11) for u in range(len(seqs))]  # each user's last 11 items: 10 inputs, 10 targets
    truth = [(tuple(seqs[u][window[u] : t].tolist()), int(seqs[u][t])) for u in range(len(seqs)) for t in range(window[u] + 1, len(seqs[u]))]
    assert sorted(seen) == sorted(truth)


def test_mips_lift_keeps_inner_products_and_puts_every_item_on_one_sphere(trained):
    from mmrec.retrieval.serving import mips_lift

    rng = np.random.default_rng(0)
    items = rng.standard_normal((50, 6)).astype(np.float32) * rng.uniform(0.1, 3, (50, 1)).astype(np.float32)
    queries = rng.standard_normal((7, 6)).astype(np.float32)
    lifted_items, lifted_queries = mips_lift(items, queries)
    assert lifted_items.shape == (50, 7) and lifted_queries.shape == (7, 7)
    np.testing.assert_allclose(lifted_queries @ lifted_items.T, queries @ items.T, rtol=1e-5, atol=1e-5)
    norms = np.linalg.norm(lifted_items, axis=1)
    np.testing.assert_allclose(norms, norms.max(), rtol=1e-5)
    # served through the lifted tree: an exhaustive beam is exact, a narrow one scores fewer items
    full = serve_run(trained[0] / "kf", kind="tree", k=10, branching=4, beam=16, max_users=150)
    narrow = serve_run(trained[0] / "kf", kind="tree", k=10, branching=4, beam=1, max_users=150)
    plain = serve_run(trained[0] / "kf", kind="tree", k=10, branching=4, beam=1, max_users=150, mips=False)
    assert full["recall@10_vs_exact"] == pytest.approx(1.0) and full["factory"] == "tree(branching=4, beam=16, mips)"
    assert narrow["items_scored_per_query"] < 0.5 * full["items_scored_per_query"] and plain["factory"] == "tree(branching=4, beam=1)"
