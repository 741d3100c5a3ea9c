"""SYNTHETIC data for the index tests: unit vectors around planted topic centres, and Parquet shards."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def planted(n: int, d: int = 32, topics: int = 16, noise: float = 0.4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC: ``n`` L2-normalised vectors, each a random topic centre plus Gaussian noise; and the topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, d)).astype(np.float32)
    labels = rng.integers(0, topics, n)
    x = centres[labels] + noise * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def write_shard(path, keys, vectors, column: str = "fused", null_rows=()) -> None:
    """An ``emb-*.parquet`` file as ``mmrec extract`` writes it (key + fixed-size float32 list)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    mask = np.zeros(len(keys), dtype=bool)
    mask[list(null_rows)] = True
    col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1], mask=pa.array(mask))
    pq.write_table(pa.table({"key": pa.array(keys, pa.string()), column: col}), path, row_group_size=1000)



@contextlib.contextmanager
def running_server(index, **overrides):
    """A server of ``index`` (object or folder) on a free loopback port, serving in a thread until the block ends."""
    from mmrec.index.server import make_server

    srv = make_server(index, port=0, **overrides)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()
