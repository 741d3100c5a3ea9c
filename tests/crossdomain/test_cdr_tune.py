"""mmrec tune on the cdr job (SYNTHETIC pair): the trial's value is the job's per-epoch mean validation
NDCG@10, and the reported `cdr train --set` command trains the best config again to the same figure."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from cdr_synth import write_pair

from mmrec.cli import main
from mmrec.pipelines.tune import tune


def test_tunes_cdr_and_its_command_reproduces_the_best_trial(tmp_path):
    write_pair(tmp_path / "data", users=120, cold=20)
    (tmp_path / "data" / "aa_bb" / "test.txt").write_text("not a test file that parses\n")  # read by nothing here
    space = {"job": "cdr", "fixed": {"data": str(tmp_path / "data"), "pair": "aa_bb"},
             "base": {"model": "unicdr", "epochs": 2, "dim": 16, "batch_size": 256},
             "space": {"lr": {"low": 1e-3, "high": 2e-2, "log": True}, "aggregator": {"choices": ["mean", "user_attention"]}}}
    report = tune(space, tmp_path / "study", trials=2, seed=0)
    assert report["states"] == {"complete": 2} and report["metric"] == "metric"
    best = report["best"]
    run = json.loads((Path(best["out"]) / "metrics.json").read_text())
    ndcg = [m["NDCG@10"] for m in run["metrics"].values()]
    assert best["value"] == pytest.approx(sum(ndcg) / len(ndcg))  # the job's selection metric, per epoch
    argv = shlex.split(best["command"])
    assert argv[:3] == ["mmrec", "cdr", "train"] and argv[-1] == "RUN"
    assert main([*argv[1:-1], str(tmp_path / "again"), "--json"]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["metrics"] == run["metrics"]
    assert json.loads((tmp_path / "study" / "best.json").read_text())["aggregator"] == best["params"]["aggregator"]
