"""``mmrec retrieve train`` and ``retrieve align`` under torchrun: 2 CPU processes (DDP, gloo) reach one
process's validation figures on SYNTHETIC sequences with a planted next-item rule (and the truth of a
SYNTHETIC watch world), and rank 0 alone writes a run that loads."""

import json

import numpy as np
import pytest
from seq_data import planted, write_lcrec
from test_generative import TINY as GEN_TINY
from test_generative import write_planted
from test_preference import SMALL_WORLD
from test_preference import TINY as PREF_TINY

from mmrec.pipelines.retrieve import evaluate_run, load_run, train
from mmrec.pipelines.retrieve_align import align_run
from mmrec.pipelines.seq_import import import_sequences
from mmrec.synthetic.watch_world import WatchWorld, simulate_watch_world
from mmrec.testing import torchrun, with_gloo

TINY = dict(dim=16, layers=1, heads=2, max_len=6, dropout=0.0)
JOBS = {
    "sasrec": {"model": "sasrec", "loss": "full", "model_config": TINY},
    "kuaiformer-transition": {"model": "kuaiformer", "loss": "inbatch",
                              "model_config": {**TINY, "interests": 2, "transition": True}},
    "generative": {"model": "generative", "generative": {**GEN_TINY, "arch": "encoder-decoder"}},
}
TOLERANCE = 0.06  # NDCG@10 / Recall@10, absolute: ranks see the same global batches, the models differ by float noise
# in the averaged gradients and, with the in-batch softmax, by each rank's own (half) candidate set


@with_gloo
@pytest.mark.parametrize("name", JOBS)
def test_two_processes_match_one(tmp_path, name):
    job = {**JOBS[name], "batch_size": 64, "lr": 5e-3, "seed": 0, "loop": {"epochs": 2, "progress": False}}
    if name == "generative":
        write_planted(tmp_path)
        job["codes"] = str(tmp_path / "codes.parquet")
    else:
        import_sequences(write_lcrec(tmp_path / "src", "P", planted(users=150, items=40, noise=0.1)), "P", tmp_path / "data")
    (tmp_path / "job.json").write_text(json.dumps(job))
    one = train(tmp_path / "data", tmp_path / "one", job)
    two = torchrun(["retrieve", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "two"),
                    "--config", str(tmp_path / "job.json")], cwd=tmp_path)
    assert one["validation"]["recall@10"] > 0.5  # the rule is learned (chance: 10 / 40 items, 10 / 64 for generative)
    for key in ("ndcg@10", "recall@10"):
        assert two["validation"][key] == pytest.approx(one["validation"][key], abs=TOLERANCE), key
    assert [h["steps"] for h in two["train"]["history"]] == [h["steps"] for h in one["train"]["history"]]
    assert two["train"]["samples"] <= one["train"]["samples"]  # every rank's samples, counted once
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "one").iterdir())
    again = evaluate_run(tmp_path / "two")
    assert np.isclose(again["ndcg@10"], two["validation"]["ndcg@10"], atol=1e-6)


@with_gloo
def test_preference_alignment_two_processes_match_one(tmp_path):
    """``mmrec retrieve align`` (GBPO on a SYNTHETIC watch world): each rank samples and serves half of every
    step's users; the truth after alignment is one process's within the noise of the sampled feedback."""
    simulate_watch_world(tmp_path / "world", SMALL_WORLD)
    train(tmp_path / "world" / "train", tmp_path / "sft", {"model": "generative", "codes": str(tmp_path / "world" / "codes.parquet"),
                                                          "batch_size": 128, "lr": 3e-3, "generative": PREF_TINY,
                                                          "loop": {"epochs": 2, "progress": False}}, progress=False)
    options = {"world": str(tmp_path / "world"), "users_per_step": 30, "lr": 1e-3, "epochs": 2}
    one = align_run(tmp_path / "sft", tmp_path / "one", {**{k: v for k, v in options.items() if k != "epochs"},
                                                         "loop": {"epochs": 2, "progress": False}}, progress=False)
    two = torchrun(["retrieve", "align", "--run", str(tmp_path / "sft"), "--out", str(tmp_path / "two"),
                    *(f"--{k.replace('_', '-')}={v}" for k, v in options.items())], cwd=tmp_path)
    assert two["before"] == one["before"] and two["train"]["steps"] == one["train"]["steps"]
    for key in ("true_reward", "long_share", "recall@10"):
        assert two["after"][key] == pytest.approx(one["after"][key], abs=0.05), key
    model, config = load_run(tmp_path / "two")
    assert config["job"]["align"]["users_per_step"] == 30 and model.config.n_items == len(WatchWorld.load(tmp_path / "world").duration)
