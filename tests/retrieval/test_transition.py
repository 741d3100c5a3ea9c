"""The transition term of the sequential retrievers (mmrec.retrieval.transition) on SYNTHETIC data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seq_data import write_lcrec

from mmrec.pipelines.retrieve import evaluate_run, load_run, serve_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.retrieval import KuaiFormer, RetrieverConfig, Sequences
from mmrec.retrieval.data import read_sequences
from mmrec.retrieval.kuaiformer import FULL_SOFTMAX_MAX_ITEMS, default_loss
from mmrec.retrieval.samples import TrainingSamples
from mmrec.retrieval.transition import TransitionTerm, hybrid_top, sources_at

TINY = dict(dim=16, layers=1, heads=2, max_len=8, dropout=0.0)


def successor_walks(users: int, items: int, length: int, seed: int = 0, noise: float = 0.1) -> list[list[int]]:
    """SYNTHETIC: a random successor table over ``items``; each user starts at a random item and follows it
    (a random item with probability ``noise``). The signal is only in transitions: no item is special."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(items)
    out = []
    for _ in range(users):
        seq = [int(rng.integers(items))]
        for _ in range(length - 1):
            seq.append(int(successor[seq[-1]]) if rng.random() >= noise else int(rng.integers(items)))
        out.append(seq)
    return out


def _import(root, sequences):
    write_lcrec(root / "src", "T", sequences)
    import_sequences(root / "src", "T", root / "data")
    return root / "data"


def test_training_reads_each_samples_own_transition_left_out():
    # every training sample's count equals the count over the data with that one transition removed
    rng = np.random.default_rng(0)
    seqs = Sequences.from_lists([rng.integers(0, 12, size=int(rng.integers(3, 9))).tolist() for _ in range(40)], 12)
    term = TransitionTerm(12, order=1).fit(seqs)
    term.slope.data.fill_(0.5)
    batch = TrainingSamples(seqs, max_len=8).batch(torch.arange(len(seqs)))
    width = batch["history"].shape[1]
    checked = 0
    for u in range(0, len(seqs), 5):
        seq = seqs[u].tolist()
        for p in np.nonzero((batch["targets"][u] >= 0).numpy())[0][::2]:
            cut = len(seq) - 1 - (width - int(p))  # the sample's source is seq[cut], its target seq[cut + 1]
            source, target = batch["history"][u, p : p + 1], batch["targets"][u, p : p + 1]
            assert (seq[cut], seq[cut + 1]) == (int(source), int(target))
            read = term.add_to(torch.zeros(1, 12), source[:, None], target)  # what training adds to the logits
            split = [seqs[v].tolist() for v in range(len(seqs)) if v != u] + [seq[: cut + 1], seq[cut + 1 :]]
            alone = TransitionTerm(12, order=1).fit(Sequences.from_lists(split, 12))  # the data without this transition
            alone.slope.data.fill_(0.5)  # the evidence gate reads the row total: left out too
            assert torch.allclose(read, alone(source[:, None]))
            checked += 1
    assert checked > 10
    once = TransitionTerm(3, order=1).fit(Sequences.from_lists([[0, 1], [0, 2], [0, 2]], 3))
    src, t = torch.tensor([[0]]), torch.tensor([1])  # 0 -> 1 occurs once: in training its own count is gone
    assert once(src, targets=t)[0, 1] == 0 and once(src)[0, 1] > 0  # at serving the count is read as it is
    assert once(src, targets=t)[0, 2].item() == pytest.approx(np.log(1 + 2))  # 0 -> 2 twice, gate 1 at the start
    dense = once.add_to(torch.zeros(1, 3), src, t)
    assert torch.allclose(dense, once(src, torch.arange(3)[None], targets=t))  # the sparse path of the full softmax = the pairwise one


def test_a_transition_seen_once_cannot_teach_the_gate(tmp_path):
    # SYNTHETIC: random sequences over many items, almost every transition unique. Read leave-one-out, the
    # count says nothing about the target and the learned gate falls; a leaky count (target always >= 1) would
    # be a perfect training feature and push the gate up.
    rng = np.random.default_rng(1)
    data = _import(tmp_path, [rng.integers(0, 500, size=6).tolist() for _ in range(200)])
    train(data, tmp_path / "run", {"model": "sasrec", "lr": 1e-2, "batch_size": 64, "model_config": {**TINY, "transition": True,
          "transition_gate": "scalar", "transition_init": 1.0}, "loop": {"epochs": 3, "progress": False}})
    model, _ = load_run(tmp_path / "run")
    assert F.softplus(model.transition.bias[0]).item() < 0.9  # started at 1

    seqs, _ = read_sequences(data)
    history, _ = seqs.split_last()
    leaky = KuaiFormer(RetrieverConfig(n_items=seqs.n_items, readout="last", interests=1, **TINY, transition=True, transition_gate="scalar",
                                       transition_init=1.0))
    leaky.transition.fit(history)
    optimizer = torch.optim.Adam(leaky.transition.parameters(), lr=0.1)
    batch = TrainingSamples(history, 8).batch(torch.arange(len(history)))
    keep = batch["targets"] >= 0
    sources, targets = sources_at(batch["history"], 1)[keep], batch["targets"][keep]
    for _ in range(20):  # the gate alone, fitted on the counts as they are (not left out): it grows
        optimizer.zero_grad()
        F.cross_entropy(leaky.transition(sources), targets).backward()
        optimizer.step()
    assert F.softplus(leaky.transition.bias[0]).item() > 2


@pytest.fixture(scope="module")
def walks(tmp_path_factory):
    root = tmp_path_factory.mktemp("walks")
    return root, _import(root, successor_walks(users=300, items=300, length=6))


@pytest.mark.parametrize("model,loss", [("sasrec", "full"), ("kuaiformer", "inbatch")])
def test_hybrid_beats_the_same_model_without_it_when_the_signal_is_in_transitions(walks, model, loss):
    root, data = walks
    job = {"model": model, "loss": loss, "lr": 5e-3, "batch_size": 64, "model_config": {**TINY, "interests": 2},
           "loop": {"epochs": 3, "progress": False}}
    plain = train(data, root / f"{model}-plain", job)["validation"]
    hybrid = train(data, root / f"{model}-hybrid", {**job, "model_config": {**TINY, "interests": 2, "transition": True}})["validation"]
    cooc = train(data, root / "cooc", {"model": "cooc"})["validation"]
    assert hybrid["ndcg@10"] > 2 * plain["ndcg@10"] and hybrid["recall@10"] > plain["recall@10"] + 0.3
    assert hybrid["recall@10"] >= cooc["recall@10"] - 0.02


@pytest.fixture(scope="module")
def hybrid_run(walks):
    root, data = walks
    run = root / "kf-hybrid2"
    train(data, run, {"model": "kuaiformer", "lr": 5e-3, "batch_size": 64, "loop": {"epochs": 2, "progress": False},
                      "model_config": {**TINY, "interests": 2, "transition": True, "transition_order": 2}})
    return run, data


def test_two_stage_serving_returns_the_brute_force_hybrid_top_k(hybrid_run):
    run, data = hybrid_run
    served = serve_run(run, kind="exact", k=10, max_users=200)
    assert served["recall@10_vs_exact"] == pytest.approx(1.0) and "transition candidates" in served["factory"]
    model, config = load_run(run)
    history, _ = read_sequences(data)[0].split_last()
    hist = history.padded(np.arange(50), config["model"]["max_len"])
    truth = model.score(hist).topk(10).indices.numpy()
    ip_top = torch.topk(model.score(hist) - model.transition(torch.stack([torch.as_tensor(hist[:, -1]), torch.as_tensor(hist[:, -2])], 1)),
                        10).indices.numpy()  # the first stage: exact top-10 of the inner product alone
    assert (ip_top != truth).any()  # the term changes the ranking, so the rows matter
    assert all(set(a) == set(b) for a, b in zip(hybrid_top(model, hist, ip_top, 10), truth))
    ivf = serve_run(run, kind="IVF4,Flat", k=10, max_users=200)  # an approximate first stage: recall below 1 but the rows still count
    assert 0 < ivf["recall@10_vs_exact"] <= 1 and ivf["recall@10_vs_exact"] >= ivf["index_recall@10_vs_exact"]


def test_a_loaded_hybrid_run_scores_like_the_trained_one(hybrid_run):
    run, data = hybrid_run
    model, config = load_run(run)
    history, _ = read_sequences(data)[0].split_last()
    rebuilt = KuaiFormer(RetrieverConfig(**config["model"] | {"code_sizes": ()}))
    rebuilt.transition.fit(history)  # the counts rebuilt from the data equal the saved ones
    rebuilt.load_state_dict({k: v for k, v in model.state_dict().items() if "transition." not in k or k.endswith(("bias", "slope"))},
                            strict=False)
    hist = history.padded(np.arange(100), config["model"]["max_len"])
    assert torch.equal(model.score(hist), rebuilt.eval().score(hist))
    again, _ = load_run(run)
    assert torch.equal(model.score(hist), again.score(hist))
    saved = __import__("json").loads((run / "metrics.json").read_text())
    assert evaluate_run(run)["ndcg@10"] == pytest.approx(saved["validation"]["ndcg@10"], abs=1e-9)


def test_the_default_loss_follows_the_catalogue_size(walks):
    assert default_loss(12_000) == "full" and default_loss(FULL_SOFTMAX_MAX_ITEMS + 1) == "inbatch"
    root, data = walks
    report = train(data, root / "kf-default", {"model": "kuaiformer", "model_config": TINY, "loop": {"epochs": 1, "progress": False}})
    assert report["train"]["loss"] == "full"
