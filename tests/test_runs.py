"""One run folder format (mmrec.runs): save_run -> load_run gives back what was saved; an older or
unknown folder fails with one line that says how to convert it; convert_run rewrites older rank and
GTR folders so that they load."""

from __future__ import annotations

import json

import pytest
import torch

from mmrec.errors import InputError, UsageError
from mmrec.runs import FORMAT, convert_run, load_run, main, read_config, save_run


def test_save_then_load_gives_back_every_part(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "ids": torch.tensor([3, 1], dtype=torch.int64)}
    save_run(tmp_path / "run", {"dim": 3}, {"lr": 0.1}, tensors, vocab={"item_id": ["a", "b"]}, metrics={"auc": 0.7}, kind="toy")
    config, back, vocab, metrics = load_run(tmp_path / "run", kind="toy")
    assert config == {"format": FORMAT, "kind": "toy", "model": {"dim": 3}, "job": {"lr": 0.1}}
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert vocab == {"item_id": ["a", "b"]} and metrics == {"auc": 0.7}
    save_run(tmp_path / "run", {"dim": 3}, None, tensors, kind="toy")  # rewritten without vocab / metrics: none left over
    assert load_run(tmp_path / "run")[2:] == (None, None)
    assert not list((tmp_path / "run").glob(".tmp*"))


def test_wrong_old_or_newer_folders_fail_in_one_line(tmp_path):
    save_run(tmp_path / "run", {}, None, {"w": torch.zeros(1)}, kind="rank")
    with pytest.raises(InputError, match="a 'rank' run, not a 'graph' run"):
        load_run(tmp_path / "run", kind="graph")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError) as err:
        load_run(tmp_path / "old")
    assert "\n" not in str(err.value) and f"python -m mmrec.runs convert {tmp_path / 'old'}" in str(err.value)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"format": FORMAT + 1, "kind": "rank"}))
    with pytest.raises(InputError, match="newer than this mmrec"):
        read_config(tmp_path / "run")
    with pytest.raises(UsageError, match="no such run folder"):
        load_run(tmp_path / "none")


def test_an_older_gtr_file_is_converted_in_place(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "gtr"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "gtr.safetensors"), metadata={"mmrec": json.dumps({"kind": "gtr", "config": {"tower": [8]}})})
    (folder / "metrics.json").write_text(json.dumps({"test": {"auc": 0.6}}))
    assert main(["convert", str(folder)]) == 0
    config, tensors, _, metrics = load_run(folder, kind="gtr")
    assert config["model"] == {"tower": [8]} and torch.equal(tensors["w"], torch.ones(2)) and metrics["test"]["auc"] == 0.6
    assert not (folder / "gtr.safetensors").exists() and convert_run(folder) == "gtr"  # converting again changes nothing
    with pytest.raises(InputError, match="not a run folder mmrec knows how to convert"):
        convert_run(tmp_path)


def test_older_retrieve_folders_convert_with_their_job_data_and_alignment(tmp_path):
    from safetensors.torch import save_file

    for name, model, extra in (("cooc", None, {}), ("generative", {"dim": 8, "max_len": 5}, {"align": {"lr": 1e-4}, "aligned_from": "/runs/sft"})):
        folder = tmp_path / name
        folder.mkdir()
        save_file({"counts": torch.ones(7)}, str(folder / "model.safetensors"), metadata={"mmrec": json.dumps({"model": name})})
        (folder / "config.json").write_text(json.dumps({"job": {"model": name, "seed": 0}, "model": model, "max_len": 5, "data": "/d", **extra}))
        (folder / "vocab.json").write_text(json.dumps({"items": list("abcdefg"), "users": ["u"]}))
        with pytest.raises(InputError, match="python -m mmrec.runs convert"):
            load_run(folder)
        assert convert_run(folder) == "retrieve"
        config, tensors, vocab, _ = load_run(folder, kind="retrieve")
        assert config["job"] == {"model": name, "seed": 0, "data": "/d", **extra} and vocab["users"] == ["u"]
        assert config["model"] == (model or {"n_items": 7, "max_len": 5}) and torch.equal(tensors["counts"], torch.ones(7))
