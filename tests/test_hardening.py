"""Hostile-user faults (issue 15, items 2, 4, 5, 9, 11, 12): each gets one line and the right exit
code, and nothing that looks like a result is left behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmrec.cli import main
from mmrec.store import write_embeddings

QUANTIZE = ["--levels", "2", "--codebook-size", "4", "--niter", "2"]


@pytest.fixture
def emb(tmp_path):
    keys = [f"item-{i:06d}" for i in range(40)]  # the log's item ids 0..39 under the default item_key
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    write_embeddings(tmp_path / "emb", {"000000": keys}, dict(zip(keys, x)), "fused", info={})
    return tmp_path / "emb"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _refuse(monkeypatch, real, folder, code: int, what: str):
    """Make ``real`` (os.mkdir / os.open) fail with ``code`` for paths under ``folder``."""

    def fake(path, *args, **kwargs):
        if os.fspath(path).startswith(os.fspath(folder)):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, what, fake)


# -- 2. OS faults and foreign files ------------------------------------------------------------


@pytest.mark.parametrize("exists", [False, True])
def test_read_only_output_folder_is_one_line_exit_1_before_any_work(tmp_path, emb, capsys, monkeypatch, exists):
    ro = tmp_path / "ro"  # root ignores chmod, so the file system's refusal is simulated
    if exists:  # an existing read-only folder: the write probe is refused
        ro.mkdir()
        (ro / "old.txt").write_text("kept")
        _refuse(monkeypatch, os.open, ro, errno.EROFS, "open")
        out = ro
    else:  # a folder to create on a read-only disk
        _refuse(monkeypatch, os.mkdir, ro, errno.EROFS, "mkdir")
        out = ro / "codes"
    fitted = []
    monkeypatch.setattr("mmrec.pipelines.quantize._quantize", lambda *a, **k: fitted.append(1))
    assert main(["quantize", "--emb", str(emb), "--out", str(out), *QUANTIZE]) == 1
    line = _one_line(capsys)
    assert line.startswith("mmrec: error: ") and str(ro) in line and "Read-only file system" in line
    assert not fitted  # refused before reading or fitting anything
    monkeypatch.undo()
    assert (sorted(os.listdir(ro)) == ["old.txt"]) if exists else not ro.exists()


def test_full_disk_mid_job_is_one_line_exit_1_and_leaves_no_output(tmp_path, emb, capsys, monkeypatch):
    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("mmrec.pipelines.quantize.save_codes", full)
    out = tmp_path / "new" / "codes"
    assert main(["quantize", "--emb", str(emb), "--out", str(out), *QUANTIZE, "--json"]) == 1  # --json: no progress bar
    line = _one_line(capsys)
    assert "codes.parquet" in line and "No space left on device" in line
    assert not (tmp_path / "new").exists()  # the folders the failed job made are gone


@pytest.mark.parametrize("command", [["quantize", *QUANTIZE], ["index", "build", "--kind", "faiss:Flat"]])
def test_a_foreign_file_named_parquet_is_one_line_naming_it(tmp_path, capsys, command):
    folder = tmp_path / "emb"
    folder.mkdir()
    (folder / "emb-000000.parquet").write_bytes(b"\x89PNG\r\n\x1a\n not parquet at all")
    words = 2 if command[0] == "index" else 1
    argv = [*command[:words], "--emb", str(folder), "--out", str(tmp_path / "out"), *command[words:], "--json"]
    assert main(argv) == 1
    line = _one_line(capsys)
    assert str(folder / "emb-000000.parquet") in line and "not a Parquet file" in line
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path, emb, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["quantize", "--emb", str(emb), "--out", str(tmp_path / "taken"), *QUANTIZE]) == 2
    assert "is a file" in _one_line(capsys)
    assert (tmp_path / "taken").read_text() == "mine"


# -- 4. k capped at the index size -------------------------------------------------------------


def test_search_k_is_capped_at_the_index_size_and_says_so(tmp_path, emb, capsys):
    index = tmp_path / "index"
    assert main(["index", "build", "--emb", str(emb), "--out", str(index), "--kind", "faiss:Flat", "--json"]) == 0
    capsys.readouterr()
    assert main(["index", "search", "--index", str(index), "--key", "item-000000", "--k", "100000000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["k"], report["k_asked"], report["n"], report["capped"]) == (40, 100000000, 40, True)
    assert len(report["results"][0]) == 40
    assert main(["index", "search", "--index", str(index), "--key", "item-000000", "--k", "100000000"]) == 0
    assert "k 100000000 capped at 40: the index holds 40 items" in capsys.readouterr().out


# -- 5. no half-written outputs ----------------------------------------------------------------


@pytest.mark.parametrize("existed", [False, True])
def test_align_without_minable_pairs_leaves_no_pairs_file_and_no_new_folder(tmp_path, emb, capsys, existed):
    log = tmp_path / "log.parquet"  # items the embeddings do not hold: nothing to pair
    pq.write_table(pa.table({"user_id": [1, 1, 2, 2], "item_id": [500, 501, 500, 502], "author_id": [0] * 4,
                             "domain": ["video"] * 4, "ts": [1, 2, 3, 4], "click": [1, 1, 1, 1]}), log)
    out = tmp_path / "aligned"
    if existed:
        out.mkdir()
        (out / "notes.txt").write_text("kept")
    assert main(["align", "--log", str(log), "--emb", str(emb), "--out", str(out), "--epochs", "1", "--json"]) == 1
    assert "no pairs mined" in _one_line(capsys)
    assert sorted(os.listdir(out)) == ["notes.txt"] if existed else not out.exists()


def test_align_that_fails_after_mining_leaves_no_pairs_file(tmp_path, emb, capsys, monkeypatch):
    from mmrec.errors import InputError

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 6)
    items = rng.integers(0, 40, len(users))
    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": items, "author_id": [0] * len(users),
                             "domain": ["video"] * len(users), "ts": np.arange(len(users)),
                             "click": [1] * len(users)}), log)

    def broken(*args, **kwargs):
        assert (tmp_path / "aligned" / "pairs.parquet").is_file()  # mined and written ...
        raise InputError("training broke")

    monkeypatch.setattr("mmrec.pipelines.align.align_vectors", broken)
    assert main(["align", "--log", str(log), "--emb", str(emb), "--out", str(tmp_path / "aligned"), "--json"]) == 1
    assert "training broke" in _one_line(capsys)
    assert not (tmp_path / "aligned").exists()  # ... and gone with the failed job


# -- 9. import mmrec.graphs is quiet -----------------------------------------------------------


def test_graphs_import_prints_no_torch_jit_warning():
    code = ("import mmrec.graphs; from mmrec.graphs import HeteroSAGE, build_graphs; "
            "import torch_geometric.data; print('ok')")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert "torch.jit.script" not in done.stderr, done.stderr


# -- 11. threads -------------------------------------------------------------------------------


def test_default_threads_follow_the_free_cores_the_process_may_use(monkeypatch):
    from mmrec.threads import MAX_DEFAULT_THREADS, default_threads, resolve_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 0.0, 0.0))
    assert default_threads() == 3  # 4 cores, one busy
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == MAX_DEFAULT_THREADS
    assert resolve_threads(2) == 2


def test_the_printed_thread_line_says_where_the_number_comes_from(capsys, monkeypatch):
    from mmrec.threads import announce_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    announce_threads(1, None)
    announce_threads(3, 3)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mmrec: using 1 CPU thread (default: 2 cores available")
    assert err[1] == "mmrec: using 3 CPU threads (as asked: --threads or the config)"


def test_training_command_takes_threads_prints_them_and_restores_torch(tmp_path, emb, capsys, monkeypatch):
    from mmrec.quantization import rq_vae

    seen = []
    fit = rq_vae.fit

    def spy(*args, **kwargs):  # the one training loop, as RQ-VAE calls it
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(rq_vae, "fit", spy)
    before = torch.get_num_threads()
    assert main(["quantize", "--emb", str(emb), "--out", str(tmp_path / "q"), "--method", "rq-vae", "--levels", "2",
                 "--codebook-size", "4", "--epochs", "1", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "1step" in err and "threads=1" in err  # the bar shows the first batch and the threads
    assert seen == [1] and torch.get_num_threads() == before


# -- 12. argparse errors are one line ----------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["extract", "--inptu", "x"], ["mmrec extract: error: unknown option --inptu", "did you mean --input?",
                                   "mmrec extract --help"]),
    (["extrct", "--input", "x"], ["unknown command 'extrct'", "did you mean extract?", "mmrec --help"]),
    (["index", "serch"], ["mmrec index: error: unknown command 'serch'", "did you mean search?"]),
    (["index", "search", "--index", "i", "--key", "a", "--kk", "3"], ["unknown option --kk", "did you mean --k?"]),
    (["quantize", "--emb", "e"], ["required: --out", "mmrec quantize --help"]),
])
def test_command_line_mistakes_are_one_line_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    line = captured.err.strip()
    assert "\n" not in line and "usage:" not in line and not captured.out, line
    for word in words:
        assert word in line
