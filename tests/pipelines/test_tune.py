"""mmrec tune: finds the planted optimum of the SYNTHETIC toy, prunes on per-epoch values, resumes after
kill -9 without repeating a finished trial, refuses unknown fields and test files before any trial, and
tunes the real retrieve job on tiny SYNTHETIC sequences (the value is fit's per-epoch NDCG@10)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mmrec.cli import main
from mmrec.errors import UsageError
from mmrec.pipelines.tune import plan, tune
from mmrec.synthetic.toy import OPTIMUM, ToyJob, quality, train_toy

TOY_SPACE = {"job": "toy", "base": {"epochs": 3},
             "space": {"x": {"low": 0.0, "high": 1.0}, "lr": {"low": 1e-4, "high": 1.0, "log": True},
                       "kind": {"choices": ["a", "b", "c"]}}}


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "study"
    return out, tune(TOY_SPACE, out, trials=24, seed=0)


def test_finds_the_planted_optimum_and_writes_its_files(toy_study):
    out, report = toy_study
    best = report["best"]["params"]
    assert best["kind"] == OPTIMUM["kind"] and abs(best["x"] - OPTIMUM["x"]) < 0.2
    assert abs(math.log10(best["lr"]) - math.log10(OPTIMUM["lr"])) < 0.7
    assert report["best"]["value"] > 0.85 > quality(ToyJob())  # the defaults are far off (q = -0.8)
    table = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(table) == 24 and {"param.x", "param.lr", "param.kind", "values", "state"} <= set(table[0])
    # best.json is the whole config: the toy trained from it scores the best trial's value again
    again = train_toy(out / "again", json.loads((out / "best.json").read_text()))
    assert again["score"] == pytest.approx(report["best"]["value"])
    assert all((out / f"{name}.png").stat().st_size > 5000 for name in ("history", "importance"))


def test_prunes_trials_below_the_median_after_their_epoch(toy_study):
    out, report = toy_study
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    complete = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert report["states"]["pruned"] == len(pruned) >= 5 and len(complete) >= 5
    for r in pruned:
        step = len(r["values"]) - 1
        assert 0 < step < 2  # never in the warm-up epoch, and before the last epoch
        earlier = sorted(c["values"][step] for c in complete if c["number"] < r["number"])
        assert r["values"][step] < earlier[len(earlier) // 2]  # below the median of the trials before it
        run = json.loads((Path(r["out"]) / "metrics.json").read_text())
        assert run["stopped"] == "callback" and run["epochs_run"] == step + 1  # the run itself stopped early


def _states(db: Path) -> dict[str, int]:
    """Trials per state, and ``MIDWAY``: running trials that reported an epoch."""
    with sqlite3.connect(db, timeout=30) as con:
        states = dict(con.execute("select state, count(*) from trials group by state").fetchall())
        states["MIDWAY"] = con.execute("select count(distinct t.trial_id) from trials t join trial_intermediate_values v "
                                       "on t.trial_id = v.trial_id where t.state = 'RUNNING'").fetchone()[0]
        return states


def test_resumes_after_kill_9_without_repeating_a_finished_trial(tmp_path):
    space = tmp_path / "toy.yaml"
    space.write_text(json.dumps({**TOY_SPACE, "base": {"epochs": 3, "seconds_per_epoch": 0.2}}))
    out = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mmrec", "tune", str(space), "--out", str(out), "--trials", "8", "--json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill it in the middle of a trial, after 3 have finished
            try:
                states = _states(out / "study.db") if (out / "study.db").exists() else {}
            except sqlite3.OperationalError:  # the tables are being created
                states = {}
            if states.get("COMPLETE", 0) + states.get("PRUNED", 0) >= 3 and states.get("MIDWAY", 0):
                break
            assert proc.poll() is None, "the search ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no 3 finished trials within 240 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    import optuna

    killed = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")
    done_before = {t.number: (t.state, t.value, t.params) for t in killed.trials if t.state.is_finished()}
    running = [t for t in killed.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(done_before) >= 3 and len(running) == 1

    report = tune(space, out, trials=8)
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(finished) == 8 and report["interrupted_marked_failed"] == 1
    for number, (state, value, params) in done_before.items():  # the finished trials are kept as they were
        t = study.trials[number]
        assert (t.state, t.value, t.params) == (state, value, params)
    for t in finished:  # and none was started twice
        assert len((Path(t.user_attrs["out"]) / "starts.txt").read_text().splitlines()) == 1
    lost = study.trials[running[0].number]
    assert lost.state == optuna.trial.TrialState.FAIL and lost.user_attrs["interrupted"]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == lost.number]
    assert len(retry) == 1 and retry[0].params == lost.params and retry[0].state.is_finished()
    assert len(pq.read_table(out / "trials.parquet")) == 9
    assert tune(space, out, trials=8)["trials"] == 9  # a rerun of a finished search runs nothing


def test_the_wall_clock_budget_stops_starting_trials(tmp_path):
    space = {**TOY_SPACE, "base": {"epochs": 3, "seconds_per_epoch": 0.3}}
    report = tune(space, tmp_path / "study", trials=50, minutes=0.02)  # 1.2 s: a trial takes at least 0.9 s
    assert 1 <= report["trials"] <= 2


def test_a_folder_being_tuned_and_a_changed_space_are_refused(tmp_path, toy_study):
    import fcntl

    out, _ = toy_study
    with open(out / ".tune.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="being tuned by another process"):
            tune(TOY_SPACE, out, trials=24)
    changed = {**TOY_SPACE, "space": {**TOY_SPACE["space"], "x": {"low": 0.0, "high": 2.0}}}
    with pytest.raises(UsageError, match="holds a study of another search space"):
        tune(changed, out, trials=24)


def test_a_combination_the_config_refuses_fails_that_trial_only(tmp_path):
    from mmrec.pipelines import tune as tune_module
    from mmrec.synthetic.toy import ToyJob

    class Picky(ToyJob):  # SYNTHETIC: kind c goes with x <= 0.5 only; each value alone is fine
        def __post_init__(self):
            super().__post_init__()
            if self.kind == "c" and self.x > 0.5:
                raise UsageError("kind c needs x <= 0.5")

    target = tune_module._toy()
    picky = tune_module.Target(Picky, (), (), "score", build=lambda fixed, o: Picky(**o), run=target.run, command=target.command)
    tune_module.TUNE_JOBS._entries["picky"] = lambda: picky
    try:
        space = {**TOY_SPACE, "job": "picky", "space": {"x": {"low": 0.6, "high": 1.0}, "kind": {"choices": ["a", "c"]}}}
        tune(space, tmp_path / "study", trials=8, seed=0)
    finally:
        del tune_module.TUNE_JOBS._entries["picky"]
    rows = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    failed = [r for r in rows if r["state"] == "fail"]
    assert len(rows) == 8 and failed and all(r["param.kind"] == "c" and "kind c needs x <= 0.5" in r["error"] for r in failed)
    assert all(r["param.kind"] == "a" for r in rows if r["state"] != "fail")


def test_start_points_run_first_with_their_values(tmp_path):
    """``start``: the given points are the study's first trials (here the toy's planted optimum, so the
    best trial is the first one, which a 3-trial random search would not find), then the sampler draws."""
    start = [{"x": OPTIMUM["x"], "lr": OPTIMUM["lr"], "kind": OPTIMUM["kind"]}, {"x": 0.0}]
    report = tune({**TOY_SPACE, "start": start, "pruner": {"enabled": False}}, tmp_path / "study", trials=3, seed=0)
    rows = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    assert [r["param.x"] for r in rows[:2]] == [OPTIMUM["x"], 0.0] and rows[0]["param.kind"] == OPTIMUM["kind"]
    assert report["best"]["trial"] == 0 and report["best"]["value"] > 0.85
    assert tune({**TOY_SPACE, "start": start, "pruner": {"enabled": False}}, tmp_path / "study", trials=4)["trials"] == 4


@pytest.mark.parametrize("point,expected", [
    ({"kind": "z"}, "start: kind = 'z' is not one of the choices"),
    ({"x": 1.5}, "start: x = 1.5 is outside [0.0, 1.0]"),
    ({"y": 0.5}, "start: 'y' is not a path of the space"),
])
def test_a_start_point_the_space_cannot_draw_is_refused(point, expected):
    with pytest.raises(UsageError) as err:
        plan({**TOY_SPACE, "start": [point]})
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("section,path,expected", [
    ("space", "model_config.dimm", "unknown field 'model_config.dimm' of the TrainJob config; did you mean model_config.dim?"),
    ("space", "lrr", "unknown field 'lrr' of the TrainJob config; did you mean lr?"),
    ("base", "loops.epochs", "unknown field 'loops.epochs' of the TrainJob config; did you mean loop"),
    ("space", "loop", "'loop' is a section of TrainJob, not a field"),
])
def test_an_unknown_field_is_refused_in_one_line_before_any_trial(tmp_path, capsys, section, path, expected):
    space = {"job": "retrieve", "fixed": {"data": str(tmp_path / "data")}, "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
    space[section] = {**space.get(section, {}), path: {"low": 1, "high": 4} if section == "space" else 3}
    with pytest.raises(UsageError) as err:
        plan(space)
    assert expected in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "space.yaml").write_text(json.dumps(space))
    assert main(["tune", str(tmp_path / "space.yaml"), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("change,expected", [
    ({"space": {"kind": {"choices": ["a", "z"]}}}, "kind = 'z' is refused by the job's config"),
    ({"space": {"x": {"low": 1.0, "high": 0.5}}}, "low must be below high"),
    ({"space": {"x": {"low": 0.0, "high": 1.0, "lg": True}}}, "unknown key 'lg'"),
    ({"space": {"epochs": {"low": 1.5, "high": 4}}}, "integer field"),
    ({"fixed": {"data": "d"}}, "unknown argument 'data' of job toy"),
    ({"job": "retreive"}, "unknown tune job 'retreive'"),
])
def test_bad_spaces_are_one_line_errors(change, expected):
    with pytest.raises(UsageError) as err:
        plan({**TOY_SPACE, **change})
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change", [
    {"fixed": {"data": "d", "pair": "sport_cloth", "target": "cloth", "test": "sport_cloth/test.txt"}},
    {"fixed": {"data": "sport_cloth/test.txt", "pair": "sport_cloth"}},
    {"base": {"item_emb": "emb/test.parquet"}, "fixed": {"data": "d", "pair": "p"}},
    {"space": {"item_emb": {"choices": ["", "emb/test-items.parquet"]}}, "fixed": {"data": "d", "pair": "p"}},
])
def test_a_space_naming_a_test_file_is_refused(change):
    space = {"job": "cdr", "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
    for key, value in change.items():
        space[key] = {**space.get(key, {}), **value}
    with pytest.raises(UsageError, match="names a test file.*validation only"):
        plan(space)


def test_tunes_the_retrieve_job_on_its_per_epoch_validation_ndcg(tmp_path):
    from mmrec.pipelines.seq_import import import_sequences

    src = tmp_path / "src"
    src.mkdir()
    # SYNTHETIC: every user walks item -> item + 3 (mod 30) from a random start
    (src / "T.inter.json").write_text(json.dumps({f"u{u}": [(u * 7 + 3 * k) % 30 for k in range(8)] for u in range(200)}))
    import_sequences(src, "T", tmp_path / "data")
    (tmp_path / "data" / "test.txt").write_text("not\ta\ttest file that parses\n")  # read by nothing when tuning
    space = {"job": "retrieve", "fixed": {"data": str(tmp_path / "data")},
             "base": {"model": "sasrec", "batch_size": 64, "model_config": {"dim": 16, "layers": 1, "heads": 1, "max_len": 8},
                      "loop": {"epochs": 2}},
             "space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "model_config.dropout": {"choices": [0.0, 0.2]}}}
    report = tune(space, tmp_path / "study", trials=2, seed=1)
    assert report["states"] == {"complete": 2}
    rows = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    for row in rows:  # the trial's value is the job's own validation NDCG@10 of its best epoch, reported per epoch
        run = json.loads((Path(row["out"]) / "metrics.json").read_text())
        assert len(row["values"]) == 2 and row["value"] == pytest.approx(run["validation"]["ndcg@10"]) == max(row["values"])
    best = report["best"]
    assert best["command"].startswith(f"mmrec retrieve train --data {tmp_path / 'data'} --config ")
    assert main(["retrieve", "train", "--data", str(tmp_path / "data"), "--config", best["config"], "--out", str(tmp_path / "again"),
                 "--json"]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["validation"]["ndcg@10"] == pytest.approx(best["value"])  # best.json reproduces the best trial
    assert json.loads((tmp_path / "again" / "config.json").read_text())["job"]["lr"] == best["params"]["lr"]
