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


class TopicWords:
    """SYNTHETIC text encoder of the planted topics: a text naming topic ``t`` ("topic 3", "more of topic 3")
    embeds to the centre of topic ``t``'s items; any other text to the zero vector."""

    modality = "text"
    name = "SYNTHETIC topic words"

    def __init__(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.centres = np.stack([x[labels == t].mean(axis=0) for t in range(labels.max() + 1)])  # (topics, d)
        self.dim = x.shape[1]

    def embed(self, texts: list[str]):
        import re

        import torch

        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            found = re.search(r"topic (\d+)", text)
            if found and int(found.group(1)) < len(self.centres):
                out[i] = self.centres[int(found.group(1))]
        return torch.from_numpy(out)


def item_files(folder, keys, labels, images: int = 8):
    """SYNTHETIC ``metadata.parquet`` (key, caption, url; PNG bytes in ``image`` for the first ``images``
    items) and ``codes.parquet`` (c1 = the item's topic, c2 = row % 4, c3 = row % 50); returns their paths."""
    import io

    from PIL import Image

    from mmrec.quantization.files import save_codes

    def png(i):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 30 % 256, 90, 160)).save(buf, format="PNG")
        return buf.getvalue()

    n = len(keys)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "key": pa.array(keys, pa.string()),
        "caption": [f"SYNTHETIC item {i} of topic {labels[i]}" for i in range(n)],
        "url": [f"https://example.invalid/{k}.jpg" for k in keys],
        "image": pa.array([png(i) if i < images else None for i in range(n)], pa.binary()),
    }), folder / "metadata.parquet")
    rows = np.arange(n)
    save_codes(folder / "codes.parquet", keys, np.stack([labels, rows % 4, rows % 50], axis=1), info={"method": "SYNTHETIC"})
    return folder / "metadata.parquet", folder / "codes.parquet"
