"""The embedding store reads the formats users bring: ``.npy`` (clip-retrieval's layout, with or without
its metadata) and any Parquet with its own id and vector columns (autofaiss's ``embedding``); index build
and quantize take them through the store. SYNTHETIC planted-topic vectors (index_data.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from index_data import planted

from mmrec.cli import main
from mmrec.errors import InputError, UsageError
from mmrec.pipelines.index import evaluate_index
from mmrec.quantization import load_codes
from mmrec.store import open_source, read_embeddings


@pytest.fixture(scope="module")
def vectors():
    x, labels = planted(600)
    return x, labels


def _clip_layout(root, x, keys=None, present=None):
    """``root/img_emb/img_emb_{0,1}.npy`` and, with ``keys``, ``root/metadata/metadata_{0,1}.parquet``."""
    (root / "img_emb").mkdir(parents=True)
    halves = [slice(0, 400), slice(400, len(x))]
    for i, part in enumerate(halves):
        np.save(root / "img_emb" / f"img_emb_{i}.npy", x[part].astype(np.float16))
        if keys is not None:
            (root / "metadata").mkdir(exist_ok=True)
            table = {"key": keys[part], "caption": [f"caption {k}" for k in keys[part]]}
            if present is not None:
                table["has_img_emb"] = present[part]
            pq.write_table(pa.table(table), root / "metadata" / f"metadata_{i}.parquet")
    return root / "img_emb"


def test_npy_folder_ids_are_row_numbers_without_metadata(tmp_path, vectors):
    x, _ = vectors
    folder = _clip_layout(tmp_path / "emb", x)
    np.save(folder / "img_emb_10.npy", x[:3])  # natural order: after img_emb_1, not before it
    keys, got = read_embeddings(folder)
    assert keys == [str(i) for i in range(len(x) + 3)]
    np.testing.assert_allclose(got[: len(x)], x.astype(np.float16), rtol=0)
    np.testing.assert_allclose(got[len(x):], x[:3])
    assert got.dtype == np.float32 and got.flags.c_contiguous


def test_npy_ids_and_absent_rows_come_from_the_sibling_metadata(tmp_path, vectors):
    x, _ = vectors
    keys = np.array([f"img-{i:04d}" for i in range(len(x))])
    present = np.ones(len(x), bool)
    present[[5, 450]] = False
    folder = _clip_layout(tmp_path / "emb", x, keys, present)
    source = open_source(folder)
    got = [k for b in source.batches(batch_rows=64) for k in b.keys.to_pylist()]
    assert got == [k for k, p in zip(keys, present) if p] and source.skipped_null == 2
    assert source.describe()["type"] == "npy"
    with pytest.raises(UsageError, match="no id column 'image_path'"):
        list(open_source(folder, id_column="image_path").batches())


def test_npy_metadata_with_other_row_count_is_refused(tmp_path, vectors):
    x, _ = vectors
    folder = _clip_layout(tmp_path / "emb", x, np.array([str(i) for i in range(len(x))]))
    pq.write_table(pa.table({"key": ["a"]}), tmp_path / "emb" / "metadata" / "metadata_1.parquet")
    with pytest.raises(InputError, match="metadata_1.parquet has 1 rows"):
        read_embeddings(folder)


def _autofaiss(path, x, ids, fixed=False):
    kind = pa.list_(pa.float32(), x.shape[1]) if fixed else pa.list_(pa.float64())
    column = pa.array(list(x.astype(np.float64 if not fixed else np.float32)), type=kind)
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int64()), "embedding": column, "title": [str(i) for i in ids]}), path)


def test_parquet_with_its_own_id_and_vector_columns(tmp_path, vectors):
    x, _ = vectors
    path = tmp_path / "items.parquet"
    _autofaiss(path, x, np.arange(1000, 1000 + len(x)))
    keys, got = read_embeddings(path, column="embedding", id_column="item_id")
    assert keys[:2] == ["1000", "1001"] and np.allclose(got, x, atol=1e-6)
    with pytest.raises(UsageError, match="no id column 'key'.*--id-column"):
        read_embeddings(path, column="embedding")
    bad = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"key": ["a", "b"], "embedding": pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float32()))}), bad)
    with pytest.raises(InputError, match="key 'b' has 1 values, other rows 2"):
        read_embeddings(bad, column="embedding")


def test_index_build_and_eval_from_an_autofaiss_parquet_on_the_cli(tmp_path, vectors, capsys):
    x, labels = vectors
    folder = tmp_path / "emb"
    folder.mkdir()
    _autofaiss(folder / "part-0.parquet", x[:300], np.arange(300))
    _autofaiss(folder / "part-1.parquet", x[300:], np.arange(300, len(x)))
    index = tmp_path / "index"
    assert main(["index", "build", "--emb", str(folder), "--out", str(index), "--kind", "faiss:Flat",
                 "--vector-column", "embedding", "--id-column", "item_id", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n"] == len(x) and info["source"]["id_column"] == "item_id"
    assert main(["index", "search", "--index", str(index), "--key", "7", "--k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"][0]
    assert hits[0]["key"] == "7" and all(labels[int(h["key"])] == labels[7] for h in hits)  # planted topic recovered
    report = evaluate_index(index, n_queries=50, ks=(1, 10))  # re-reads the recorded files with their id column
    assert report["recall"]["10"] == 1.0


def test_index_build_add_and_quantize_from_npy(tmp_path, vectors, capsys):
    x, labels = vectors
    folder = _clip_layout(tmp_path / "emb", x, np.array([f"img-{i:04d}" for i in range(len(x))]))
    index = tmp_path / "index"
    assert main(["index", "build", "--emb", str(folder), "--out", str(index), "--kind", "faiss:Flat", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"]["type"] == "npy"
    extra = tmp_path / "more.npy"
    np.save(extra, x[:10])
    assert main(["index", "add", "--index", str(index), "--emb", str(extra), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(x) + 10
    keys = pq.read_table(index / "ids.parquet").column("key").to_pylist()
    assert keys[:2] == ["img-0000", "img-0001"] and keys[len(x):len(x) + 2] == [str(len(x)), str(len(x) + 1)]

    codes = tmp_path / "codes"
    assert main(["quantize", "--emb", str(folder), "--out", str(codes), "--levels", "1", "--codebook-size", "16", "--json"]) == 0
    got_keys, got, _ = load_codes(codes / "codes.parquet")
    assert got_keys[0] == "img-0000" and got.shape == (len(x), 1)
    purity = np.mean([np.bincount(labels[got[:, 0] == c]).max() / (got[:, 0] == c).sum() for c in np.unique(got[:, 0])])
    assert purity > 0.9  # the codes recover the planted topics


def test_matrix_of_an_array_is_the_array_itself_and_of_files_every_present_row(tmp_path, vectors):
    """An index build over an array holds no second copy of it (the 10M-item tree's peak memory); files give
    the same rows as their batches, absent rows skipped."""
    x, _ = vectors
    keys, got = open_source(x).matrix()
    assert got is x or np.shares_memory(got, x)
    assert keys.to_pylist() == [str(i) for i in range(len(x))]
    names = np.array([f"img-{i:04d}" for i in range(len(x))])
    present = np.ones(len(x), bool)
    present[[5, 450]] = False
    source = open_source(_clip_layout(tmp_path / "emb", x, names, present))
    keys, got = source.matrix()
    assert keys.to_pylist() == list(names[present]) and source.skipped_null == 2
    np.testing.assert_allclose(got, x[present].astype(np.float16), rtol=0)
