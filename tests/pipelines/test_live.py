"""pipelines/live.py (mmrec live train) and the mmrec live CLI: configs from dicts / YAML / options, one default each."""

import json

import pyarrow.parquet as pq
import pytest
import torch

from mmrec.cli import build_parser, main
from mmrec.cli._args import config_from_args, config_values
from mmrec.errors import UsageError
from mmrec.pipelines.live import LiveTrainConfig, train_live
from mmrec.rankers.gtr_data import GTRDataConfig
from mmrec.synthetic.live_sim import LiveSimConfig, simulate_live


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-small")
    simulate_live(folder, users=300, authors=20, days=6, seed=2)
    return folder


def test_train_live_from_a_dict_config(small, tmp_path):
    threads = torch.get_num_threads()
    report = train_live(small, tmp_path / "run", {"epochs": 1, "threads": 1, "batch_size": 256, "device": "cpu",
                                                  "model": {"tower": [8]}, "samples": {"recent_length": 5}})
    assert torch.get_num_threads() == threads  # restored
    assert list(report["config"]["tower"]) == [8] and report["job"]["samples"]["recent_length"] == 5
    assert len(report["history"]) == 1 and set(report["by_group"]) <= {"low", "mid", "high"}
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test"]["positives"] == report["test"]["positives"] and written["train_rows"] == report["train_rows"]
    assert (tmp_path / "run" / "model.safetensors").is_file() and not (tmp_path / "run" / "mfq.safetensors").exists()
    with pytest.raises(UsageError, match="live train: unknown field 'epoch'; known: mfq, gie, epochs"):
        train_live(small, None, {"epoch": 1})
    with pytest.raises(UsageError, match=r"live train.samples: unknown field 'recent'"):
        train_live(small, None, samples={"recent": 1})
    with pytest.raises(UsageError, match="holds no live-behaviour.parquet"):
        train_live(tmp_path / "empty", None)


def test_cli_options_are_the_config_defaults(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["live", "simulate", "--out", str(tmp_path)])
    assert config_from_args(args, LiveSimConfig) == LiveSimConfig()
    args = parser.parse_args(["live", "train", "--data", "d", "--out", "o"])
    excluded = ("mfq_options", "model", "samples")
    assert config_from_args(args, LiveTrainConfig, exclude=excluded, samples=config_values(args, GTRDataConfig)) == LiveTrainConfig()
    args = parser.parse_args(["live", "simulate", "--out", "x", "--shards", "3", "--users", "50"])
    assert args.shard_segments == 3 and args.users == 50  # --shards: the old name of --shard-segments
    args = parser.parse_args(["live", "train", "--data", "d", "--out", "o", "--mfq", "--sequences-at", "day"])
    assert args.mfq and not args.gie and args.sequences_at == "day"


def test_cli_train_with_a_yaml_config_and_overrides(small, tmp_path, capsys):
    config = tmp_path / "live.yaml"
    config.write_text("epochs: 1\nbatch_size: 128\nthreads: 1\ndevice: cpu\nmodel: {tower: [8]}\nsamples: {gift_length: 3}\n")
    assert main(["live", "train", "--data", str(small), "--out", str(tmp_path / "run"), "--config", str(config),
                 "--batch-size", "512", "--recent-length", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    job = report["job"]
    assert job["epochs"] == 1 and job["batch_size"] == 512 and job["model"] == {"tower": [8]}  # file, then the options
    assert job["samples"]["gift_length"] == 3 and job["samples"]["recent_length"] == 4
    assert report["history"][0]["steps"] == -(-report["train_rows"] // 512) - (report["train_rows"] % 512 == 1)
    config.write_text("epochs: 1\nlr: fast\n")
    assert main(["live", "train", "--data", str(small), "--out", str(tmp_path / "r2"), "--config", str(config)]) == 2
    assert "live train.lr: expected a number" in capsys.readouterr().err


def test_cli_simulate_writes_shards_by_the_old_flag(tmp_path, capsys):
    assert main(["live", "simulate", "--out", str(tmp_path / "w"), "--users", "60", "--authors", "6", "--days", "3",
                 "--shards", "2", "--shard-size", "1", "--gift-rate", "0.05"]) == 0
    assert "2 shard(s)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "w" / "live.json").read_text())
    assert summary["config"]["gift_rate"] == 0.05 and summary["files"]["shards"] == ["segments-000000.tar", "segments-000001.tar"]
    assert pq.read_metadata(tmp_path / "w" / "live-behaviour.parquet").num_rows == summary["rows"]
