"""The trainer under torchrun (DDP, gloo on CPU) and with CUDA + AMP where a GPU is present."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from mmrec.pipelines.rank import train
from mmrec.rankers import simulate
from mmrec.testing import with_cuda


def tiny_run(root, **optim):
    simulate(root, users=40, items=80, authors=10, impressions=20, seed=2)
    config = {
        "data": {"log": "behaviour.parquet", "tasks": ["click", "like", "follow"], "history": {"length": 5}},
        "features": [{"name": "content", "kind": "embeddings", "path": "emb"}],
        "model": {"name": "pepnet", "embedding_dim": 8, "tower": [16]},
        "optim": {"epochs": 2, "batch_size": 128, **optim}, "out": "run",
    }
    (root / "rank.yaml").write_text(yaml.safe_dump(config))
    return root / "rank.yaml"


@pytest.mark.slow
def test_ddp_two_cpu_processes_under_torchrun(tmp_path):
    config = tiny_run(tmp_path, threads=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mmrec", "rank", "train", "--config", str(config), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])  # rank 0 reports; rank 1 prints nothing
    assert report["world_size"] == 2 and report["device"] == "cpu"
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert all(np.isfinite(h["loss"]) for h in report["train"]["history"])


@with_cuda
def test_cuda_training_uses_amp(tmp_path):
    report = train(tiny_run(tmp_path, device="cuda"), progress=False)
    assert report["device"].startswith("cuda") and report["amp"] in ("bfloat16", "float16")
    assert all(np.isfinite(h["loss"]) for h in report["train"]["history"])
    assert np.isfinite(report["metrics"]["click"]["all"]["auc"])
