"""mmrec.testing.torchrun: a run whose first failed worker died by a signal (SYNTHETIC torchrun stderr) is
run once more from an empty --out, with a warning; a worker that raised fails at once, with its own lines."""

import subprocess
import warnings

import pytest

from mmrec import testing

SUMMARY = """[rank1]: Traceback (most recent call last):
[rank1]: {last}
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
Root Cause (first observed failure):
[0]:
  rank      : 0 (local_rank: 0)
  exitcode  : {code} (pid: 4242)
  error_file: <N/A>
"""


def _fake(monkeypatch, results):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        code, stderr = results[len(calls) - 1]
        return subprocess.CompletedProcess(cmd, code, stdout='{"ok": 1}' if code == 0 else "", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_a_worker_killed_by_a_signal_is_run_once_more_from_an_empty_out(tmp_path, monkeypatch):
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "partial.pt").write_bytes(b"x")
    calls = _fake(monkeypatch, [(1, SUMMARY.format(last="...", code=-9)), (0, "")])
    with pytest.warns(UserWarning, match="(?s)killed by a signal.*exitcode  : -9"):
        assert testing.torchrun(["retrieve", "train", "--out", "two"], cwd=tmp_path) == {"ok": 1}
    assert len(calls) == 2 and not (tmp_path / "two").exists()


@pytest.mark.parametrize("results", [
    [(1, SUMMARY.format(last="ValueError: planted", code=1))],                                   # a Python error
    [(1, SUMMARY.format(last="...", code=-9)), (1, SUMMARY.format(last="ValueError: planted", code=-6))],  # twice
])
def test_a_worker_that_raised_or_died_twice_fails_with_its_lines(tmp_path, monkeypatch, results):
    calls = _fake(monkeypatch, results)
    with warnings.catch_warnings(record=True) as seen, \
            pytest.raises(AssertionError, match="torchrun exited 1:(.|\n)*ValueError: planted"):
        warnings.simplefilter("always")
        testing.torchrun(["cdr", "train", "--out", "two"], cwd=tmp_path)
    assert len(calls) == len(results) and len(seen) == len(results) - 1  # retried only after a signal
