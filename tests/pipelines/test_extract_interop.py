"""mmrec extract with the inputs and outputs users bring: clip-retrieval's .npy layout, each sample's json
metadata carried along, a plain folder of files paired by stem, and remote paths through fsspec (its
local and memory file systems; no network). SYNTHETIC sample shards and files."""

from __future__ import annotations

import io
import json

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from mmrec.encoders import load_encoder
from mmrec.errors import UsageError
from mmrec.pipelines.extract import extract
from mmrec.store import read_embeddings

TEXT_ONLY = {"image": None, "text": "hf-text:tiny", "audio": None, "num_workers": 0, "progress": False}
TEXT_IMAGE = {**TEXT_ONLY, "image": "open_clip:tiny"}


def _samples(path):
    return list(wds.WebDataset(str(path), shardshuffle=False))


def test_npy_output_in_clip_retrieval_layout_with_metadata(sample_dir, tmp_path):
    out = tmp_path / "emb"
    extract(str(sample_dir / "items-{000000..000001}.tar"), out, **TEXT_IMAGE, output_format="npy")
    samples = _samples(sample_dir / "items-000001.tar")
    table = pq.read_table(out / "emb-items-000001.parquet")
    assert [json.loads(j) for j in table.column("json").to_pylist()] == [json.loads(s["json"]) for s in samples]

    text = np.load(out / "text_emb" / "text_emb_items-000001.npy")
    image = np.load(out / "img_emb" / "img_emb_items-000001.npy")
    assert text.dtype == np.float32 and text.shape == (16, 32)
    np.testing.assert_array_equal(text, np.asarray(table.column("text").to_pylist(), np.float32))
    np.testing.assert_array_equal(image, np.asarray(table.column("image").to_pylist(), np.float32))
    np.testing.assert_array_equal(np.load(out / "fused_emb" / "fused_emb_items-000001.npy"),
                                  np.asarray(table.column("fused").to_pylist(), np.float32))
    meta = pq.read_table(out / "metadata" / "metadata_items-000001.parquet").to_pylist()
    assert [m["key"] for m in meta] == [s["__key__"] for s in samples]
    first = json.loads(samples[0]["json"])
    assert {k: meta[0][k] for k in first} == first and meta[0]["has_img_emb"] and meta[0]["has_text_emb"]

    keys, vectors = read_embeddings(out / "text_emb")  # the store reads the layout, ids from the metadata
    assert keys[16:] == [s["__key__"] for s in samples] and np.array_equal(vectors[16:], text)


def test_npy_output_is_added_on_rerun_then_skipped(sample_dir, tmp_path):
    out = tmp_path / "emb"
    shard = str(sample_dir / "items-000000.tar")
    extract(shard, out, **TEXT_ONLY)
    assert not (out / "text_emb").exists()
    manifest = extract(shard, out, **TEXT_ONLY, output_format="npy")
    assert manifest["runs"][0]["shards_processed"] == 1 and (out / "metadata" / "metadata_items-000000.parquet").exists()
    assert extract(shard, out, **TEXT_ONLY, output_format="npy")["runs"][0]["shards_skipped"] == 1


def _image(colour, kind):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, format=kind)
    return buffer.getvalue()


def _write_files(fs, root):
    """SYNTHETIC folder: two items with a cover, a title and metadata; one title-only item in a sub-folder."""
    files = {
        "cat.png": _image((200, 30, 30), "PNG"), "cat.txt": b"a red cat", "cat.json": b'{"item_id": 1, "tags": ["pet"]}',
        "dog.jpeg": _image((30, 30, 200), "JPEG"), "dog.txt": b"a blue dog", "dog.json": b'{"item_id": 2}',
        "more/fish.txt": b"a fish", "notes.md": b"not a sample field", "cat.v2.txt": b"a cat, second take",
    }
    for name, data in files.items():
        fs.makedirs(f"{root}/{name}".rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(f"{root}/{name}", data)
    return files


def test_folder_of_files_is_paired_by_stem_and_resumes(tmp_path):
    folder = tmp_path / "photos"
    files = _write_files(fsspec.filesystem("file"), str(folder))
    out = tmp_path / "emb"
    manifest = extract(str(folder), out, **TEXT_IMAGE)
    assert manifest["done"][0]["shard"] == "photos" and manifest["samples"] == 4
    table = pq.read_table(out / "emb-photos.parquet")
    assert table.column("key").to_pylist() == ["cat", "cat.v2", "dog", "more/fish"]  # a dotted stem is its own sample
    texts = load_encoder("hf-text:tiny").embed(["a red cat", "a cat, second take", "a blue dog", "a fish"]).numpy()
    np.testing.assert_allclose(np.asarray(table.column("text").to_pylist(), np.float32), texts, atol=1e-5)
    assert [v is not None for v in table.column("image").to_pylist()] == [True, False, True, False]
    assert [None if j is None else json.loads(j) for j in table.column("json").to_pylist()] == [
        json.loads(files["cat.json"]), None, json.loads(files["dog.json"]), None]

    assert extract(str(folder), out, **TEXT_IMAGE)["runs"][0]["shards_skipped"] == 1
    (folder / "cat.txt").write_bytes(b"a red cat, renamed")  # another input: refused, not silently mixed
    with pytest.raises(UsageError, match="input_bytes"):
        extract(str(folder), out, **TEXT_IMAGE)


def test_memory_and_file_urls_read_tars_and_folders_like_local_paths(sample_dir, tmp_path):
    local = tmp_path / "local"
    extract(str(sample_dir / "items-{000000..000001}.tar"), local, **TEXT_ONLY)
    memory = fsspec.filesystem("memory")
    for name in ("items-000000.tar", "items-000001.tar"):
        memory.pipe_file(f"/bucket/shards/{name}", (sample_dir / name).read_bytes())
    memory.pipe_file("/bucket/shards/notes.txt", b"not a shard")
    remote = tmp_path / "remote"
    manifest = extract("memory://bucket/shards", remote, **TEXT_ONLY)
    assert [d["shard"] for d in manifest["done"]] == ["items-000000", "items-000001"]
    for name in ("emb-items-000000.parquet", "emb-items-000001.parquet"):
        a, b = pq.read_table(local / name), pq.read_table(remote / name)
        assert a.column("key").equals(b.column("key")) and a.column("text").equals(b.column("text"))
    meta = json.loads(pq.read_schema(remote / "emb-items-000000.parquet").metadata[b"mmrec"])
    assert meta["fingerprint"]["input"] == "memory:///bucket/shards/items-000000.tar"
    assert meta["fingerprint"]["input_bytes"] == (sample_dir / "items-000000.tar").stat().st_size
    assert extract("memory://bucket/shards/items-{000000..000001}.tar", remote, **TEXT_ONLY)["runs"][0]["shards_skipped"] == 2

    _write_files(memory, "/bucket/photos")
    from_memory = extract("memory://bucket/photos", tmp_path / "m", **TEXT_ONLY)
    _write_files(fsspec.filesystem("file"), str(tmp_path / "photos"))
    from_file = extract(f"file://{tmp_path / 'photos'}", tmp_path / "f", **TEXT_ONLY)
    assert from_memory["samples"] == from_file["samples"] == 4
    a, b = pq.read_table(tmp_path / "m" / "emb-photos.parquet"), pq.read_table(tmp_path / "f" / "emb-photos.parquet")
    assert a.column("key").equals(b.column("key")) and a.column("text").equals(b.column("text"))
    with pytest.raises(UsageError, match="not found"):
        extract("memory://bucket/missing.tar", tmp_path / "x", **TEXT_ONLY)
