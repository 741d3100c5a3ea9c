"""``mmrec align`` (QARM item alignment) under torchrun: 2 CPU processes (DDP, gloo) reach one process's
held-out pair figures on SYNTHETIC items whose behaviour follows hidden groups, and rank 0 alone writes
the output folder."""

import numpy as np
import pytest
from quant_data import write_emb, write_log

from mmrec.pipelines.align import align
from mmrec.store import read_embeddings
from mmrec.testing import torchrun, with_gloo

OPTIONS = {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu", "threads": 1}
TOLERANCE = 0.03  # held-out pair AUC / gap, absolute: the ranks split each global batch (their own in-batch negatives)


def planted(root, items=240, groups=8, users=150, seed=0):
    """SYNTHETIC: items in hidden groups, a weak group direction in their vectors; every user clicks 6 items of one group."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, items)
    x = rng.normal(size=(items, 16)) + 0.7 * rng.normal(size=(groups, 16))[group]
    write_emb(root / "emb", x.astype(np.float32))
    rows = [(u, int(i), 1) for u in range(users)
            for i in rng.choice(np.flatnonzero(group == rng.integers(groups)), 6, replace=False)]
    write_log(root / "log.parquet", rows)


@with_gloo
def test_two_processes_match_one(tmp_path):
    planted(tmp_path)
    job = {"threads": 1, "train": {k: v for k, v in OPTIONS.items() if k != "threads"}}
    one = align(tmp_path / "log.parquet", tmp_path / "emb", tmp_path / "one", job, progress=False)
    two = torchrun(["align", "--log", str(tmp_path / "log.parquet"), "--emb", str(tmp_path / "emb"), "--out", str(tmp_path / "two"),
                    *(f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items())], cwd=tmp_path)
    assert one["after"]["gap"] > one["before"]["gap"] + 0.05  # alignment learned the hidden groups
    assert two["heldout_pairs"] == one["heldout_pairs"] and two["before"] == one["before"]
    for key in ("auc", "gap"):
        assert two["after"][key] == pytest.approx(one["after"][key], abs=TOLERANCE), key
    assert two["steps"] == one["steps"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    keys, vectors = read_embeddings(tmp_path / "two", "fused")
    assert len(keys) == 240 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
