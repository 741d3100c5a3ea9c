"""``mmrec cdr train`` under torchrun: 2 CPU processes (DDP, gloo) reach one process's held-out figures on
SYNTHETIC pair data with planted tastes, and rank 0 alone writes a run folder that loads and evaluates."""

import pytest
from cdr_synth import write_pair

from mmrec.crossdomain import CDRConfig
from mmrec.pipelines.cdr import evaluate_run, train_cdr
from mmrec.testing import torchrun, with_gloo

FAST = dict(dim=16, maxlen=6, batch_size=128, epochs=2, lr=0.02, gnn_topk=5, threads=1)
# HR@10 / NDCG@10 over 30 cold users, absolute: every rank makes the same batches (negatives and masks
# included) and trains on half of each; the models differ by the per-rank means and float noise
TOLERANCE = 0.06


@with_gloo
@pytest.mark.parametrize("model", ["unicdr", "farm"])  # farm: sparse user table (SparseAdam), one domain per batch
def test_two_processes_match_one(tmp_path, model):
    write_pair(tmp_path, users=200, items=(1300, 1300), groups=20, per_user=8, cold=30)
    one = train_cdr(tmp_path, "aa_bb", out=tmp_path / "one", config=CDRConfig(model=model, **FAST))
    two = torchrun(["cdr", "train", "--data", str(tmp_path), "--pair", "aa_bb", "--model", model, "--out", str(tmp_path / "two"),
                    *(f"--set={k}={v}" for k, v in FAST.items())], cwd=tmp_path)
    for target in ("aa", "bb"):
        assert one["metrics"][target]["HR@10"] > 0.08  # the planted taste is learned (chance 0.01)
        for key in ("HR@10", "NDCG@10"):
            assert two["metrics"][target][key] == pytest.approx(one["metrics"][target][key], abs=TOLERANCE), (target, key)
    assert [h["steps"] for h in two["history"]] == [h["steps"] for h in one["history"]]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    again = evaluate_run(tmp_path / "two", tmp_path / "bb_aa" / "valid.txt")
    assert again["metrics"]["HR@10"] == pytest.approx(two["metrics"]["bb"]["HR@10"])
