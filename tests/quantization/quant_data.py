"""SYNTHETIC data helpers for the quantization tests."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def blobs(n_per: int = 40, k: int = 6, d: int = 16, seed: int = 0, scale: float = 8.0):
    """SYNTHETIC: ``k`` Gaussian blobs of ``n_per`` points in ``d`` dims; returns (x float32, labels)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=scale, size=(k, d))
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


def write_emb(folder, x, *, column="fused", keys=None, shard="items-000000"):
    """Write ``x`` as one emb-*.parquet in the layout of ``mmrec extract``; returns the keys."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = keys or [f"item-{i:06d}" for i in range(len(x))]
    values = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(x, np.float32).reshape(-1)), x.shape[1])
    pq.write_table(pa.table({"key": keys, column: values}), folder / f"emb-{shard}.parquet")
    return keys


def write_log(path, rows):
    """Write a tiny behaviour log from (user_id, item_id, click) rows, in the given (time) order."""
    user, item, click = zip(*rows)
    pq.write_table(pa.table({"user_id": np.array(user, np.int64), "item_id": np.array(item, np.int64),
                             "ts": np.arange(len(rows), dtype=np.int64), "click": np.array(click, np.int8)}), path)
