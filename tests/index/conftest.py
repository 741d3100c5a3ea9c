"""Fixtures of the index tests (SYNTHETIC planted-topic vectors; helpers in index_data.py)."""

from __future__ import annotations

import pytest
from index_data import planted, write_shard


@pytest.fixture(scope="session")
def topics_data():
    """4000 x 32 SYNTHETIC vectors in 16 planted topics, keys ``item-00000`` …"""
    x, labels = planted(4500)
    return x[:4000], labels[:4000], [f"item-{i:05d}" for i in range(4000)]


@pytest.fixture(scope="session")
def fresh_queries():
    """500 more vectors from the same planted topics as ``topics_data``, never indexed."""
    return planted(4500)[0][4000:]


@pytest.fixture
def emb_dir(tmp_path, topics_data):
    """The topics data as two Parquet shards (rows 0-2999, 3000-3999) in ``tmp_path/emb``."""
    x, _, keys = topics_data
    folder = tmp_path / "emb"
    folder.mkdir()
    write_shard(folder / "emb-a.parquet", keys[:3000], x[:3000])
    write_shard(folder / "emb-b.parquet", keys[3000:], x[3000:])
    return folder


@pytest.fixture
def one_torch_thread():
    """Tiny models train faster on one thread than on two busy cores (thread hand-offs dominate)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
