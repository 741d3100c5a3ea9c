"""mmrec extract: outputs, resume after kill -9, two ranks, bad samples and bad shards."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import webdataset as wds
from PIL import Image

from mmrec.cli import main
from mmrec.encoders import load_encoder
from mmrec.pipelines.extract import extract
from mmrec.testing import with_cuda

TINY = ["--image", "open_clip:tiny", "--text", "hf-text:tiny", "--audio", "speech:tiny"]
TINY_KW = {"image": "open_clip:tiny", "text": "hf-text:tiny", "audio": "speech:tiny"}


def _tables(folder):
    return {p.name: pq.read_table(p) for p in sorted(folder.glob("emb-*.parquet"))}


def _assert_same_outputs(a, b):
    ta, tb = _tables(a), _tables(b)
    assert ta.keys() == tb.keys() and ta
    for name in ta:
        assert ta[name].column_names == tb[name].column_names
        assert ta[name].column("key").to_pylist() == tb[name].column("key").to_pylist()
        assert ta[name].column("json").to_pylist() == tb[name].column("json").to_pylist()
        for col in ta[name].column_names[1:-1]:
            np.testing.assert_array_equal(
                np.asarray(ta[name].column(col).to_pylist(), dtype=np.float32),
                np.asarray(tb[name].column(col).to_pylist(), dtype=np.float32),
            )


def test_cli_output_matches_python_api(sample_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["extract", "--input", str(sample_dir / "items-{000000..000002}.tar"), "--out", str(out), *TINY, "--num-workers", "0", "--json"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 48 and manifest["errors"] == 0 and manifest["pending"] == []
    table = pq.read_table(out / "emb-items-000001.parquet")
    assert table.column_names == ["key", "image", "text", "audio", "fused", "json"]
    meta = json.loads(table.schema.metadata[b"mmrec"])
    assert meta["encoders"]["text"]["name"] == "hf-text:tiny" and meta["fused_dim"] == 96

    samples = list(wds.WebDataset(str(sample_dir / "items-000001.tar"), shardshuffle=False))
    assert table.column("key").to_pylist() == [s["__key__"] for s in samples]
    for modality, field in (("image", "jpg"), ("text", "txt"), ("audio", "wav")):
        expected = load_encoder(TINY_KW[modality]).embed([s[field] for s in samples]).numpy()
        got = np.asarray(table.column(modality).to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    fused = np.asarray(table.column("fused").to_pylist())
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)


def test_live_segments_pool_frames_and_comments(sample_dir, tmp_path):
    manifest = extract(str(sample_dir / "segments-000000.tar"), tmp_path, **TINY_KW, num_workers=0, progress=False)
    assert manifest["samples"] == 8
    table = pq.read_table(tmp_path / "emb-segments-000000.parquet")
    sample = next(iter(wds.WebDataset(str(sample_dir / "segments-000000.tar"), shardshuffle=False)))
    frames = [sample[k] for k in sorted(k for k in sample if k.startswith("frame"))]
    per_frame = load_encoder("open_clip:tiny").embed(frames)
    pooled = per_frame.mean(0) / per_frame.mean(0).norm()
    np.testing.assert_allclose(table.column("image")[0].as_py(), pooled.numpy(), atol=1e-5)
    assert table.column("text").null_count == 0 and table.column("audio").null_count == 0


def test_bf16_and_compile_options_agree_with_the_default_and_are_recorded(sample_dir, tmp_path):
    pattern = str(sample_dir / "items-000000.tar")
    args = ["extract", "--input", pattern, "--image", "open_clip:tiny", "--text", "none", "--fuse", "none", "--num-workers", "0", "--json"]
    assert main([*args, "--out", str(tmp_path / "fp32")]) == 0
    assert main([*args, "--out", str(tmp_path / "fast"), "--precision", "bf16", "--compile", "--batch-size", "5"]) == 0
    reference, fast = (pq.read_table(tmp_path / d / "emb-items-000000.parquet") for d in ("fp32", "fast"))
    assert fast.column("key").to_pylist() == reference.column("key").to_pylist()
    a, b = (np.asarray(t.column("image").to_pylist(), dtype=np.float32) for t in (reference, fast))
    assert (a * b).sum(1).min() > 0.99 and not np.array_equal(a, b)
    image = json.loads(fast.schema.metadata[b"mmrec"])["encoders"]["image"]
    assert image["precision"] == "bf16" and image["compiled"]


def test_rerun_skips_done_shards_and_kill9_resume_equals_clean_run(sample_dir, tmp_path):
    pattern = str(sample_dir / "items-{000000..000002}.tar")
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    extract(pattern, clean, **TINY_KW, batch_size=4, num_workers=0, progress=False)

    cmd = [sys.executable, "-m", "mmrec", "extract", "--input", pattern, "--out", str(resumed), *TINY, "--batch-size", "4", "--num-workers", "0"]
    # same thread count as this process: float sums in another order would differ in the last bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not list(resumed.glob("emb-*.parquet")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (resumed / ".tmp-emb-items-000002.parquet.x1y2").write_bytes(b"half a file")  # what a kill mid-write leaves
    done_before = {p.name for p in resumed.glob("emb-*.parquet")}
    assert done_before, "the killed run should have finished a shard"

    manifest = extract(pattern, resumed, **TINY_KW, batch_size=4, num_workers=0, progress=False)
    assert manifest["runs"][0]["shards_skipped"] == len(done_before)
    assert not list(resumed.glob(".tmp-*"))
    _assert_same_outputs(clean, resumed)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_split_shards_without_overlap_or_gap(sample_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "mmrec", "extract", "--input", str(sample_dir), "--out", str(out), *TINY, "--num-workers", "1"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    shards = sorted(p.name.removesuffix(".tar") for p in sample_dir.glob("*.tar"))
    ranks = {}
    for path in out.glob("emb-*.parquet"):
        ranks[path.stem.removeprefix("emb-")] = json.loads(pq.read_schema(path).metadata[b"mmrec"])["rank"]
    assert sorted(ranks) == shards
    assert {s for s, r in ranks.items() if r == 0} == set(shards[0::2])
    assert {s for s, r in ranks.items() if r == 1} == set(shards[1::2])
    keys = [k for t in _tables(out).values() for k in t.column("key").to_pylist()]
    assert len(keys) == len(set(keys)) == 48 + 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["rank"] for r in manifest["runs"]) == [0, 1] and manifest["samples"] == 56


def _wav(seconds=1.0, rate=16000, silent=False):
    t = np.arange(int(seconds * rate)) / rate
    wave = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 220 * t)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV")
    return buf.getvalue()


def _jpg():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_bad_samples_and_truncated_tar_are_logged_and_job_completes(sample_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with wds.TarWriter(str(data / "bad-000000.tar")) as sink:
        sink.write({"__key__": "good", "jpg": _jpg(), "txt": "a fine title", "wav": _wav()})
        sink.write({"__key__": "corrupt-jpeg", "jpg": _jpg()[:40], "txt": "title", "wav": _wav()})
        sink.write({"__key__": "bad-wav", "jpg": _jpg(), "txt": "title", "wav": b"RIFF not really a wav"})
        sink.write({"__key__": "silent-wav", "jpg": _jpg(), "txt": "title", "wav": _wav(silent=True)})
        sink.write({"__key__": "empty-text", "jpg": _jpg(), "txt": "   ", "wav": _wav()})
    whole = (sample_dir / "items-000000.tar").read_bytes()
    (data / "cut-000000.tar").write_bytes(whole[: len(whole) // 2])

    out = tmp_path / "out"
    assert main(["extract", "--input", str(data), "--out", str(out), *TINY, "--num-workers", "2", "--json"]) == 0
    errors = [json.loads(line) for line in (out / "errors-bad-000000.jsonl").read_text().splitlines()]
    assert {(e["key"], e["field"]) for e in errors} == {
        ("corrupt-jpeg", "image"), ("bad-wav", "audio"), ("silent-wav", "audio"), ("empty-text", "text")
    }
    assert pq.read_table(out / "emb-bad-000000.parquet").column("key").to_pylist() == ["good"]
    cut_errors = [json.loads(line) for line in (out / "errors-cut-000000.jsonl").read_text().splitlines()]
    assert [e["field"] for e in cut_errors] == ["tar"]
    kept = pq.read_table(out / "emb-cut-000000.parquet").num_rows
    assert 0 < kept < 16


def test_folder_of_only_bad_shards_exits_nonzero_with_message(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "junk-000000.tar").write_bytes(b"this is not a tar file at all" * 10)
    with tarfile.open(data / "empty-000000.tar", "w"):
        pass
    assert main(["extract", "--input", str(data), "--out", str(tmp_path / "out"), *TINY, "--num-workers", "0"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mmrec:")]
    assert len(err) == 1 and err[0].startswith("mmrec: error: no sample could be read from 2 shard(s)")


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["extract", "--input", str(tmp_path / "missing-{0..1}.tar"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "input shard not found" in capsys.readouterr().err
    assert main(["extract", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--image", "none", "--text", "none", "--audio", "none"]) == 2
    assert main(["extract", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--shard-id", "3", "--num-shards", "2"]) == 2
    assert main(["extract", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--fuse", "magic"]) == 2


@with_cuda
def test_cuda_extraction_agrees_with_cpu(sample_dir, tmp_path):
    pattern = str(sample_dir / "items-000000.tar")
    extract(pattern, tmp_path / "cpu", **TINY_KW, device="cpu", num_workers=0, progress=False)
    manifest = extract(pattern, tmp_path / "gpu", **TINY_KW, device="cuda", num_workers=1, progress=False)
    assert manifest["runs"][0]["device"].startswith("cuda")
    a = np.asarray(pq.read_table(tmp_path / "cpu/emb-items-000000.parquet").column("fused").to_pylist())
    b = np.asarray(pq.read_table(tmp_path / "gpu/emb-items-000000.parquet").column("fused").to_pylist())
    assert (a * b).sum(1).min() > 0.98
