"""The trainer under torchrun (DDP, gloo on CPU: the same figures as one process) and with CUDA + AMP where a GPU is present."""

import numpy as np
import pytest
import yaml

from mmrec.pipelines.rank import load_run, train
from mmrec.rankers import simulate
from mmrec.testing import torchrun, with_cuda, with_gloo


def tiny_run(root, validation=0.0, **optim):
    simulate(root, users=40, items=80, authors=10, impressions=20, seed=2)
    config = {
        "data": {"log": "behaviour.parquet", "tasks": ["click", "like", "follow"], "history": {"length": 5},
                 "validation_fraction": validation},
        "features": [{"name": "content", "kind": "embeddings", "path": "emb"}],
        "model": {"name": "pepnet", "embedding_dim": 8, "tower": [16]},
        "optim": {"epochs": 2, "batch_size": 128, **optim}, "out": "run",
    }
    (root / "rank.yaml").write_text(yaml.safe_dump(config))
    return root / "rank.yaml"


@with_gloo
def test_ddp_two_cpu_processes_match_one(tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank half of every global batch of 128 rows; the validation
    and test AUCs are those of one process within 0.02 (the per-rank means of the masked task losses
    weigh the rows a little differently), and rank 0 alone writes a run folder that loads."""
    config = tiny_run(tmp_path, validation=0.2, threads=1)
    one = train(config, out=tmp_path / "one", progress=False)
    two = torchrun(["rank", "train", "--config", str(config)], cwd=tmp_path)
    assert two["world_size"] == 2 and two["device"] == "cpu"
    assert [h["steps"] for h in two["train"]["history"]] == [h["steps"] for h in one["train"]["history"]]
    assert two["validation"]["best_auc"] == pytest.approx(one["validation"]["best_auc"], abs=0.02)
    for task in ("click", "like", "follow"):
        assert two["metrics"][task]["all"]["auc"] == pytest.approx(one["metrics"][task]["all"]["auc"], abs=0.02, nan_ok=True)
    assert all(np.isfinite(h["loss"]) for h in two["train"]["history"])
    run = load_run(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (tmp_path / "one").iterdir() if not p.name.startswith("."))
    assert run is not None


@with_cuda
def test_cuda_training_uses_amp(tmp_path):
    report = train(tiny_run(tmp_path, device="cuda"), progress=False)
    assert report["device"].startswith("cuda") and report["amp"] in ("bfloat16", "float16")
    assert all(np.isfinite(h["loss"]) for h in report["train"]["history"])
    assert np.isfinite(report["metrics"]["click"]["all"]["auc"])
