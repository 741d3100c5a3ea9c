"""mmrec index build|add|search|eval|serve from the command line."""

import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from index_data import write_shard

from mmrec.cli import main


@pytest.mark.parametrize("action", ["build", "add", "search", "eval", "serve"])
def test_every_index_action_has_help(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", action, "--help"])
    assert exit_info.value.code == 0 and f"usage: mmrec index {action}" in capsys.readouterr().out


def test_build_add_search_eval_round_trip(tmp_path, emb_dir, topics_data, capsys):
    x, _, _ = topics_data
    out = tmp_path / "idx"
    assert main(["index", "build", "--emb", str(emb_dir), "--out", str(out), "--kind", "faiss:IVF64,Flat", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == 4000 and info["measured"]["recall"]["10"] >= 0.95

    new = tmp_path / "new"
    new.mkdir()
    write_shard(new / "emb-c.parquet", ["new-0", "new-1"], x[:2] * -1)
    assert main(["index", "add", "--index", str(out), "--emb", str(new)]) == 0
    assert "added 2 vectors" in capsys.readouterr().out

    assert main(["index", "search", "--index", str(out), "--key", "new-1", "--key", "item-00003", "--k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [hits[0]["key"] for hits in results] == ["new-1", "item-00003"]
    np.save(tmp_path / "q.npy", x[5:6])
    assert main(["index", "search", "--index", str(out), "--vectors", str(tmp_path / "q.npy"), "--k", "1"]) == 0
    assert "item-00005" in capsys.readouterr().out

    assert main(["index", "eval", "--index", str(out), "--n-queries", "200"]) == 0
    printed = capsys.readouterr().out
    assert "recall@1 " in printed and "recall@100 " in printed and "QPS" in printed
    assert (out / "recall-qps.png").is_file()


def test_usage_errors_are_one_line_and_exit_2(tmp_path, emb_dir, capsys):
    argv = [
        ["index", "build", "--emb", str(emb_dir), "--out", str(tmp_path / "a"), "--column", "image"],
        ["index", "build", "--emb", str(emb_dir), "--out", str(tmp_path / "b"), "--kind", "faiss:IVF8,Nope"],
        ["index", "build", "--emb", str(emb_dir), "--out", str(tmp_path / "c"), "--max-memory", "1K"],
        ["index", "search", "--index", str(tmp_path / "missing"), "--key", "x"],
    ]
    for args in argv:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mmrec: error:")


def test_serve_command_answers_on_loopback(tmp_path, topics_data):
    x, _, _ = topics_data
    assert main(["index", "build", "--emb", _shard(tmp_path, x), "--out", str(tmp_path / "idx"), "--json"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrec", "index", "serve", "--index", str(tmp_path / "idx"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            assert json.loads(resp.read())["n"] == 300
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _shard(tmp_path, x):
    write_shard(tmp_path / "emb-s.parquet", [f"k{i}" for i in range(300)], x[:300])
    return str(tmp_path / "emb-s.parquet")
