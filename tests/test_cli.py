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
def test_demo_recovers_planted_topics_from_real_text_embeddings(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--items", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    columns = report["columns"]
    assert set(columns) == {"image", "text", "audio", "fused"}
    assert columns["text"]["encoder"] == "hf-text:all-MiniLM-L6-v2" and columns["text"]["dim"] == 384
    assert all(row["rows"] == 64 for row in columns.values())
    assert columns["text"]["nn_topic_accuracy"] > 5 * report["chance"]
    assert columns["fused"]["nn_topic_accuracy"] > 5 * report["chance"]
