"""Preference alignment of the generative retriever (OneRec-V2 GBPO with duration-aware shaping, OneRec-V1
DPO) on a SYNTHETIC watch world whose truth is planted: the shaping and the GBPO bounds by hand, the
world's truth recovered from its logs, stable alignment over many steps, a saved aligned run that
loads with the same beams."""

import json
import math

import numpy as np
import pytest
import torch

from mmrec.cli import main
from mmrec.errors import UsageError
from mmrec.pipelines.retrieve import evaluate_run, load_run, train
from mmrec.pipelines.retrieve_align import align_run, truth_metrics
from mmrec.quantization.files import load_codes
from mmrec.retrieval.data import read_sequences
from mmrec.retrieval.generative import GenerativeConfig, GenerativeRetriever
from mmrec.retrieval.generative_beam import CodeTrie, sample_tuples
from mmrec.retrieval.preference import (
    DurationAwareReward,
    PreferenceConfig,
    advantages,
    dpo_loss,
    dpo_pairs,
    gbpo_denominator,
    gbpo_loss,
    kl_to_reference,
    pg_loss,
)
from mmrec.synthetic.watch_world import WatchWorld, simulate_watch_world

SMALL_WORLD = dict(topics=4, duration_classes=4, slots=2, users=300, heldout_users=100, length=10, seed=3)
TINY = dict(arch="lazy-decoder", dim=32, heads=2, decoder_layers=1, dropout=0.0, max_len=8, beam=10)


def test_duration_aware_reward_is_the_percentile_within_the_duration_bucket():
    # two buckets split at the median duration 55: short items watched 1, 2 s; long items 3, 4 s
    shaper = DurationAwareReward(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 10.0, 100.0, 100.0]), buckets=2)
    assert shaper.edges.tolist() == [55.0]
    got = shaper(np.array([2.0, 3.5, 5.0, 0.0, 1.5]), np.array([10.0, 100.0, 100.0, 10.0, 12.0]))
    # 2 s of a short item: 1 below + half of 1 equal, of 2 -> 0.75; 3.5 s of a long one: 1 of 2 below -> 0.5
    assert got.tolist() == [0.75, 0.5, 1.0, 0.0, 0.5]
    assert got[1] < got[0]  # more seconds of a long video, yet a lower shaped reward than 2 s of a short one


def test_group_and_quantile_advantages_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    std = math.sqrt(5 / 3)  # unbiased std of 1, 2, 3, 4
    group = advantages(rewards, PreferenceConfig(advantage="group"))
    assert torch.allclose(group[0], torch.tensor([-1.5, -0.5, 0.5, 1.5]) / std, atol=1e-5)
    assert torch.allclose(group[2], torch.zeros(4))
    quantile = advantages(rewards, PreferenceConfig(advantage="quantile", positive_quantile=0.25, negative_quantile=0.25))
    assert quantile.tolist() == [[-1, 0, 0, 1], [1, -1, 0, 0], [0, 0, 0, 0]]


def test_gbpo_denominator_by_hand():
    pi = torch.tensor([0.2, 0.6, 0.2, 0.7])
    pi_old = torch.tensor([0.5, 0.5, 0.5, 0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    # positives: max(pi_old, pi); negatives: max(1 - pi_old, 1 - pi)
    assert torch.allclose(gbpo_denominator(pi, pi_old, adv), torch.tensor([0.5, 0.6, 0.8, 0.5]))


def test_gbpo_gradient_is_bounded_by_binary_cross_entropy():
    """Per code, d L / d log pi of GBPO never exceeds that of BCE (-log pi for positives, -log(1 - pi)
    for negatives), equals it on-policy, and a negative with a tiny probability gets a tiny push, not
    policy gradient's 1 / pi."""
    pis = torch.tensor([1e-4, 0.01, 0.2, 0.5, 0.8, 0.99])
    for pi_old in pis:
        for sign in (1.0, -1.0):
            logp = pis.log().clone().requires_grad_(True)
            adv = torch.full((1, len(pis)), sign)
            gbpo_loss(logp.view(1, -1, 1), torch.full((1, len(pis), 1), float(pi_old.log())), adv).backward()
            grad = logp.grad.abs() * len(pis)  # the loss is a mean over the codes
            bce = torch.ones_like(pis) if sign > 0 else pis / (1 - pis)  # |d(-log pi)/d log pi|, |d(-log(1 - pi))/d log pi|
            assert (grad <= bce * (1 + 1e-5)).all()
            on_policy = torch.isclose(pis, pi_old)
            assert torch.allclose(grad[on_policy], bce[on_policy], rtol=1e-5)
    # d L / d pi of a negative at pi = 1e-4: policy gradient -A log pi gives 1 / pi = 10000; GBPO 1 / (1 - pi) ~ 1
    pi = torch.tensor([1e-4], requires_grad=True)
    gbpo_loss(pi.log().view(1, 1, 1), pi.detach().log().view(1, 1, 1), torch.tensor([[-1.0]])).backward()
    assert pi.grad.item() == pytest.approx(1 / (1 - 1e-4))


def test_dpo_and_kl_by_hand():
    # beta [(-1 + 1.5) - (-2 + 1.5)] = 0.5 * 1.0 -> -log sigmoid(0.5)
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), beta=0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))))
    rows, chosen, rejected = dpo_pairs(torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3], [0.7, 0.2, 0.4]]))
    assert rows.tolist() == [0, 2] and chosen.tolist() == [1, 0] and rejected.tolist() == [0, 1]
    # policy gradient: -mean(A log pi) = -(2 log 0.5 + (-1) log 0.25) / 2 = log 2 - log 2 = 0; then one code alone
    assert pg_loss(torch.tensor([[[math.log(0.5)], [math.log(0.25)]]]), torch.tensor([[2.0, -1.0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert pg_loss(torch.tensor([[[math.log(0.5)]]]), torch.tensor([[2.0]])).item() == pytest.approx(2 * math.log(2))
    assert kl_to_reference(torch.zeros(3), torch.zeros(3)).item() == 0.0
    assert kl_to_reference(torch.zeros(1), torch.tensor([math.log(2.0)])).item() == pytest.approx(2 - math.log(2) - 1)


def test_samples_follow_the_model_distribution_over_real_items():
    torch.manual_seed(0)
    codes = np.stack(np.meshgrid(np.arange(3), np.arange(2), np.arange(2), indexing="ij"), -1).reshape(-1, 3)[:10]  # 10 of 12 tuples
    model = GenerativeRetriever(GenerativeConfig(n_items=10, code_sizes=(3, 2, 2), **TINY)).eval()
    model.set_codes(codes)
    trie = CodeTrie.of(model)
    history = np.array([[1, 4, 7]])
    drawn = sample_tuples(model, trie, history, 6000, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (1, 6000) and (drawn >= 0).all()
    tuples = trie.tuples
    with torch.no_grad():
        levels = [lp[0].exp().numpy() for lp in model.level_log_probs(model.encode(history), torch.as_tensor(tuples)[None])]
    # each level's softmax renormalised over the codes the trie allows after the tuple's prefix
    p = np.ones(len(tuples))
    for n, row in enumerate(tuples):
        for level, probs in enumerate(levels):
            allowed = np.unique(tuples[(tuples[:, :level] == row[:level]).all(1), level])
            p[n] *= probs[n, row[level]] / probs[n, allowed].sum()
    assert p.sum() == pytest.approx(1.0)
    freq = np.bincount(drawn[0].numpy(), minlength=len(trie)) / 6000
    assert np.abs(freq - p).max() < 0.02
    cold = sample_tuples(model, trie, history, 50, temperature=0.01, generator=torch.Generator().manual_seed(0))
    assert (cold == cold[0, 0]).all()  # a near-zero temperature is greedy decoding


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    """A small SYNTHETIC world and a generative run trained on its train/ folder."""
    root = tmp_path_factory.mktemp("watch")
    torch.manual_seed(0)
    simulate_watch_world(root / "world", SMALL_WORLD)
    train(root / "world" / "train", root / "sft", {"model": "generative", "codes": str(root / "world" / "codes.parquet"),
                                                    "batch_size": 128, "lr": 3e-3, "generative": TINY,
                                                    "loop": {"epochs": 4, "progress": False}}, progress=False)
    return root


def test_the_world_plants_a_truth_its_logs_reveal(world_run):
    folder = world_run / "world"
    world = WatchWorld.load(folder)
    again = WatchWorld.plant(SMALL_WORLD)
    assert np.array_equal(world.quality, again.quality) and np.array_equal(world.affinity, again.affinity)
    keys, codes, info = load_codes(folder / "codes.parquet")
    assert keys[5] == "item-000005" and np.array_equal(codes, world.codes) and "SYNTHETIC" in info["method"]
    seqs, manifest = read_sequences(folder / "train")
    assert manifest["synthetic"] and len(seqs) == 300 and seqs.n_items == 32
    held, held_manifest = read_sequences(folder / "heldout")
    assert len(held) == 100 and held_manifest["first_world_user"] == 300
    # the planted favourite topics: a user's most frequent topic in the log is one of them
    top_topic = np.array([np.bincount(world.topic[s], minlength=4).argmax() for s in (seqs[u] for u in range(len(seqs)))])
    assert (world.affinity[np.arange(300), top_topic] > 0).mean() > 0.9
    import pyarrow.parquet as pq

    log = pq.read_table(folder / "train" / "behaviour.parquet")
    users, items, watch = (log.column(c).to_numpy() for c in ("user_id", "item_id", "watch_s"))
    assert watch[world.long[items]].mean() > 3 * watch[~world.long[items]].mean()  # raw watch time favours long items
    reward = world.expected_reward(users, items)
    # the duration-aware shaping recovers the truth better than raw seconds
    shaped = DurationAwareReward(watch, world.duration[items], 4)(watch, world.duration[items])

    def corr(a, b):
        return np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]

    assert corr(shaped, reward) > corr(watch, reward) + 0.2
    assert corr(shaped, world.duration[items]) < 0.25 < 0.6 < corr(watch, world.duration[items])  # within a bucket, durations still vary


@pytest.mark.parametrize("preference", [{"reward": "duration"}, {"reward": "watch"}, {"reward": "duration", "updates": 2}],
                         ids=["duration", "watch", "duration-2-updates"])
def test_gbpo_is_stable_over_many_steps(world_run, tmp_path, preference):
    reward = preference["reward"]
    report = align_run(world_run / "sft", tmp_path / "aligned", {"world": str(world_run / "world"), "users_per_step": 30, "lr": 3e-4,
                                                                 "preference": preference, "loop": {"epochs": 8}}, progress=False)
    history = report["train"]["history"]
    assert report["train"]["steps"] == 80 * preference.get("updates", 1)
    losses = np.array([h["loss"] for h in history])
    sampled = np.array([h["true_reward"] for h in history])  # the truth of the items sampled while training
    assert np.isfinite(losses).all() and np.abs(losses).max() < 10
    assert np.abs(np.array([h["policy_loss"] for h in history])).max() > 1e-3  # still learning, not collapsed to 0
    assert sampled.min() > 0.3 and sampled[-1] >= sampled[0] - 0.02  # no reward collapse
    signal = np.array([h["reward"] for h in history])
    assert np.isfinite(signal).all() and (signal > 0).all()
    if reward == "duration":
        assert 0.2 < signal.min() and signal.max() < 0.9  # percentiles stay inside the range, not pinned to 0 or 1
    before, after = report["before"], report["after"]
    assert after["item_entropy"] > 0.6 * before["item_entropy"]  # no diversity collapse
    assert after["recall@10"] > 0.5 * before["recall@10"]


def test_saved_aligned_run_loads_and_gives_the_same_beams(world_run, tmp_path, capsys):
    out = tmp_path / "dpo"
    assert main(["retrieve", "align", "--run", str(world_run / "sft"), "--world", str(world_run / "world"), "--out", str(out),
                 "--method", "dpo", "--epochs", "2", "--lr", "1e-3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "dpo" and report["synthetic"] and report["train"]["steps"] == 10
    assert set(report["after"]) >= {"true_reward", "true_watch_s", "long_share", "recall@10", "code_entropy"}
    model, config = load_run(out)
    assert config["job"]["align"]["preference"]["method"] == "dpo" and config["job"]["model"] == "generative"
    again = truth_metrics(model, WatchWorld.load(world_run / "world"), world_run / "world" / "heldout")
    assert again == report["after"]  # the same top-10 beams for every held-out user
    sft, _ = load_run(world_run / "sft")
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), sft.state_dict().values()))
    assert evaluate_run(out)["users"] == 300  # retrieve evaluate reads it like any run
    with pytest.raises(SystemExit, match="2"):  # no --world
        main(["retrieve", "align", "--run", str(world_run / "sft"), "--out", str(tmp_path / "x")])
    with pytest.raises(UsageError, match="world"):
        align_run(world_run / "sft", tmp_path / "x")
    simulate_watch_world(tmp_path / "other", {**SMALL_WORLD, "slots": 3})
    with pytest.raises(UsageError, match="is not the one of"):
        align_run(world_run / "sft", tmp_path / "x", world=str(tmp_path / "other"))
