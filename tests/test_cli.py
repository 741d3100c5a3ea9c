import json

import pytest

from mmrec.cli import main

COMMANDS = ["sample-data", "extract", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mmrec " + command in capsys.readouterr().out


def test_unknown_command_and_bad_values_exit_2(capsys):
    for argv in (["nope"], ["sample-data"], ["sample-data", "--out", "x", "--items", "-3"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


def test_library_usage_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["sample-data", "--out", str(tmp_path), "--topics", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmrec: error:") and "1" in err[0]


def test_sample_data_cli_writes_shards(tmp_path, capsys):
    assert main(["sample-data", "--out", str(tmp_path), "--items", "10", "--segments", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 10 and summary["synthetic"] is True
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["items-000000.tar", "segments-000000.tar"]


@pytest.mark.slow
def test_demo_runs_the_whole_chain_and_reports_every_stage(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--items", "64", "--users", "120", "--rank-epochs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    stages = {row["stage"]: row for row in report["stages"]}
    assert list(stages) == ["sample-data", "extract", "align", "quantize", "index (FAISS)", "index (MISS tree)",
                            "cdr (UniCDR+)", "rank: ids only", "rank: + codes", "rank: + codes + cross",
                            "rank: + cdr user vector"]
    for folder in ("data", "emb", "aligned", "codes", "index", "tree", "cdr", "cdr-users"):
        assert any((tmp_path / folder).iterdir()), folder
    assert all((tmp_path / f"rank-{v}" / "model.safetensors").is_file() for v in ("ids", "codes", "cross", "user"))
    # the real MiniLM titles recover the planted topics, and so does the fused vector
    assert report["modalities"]["text"] > 5 * report["chance"] and stages["extract"]["value"] > 5 * report["chance"]
    assert stages["quantize"]["value"] > stages["quantize"]["baseline_value"]  # first-level codes follow the topics
    assert stages["index (FAISS)"]["value"] >= 0.9
    assert all(0.5 < stages[name]["value"] <= 1.0 for name in stages if name.startswith("rank"))
    assert stages["cdr (UniCDR+)"]["value"] > 0  # user vectors keyed by user id, read by the last ranker
