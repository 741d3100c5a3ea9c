"""`mmrec rank simulate|train`: a YAML run end to end, and bad configs failing at load with one line."""

import json

import numpy as np
import pytest
import yaml
from rank_data import TINY_SIM, tiny_rank_config

from mmrec.cli import main
from mmrec.pipelines.rank import train
from mmrec.rankers import RankConfig, load_config, simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("rankcli")
    simulate(root, **TINY_SIM)
    return root


def write_config(path, sim, **overrides):
    config = tiny_rank_config()
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if key:
            config[section][key] = value
        else:
            config[section] = value
    path.write_text(yaml.safe_dump(config))
    return path


def test_simulate_then_train_from_yaml(sim, capsys):
    config = write_config(sim / "rank.yaml", sim)
    assert main(["rank", "train", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "pepnet" and report["world_size"] == 1 and report["amp"] is None
    assert report["schema"]["dense"] == {"content": 32} and report["features"]["content"]["misses"] == 0
    assert (sim / "run" / "model.safetensors").is_file() and (sim / "run" / "metrics.json").is_file()
    assert set(report["metrics"]) == {"click", "like", "follow"}
    assert main(["rank", "train", "--config", str(config), "--out", str(sim / "run2")]) == 0
    text = capsys.readouterr().out
    assert "samples/s" in text and "GAUC" in text and (sim / "run2" / "model.safetensors").is_file()


def test_simulate_cli_is_labelled_synthetic(tmp_path, capsys):
    assert main(["rank", "simulate", "--out", str(tmp_path), "--users", "10", "--items", "30", "--impressions", "10"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert load_config(tmp_path / "rank.yaml").model.name == "pepnet"


@pytest.mark.parametrize("overrides,message", [
    ({"model.name": "pepnett"}, "unknown ranker 'pepnett'; known: esmm, gtr, home, mmoe, pepnet, ple, shared_bottom, smes"),
    ({"model.towr": [8]}, "model: unknown field 'towr'"),
    ({"model.tower": "wide"}, "model.tower: expected a list, got 'wide'"),
    ({"model.tower": []}, "tower must be a non-empty list"),
    ({"model": {"name": "home", "task_groups": [["click"], ["like"]]}}, "model.task_groups must split the tasks"),
    ({"model": {"name": "home", "task_groups": [["click"], ["likes", "follow"]]}}, "model.task_groups: 'likes' is not a task"),
    ({"model": {"name": "pepnet", "prior": ["user_id", "shop_id"]}}, "model.prior: 'shop_id' is not a sparse field"),
    ({"optim.lr": "fast"}, "optim.lr: expected a number, got 'fast'"),
    ({"optim.amp": "maybe"}, "optim: amp must be auto, on or off"),
    ({"data.tasks": ["click", "click"]}, "data: tasks must be a non-empty list of distinct"),
    ({"data.history": {"length": 5, "positive": "buy"}}, "history.positive 'buy' must be one of the tasks"),
    ({"data.log": "nowhere.parquet"}, "behaviour log not found"),
    ({"data.tasks": ["click", "gift"]}, "missing column(s) ['gift']"),
    ({"features": [{"name": "content", "kind": "embeddings", "path": "emb", "dim": 64}]}, "has dim 32, expected 64"),
    ({"features": [{"name": "content", "kind": "embeddings", "path": "emb", "column": "image"}]}, "no column 'image'"),
    ({"features": [{"name": "content", "kind": "vectors", "path": "emb"}]}, "features[0]: kind must be one of"),
    ({"features": [{"name": "user_id", "kind": "embeddings", "path": "emb"}]}, "name 'user_id' is used twice"),
    ({"extra": 1}, "config: unknown field 'extra'"),
])
def test_bad_configs_fail_at_load_with_one_clear_line(sim, tmp_path, capsys, overrides, message):
    config = write_config(sim / f"bad-{abs(hash(message))}.yaml", sim, **overrides)
    code = main(["rank", "train", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == (1 if "['gift']" in message else 2)  # a log without the column is bad data
    assert err.count("\n") == 1 and err.startswith("mmrec: error: ") and message in err, err


def test_wrong_codes_levels_fail_at_load(sim, tmp_path, capsys):
    from mmrec.pipelines.quantize import quantize

    quantize(sim / "emb", tmp_path / "codes", levels=2, codebook_size=8, progress=False)
    config = write_config(tmp_path / "c.yaml", sim, features=[{"name": "sid", "kind": "codes", "path": str(tmp_path / "codes"), "levels": 3}],
                          **{"data.log": str(sim / "behaviour.parquet")})
    assert main(["rank", "train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 2 code levels, expected 3" in err


def test_python_api_takes_the_same_config_as_a_dict(sim):
    config = yaml.safe_load(write_config(sim / "api.yaml", sim).read_text())
    config["data"]["log"] = str(sim / "behaviour.parquet")
    config["features"][0]["path"] = str(sim / "emb")
    config["model"] = {"name": "home", "expert_dim": 8, "tower": [8], "task_groups": [["click"], ["like", "follow"]]}
    cfg = load_config(config)
    assert isinstance(cfg, RankConfig) and cfg.model.expert_dim == 8
    report = train(cfg, out=sim / "api-run", progress=False)
    assert report["model"] == "home" and np.isfinite(report["train"]["history"][0]["loss"])


def test_encoder_feature_from_config_encodes_items_on_the_fly(sim, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.rankers import prepare_data

    titles = {f"item-{i:06d}": f"title number {i}" for i in range(0, 80, 2)}  # every other item has a title
    pq.write_table(pa.table({"key": list(titles), "text": list(titles.values())}), tmp_path / "titles.parquet")
    cfg = load_config({"data": {"log": str(sim / "behaviour.parquet"), "tasks": ["click"], "history": {"length": 0}},
                       "features": [{"name": "title", "kind": "encoder", "spec": "hf-text:tiny",
                                     "source": str(tmp_path / "titles.parquet")}],
                       "model": {"name": "mmoe"}})
    data = prepare_data(cfg.data, cfg.features)
    have = np.array([k in titles for k in data.items.keys])
    table = data.items.dense["title"][:-1].numpy()
    assert data.schema.dense["title"] == table.shape[1]
    assert data.features["title"]["misses"] == int((~have).sum())
    assert np.abs(table[have]).sum(1).min() > 0 and not table[~have].any()
