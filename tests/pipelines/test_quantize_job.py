"""The ``mmrec quantize`` job: its config, the CLI built from it, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrec.cli import build_parser, main
from mmrec.cli.quantize import quantize_job
from mmrec.errors import UsageError
from mmrec.pipelines.quantize import QuantizeJob, quantize


def test_quantize_cli_defaults_are_the_dataclass_defaults():
    assert quantize_job(build_parser().parse_args(["quantize", "--emb", "e", "--out", "o"])) == QuantizeJob()
    args = build_parser().parse_args(["quantize", "--emb", "e", "--out", "o", "--method", "rq-vae", "--epochs", "2",
                                      "--option", "latent_dim=4", "--option", "hidden=[8]"])
    job = quantize_job(args)
    assert job.options == {"latent_dim": 4, "hidden": [8], "epochs": 2}
    assert job.build_quantizer().config.hidden == (8,)


@pytest.mark.parametrize("overrides, message", [
    ({"levls": 2}, "quantize: unknown field 'levls'; known: method, column, id_column, levels"),
    ({"options": {"epochs": 3}}, "rq-kmeans: unknown field 'epochs'; known: levels, codebook_size"),
    ({"method": "pq"}, "unknown quantizer 'pq'"),
])
def test_unknown_config_key_is_one_usage_error(tmp_path, overrides, message):
    with pytest.raises(UsageError) as err:
        quantize(tmp_path / "nothing", tmp_path / "out", progress=False, **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def _write_emb(folder, n=60, d=6):
    """SYNTHETIC: ``n`` random vectors as one emb-*.parquet in extract's layout."""
    folder.mkdir(parents=True)
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    values = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)
    pq.write_table(pa.table({"key": [f"item-{i:06d}" for i in range(n)], "fused": values}), folder / "emb-a.parquet")


def test_yaml_job_config(tmp_path, capsys):
    _write_emb(tmp_path / "emb")
    (tmp_path / "q.yaml").write_text("method: balanced\nlevels: 2\ncodebook_size: 4\noptions:\n  niter: 3\n")
    report = quantize(tmp_path / "emb", tmp_path / "codes", tmp_path / "q.yaml", progress=False)
    assert report["method"] == "balanced" and report["codebook_sizes"] == [4, 4] and report["config"]["niter"] == 3
    assert main(["quantize", "--emb", str(tmp_path / "emb"), "--out", str(tmp_path / "c2"), "--option", "nope"]) == 2
    assert "--option takes KEY=VALUE" in capsys.readouterr().err
    assert main(["quantize", "--emb", str(tmp_path / "emb"), "--out", str(tmp_path / "c2"), "--codebook-size", "4",
                 "--option", "gpu=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["gpu"] is False
