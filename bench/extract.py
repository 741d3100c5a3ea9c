"""Throughput of ``mmrec extract`` against clip-retrieval ``inference``, same shards, same weights.

What it measures: image-only embedding of N synthetic items (64x64 JPEG + title, written by
``mmrec sample-data``) with ONE random-weight open_clip ViT-B-32 checkpoint, the same batch size and
2 decoding workers for both tools, run one after the other (never concurrently) on this machine.
For each tool it reports the throughput the tool states itself (clip-retrieval: ``stats/*.json`` in
its output folder; mmrec: ``samples_per_s`` of the manifest's run) and the end-to-end throughput by
wall clock (process start to exit, interpreter start and model load included) and per CPU-second
(user + sys of the whole process tree, which a busy shared host moves far less than wall time), plus
the ratios mmrec / clip-retrieval, in a table and in ``WORK/extract-bench.json``. With ``--repeats R``
the tools alternate which goes first, the rows are medians and each ratio is the median of the
ratios of back-to-back pairs, so a drift in machine speed hits both tools alike. ``--variants`` runs
several mmrec settings against the same peer runs: ``default`` (float32 eager, what clip-retrieval
does on CPU), ``bf16`` (``--precision bf16``: bfloat16 weights), ``compile`` (``--compile``) and
``compile-bf16``; each gets its own ratios and its own embedding cross-check.

How: clip-retrieval and its dependencies never enter mmrec's environment. They live in their own
venv (``--peer-venv``), made here when missing as described in /work/shared/BENCH-PEERS.md:
``python3 -m venv DIR && DIR/bin/pip install torch==2.14.1 torchvision==0.29.1 clip-retrieval
"setuptools<81"``. clip-retrieval runs offline only from a local checkpoint passed as
``--clip_model open_clip:ViT-B-32//abs/path.pt``, and always under ``timeout`` (an untagged model
hangs on the hub; so does a run with fewer shards than decoding workers, hence at least 2 shards).
Its process also warms the model up twice (a batch of ``--batch-size`` images and texts, then of 1)
before its loop starts: that counts in its wall and CPU time, not in its own samples/s.

Correctness cross-check: the same weights must give the same vectors up to preprocessing and
clip-retrieval's float16 output, so each mmrec image vector is compared with clip-retrieval's
``img_emb`` row of the same sample key (cosine). A random-weight ViT maps all images close to one
direction, so the raw cosine alone would also be high for mismatched pairs: the check also reports
the cosine after removing each tool's mean vector ("centred") and the raw cosine of deliberately
mismatched pairs as the baseline.

On CUDA machines mmrec runs with ``--device cuda`` (clip-retrieval picks CUDA itself) and GPU
utilisation is sampled with ``torch.cuda.utilization()`` while each tool runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from peers import ensure_venv

REPO = Path(__file__).resolve().parents[1]
MODEL = "ViT-B-32"
PEER_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "clip-retrieval", "setuptools<81"]
PEER_VERSIONS = ["clip-retrieval", "torch", "torchvision", "open_clip_torch", "webdataset", "numpy"]
WEIGHTS_SEED = 0
NUM_WORKERS = 2
# mmrec extract settings the bench can run (--variants): the default and the opt-in speed options.
VARIANTS = {
    "default": [],
    "bf16": ["--precision", "bf16"],
    "compile": ["--compile"],
    "compile-bf16": ["--compile", "--precision", "bf16"],
}


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def ensure_peer(venv: Path, work: Path) -> dict[str, Any]:
    """Make clip-retrieval's own venv unless a working one is there (:func:`bench.peers.ensure_venv`)."""
    return ensure_venv("clip-retrieval", venv, work, packages=PEER_PACKAGES,
                       module="clip_retrieval.clip_inference.main, open_clip", distributions=PEER_VERSIONS)


def make_shards(work: Path, samples: int, shard_size: int) -> str:
    """Fresh item shards (no segments) in ``WORK/data``; returns their brace pattern."""
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    _log(f"writing {samples} synthetic items, {shard_size} per shard, to {data}")
    cmd = [sys.executable, "-m", "mmrec", "sample-data", "--out", str(data), "--items", str(samples),
           "--segments", "0", "--shard-size", str(shard_size), "--json"]
    summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    shards = sorted(Path(p).name for p in summary["item_shards"])
    first, last = shards[0].removesuffix(".tar").split("-")[1], shards[-1].removesuffix(".tar").split("-")[1]
    return str(data / f"items-{{{first}..{last}}}.tar")


def make_weights(work: Path) -> Path:
    """One random-weight open_clip ViT-B-32 state dict (seed fixed), shared by both tools."""
    path = work / "vitb32-random.pt"
    if path.is_file():
        _log(f"reusing checkpoint {path}")
        return path
    import open_clip
    import torch

    torch.manual_seed(WEIGHTS_SEED)
    state = open_clip.create_model(MODEL, pretrained=None).state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.rename(path)
    _log(f"saved random-weight {MODEL} (seed {WEIGHTS_SEED}) to {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return path


class _GpuSampler:
    """Samples ``torch.cuda.utilization()`` (device-wide, %) every ``period`` s in a thread."""

    def __init__(self, period: float = 0.2) -> None:
        self.period, self.values = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.period):
            self.values.append(torch.cuda.utilization())

    def __enter__(self) -> _GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        v = self.values or [0]
        return {"gpu_util_mean_pct": round(float(np.mean(v)), 1), "gpu_util_max_pct": float(max(v))}


def _busy_cpus(seconds: float = 2.0) -> float:
    """CPUs kept busy (all processes) over ``seconds``, from /proc/stat; our own tools are not running then."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    (t0, i0), _, (t1, i1) = sample(), time.sleep(seconds), sample()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def _run_timed(cmd: list[str], log_stem: Path, timeout_s: int, cuda: bool) -> dict[str, Any]:
    """Run ``cmd`` under ``timeout``; wall and CPU seconds, exit code, peak RSS of the largest process, stdout."""
    cmd = ["timeout", "--kill-after=30", str(timeout_s), *cmd]
    busy = _busy_cpus()
    _log("$ " + " ".join(cmd))
    if busy >= 0.25:
        _log(f"warning: {busy:.1f} of {os.cpu_count()} CPUs were busy with other work just before this run: "
             f"wall-clock figures will be inflated (CPU seconds much less)")
    out_path, err_path = log_stem.with_suffix(".stdout"), log_stem.with_suffix(".stderr")
    sampler = _GpuSampler() if cuda else None
    with open(out_path, "w") as out, open(err_path, "w") as err:
        if sampler:
            sampler.__enter__()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.__exit__()
    result = {
        "returncode": proc.returncode,
        "wall_s": round(wall, 2),
        # ru_maxrss of a reaped child covers its reaped descendants too: the largest single process.
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # with its reaped children (loader workers)
        "other_busy_cpus_before": round(busy, 2),
        "stdout": out_path.read_text(),
        "logs": [str(out_path), str(err_path)],
    }
    if sampler:
        result.update(sampler.summary())
    if proc.returncode != 0:
        tail = err_path.read_text()[-3000:]
        sys.exit(f"{cmd[3]} exited with {proc.returncode}" + (" (timeout)" if proc.returncode in (124, 137) else "") + f":\n{tail}")
    return result


def run_clip_retrieval(peer: Path, pattern: str, weights: Path, out: Path, args: argparse.Namespace, cuda: bool) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        str(peer / "bin" / "clip-retrieval"), "inference",
        "--input_dataset", pattern,
        "--input_format", "webdataset",
        "--output_folder", str(out),
        "--clip_model", f"open_clip:{MODEL}/{weights.resolve()}",  # "/" + absolute path = "//abs/..."
        "--batch_size", str(args.batch_size),
        "--num_prepro_workers", str(NUM_WORKERS),
        "--enable_text", "False",
        "--enable_metadata", "False",
        "--wds_image_key", "jpg",
        "--wds_caption_key", "txt",
        "--wds_number_file_per_input_file", str(args.shard_size),
    ]
    result = _run_timed(cmd, out.parent / "clip-retrieval", args.timeout, cuda)
    stats = [json.loads(p.read_text()) for p in sorted((out / "stats").glob("*.json"))]
    if not stats:
        sys.exit(f"clip-retrieval wrote no stats/*.json under {out}")
    # Each partition's stats are sums over its batches (start_time/end_time too, so those are no
    # timestamps): total_duration is the time in its read -> encode -> write loop, model loads excluded.
    samples = sum(s["sample_count"] for s in stats)
    loop_s = sum(s["total_duration"] for s in stats)
    forward_s = sum(s["inference_duration"] for s in stats)
    result.update(samples=samples, own_elapsed_s=round(loop_s, 2), own_samples_per_s=round(samples / loop_s, 2),
                  forward_only_samples_per_s=round(samples / forward_s, 2), own_stats=stats)
    return result


def run_mmrec(pattern: str, weights: Path, out: Path, args: argparse.Namespace, device: str, cuda: bool,
              options: list[str]) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "mmrec", "extract",
        "--input", pattern,
        "--out", str(out),
        "--image", f"open_clip:{MODEL}",
        "--image-weights", str(weights),
        "--text", "none",
        "--audio", "none",
        "--fuse", "none",
        "--batch-size", str(args.batch_size),
        "--num-workers", str(NUM_WORKERS),
        "--device", device,
        *options,
        "--json",
    ]
    result = _run_timed(cmd, out.parent / out.name.removesuffix("-out"), args.timeout, cuda)
    manifest = json.loads(result["stdout"])
    run = manifest["runs"][0]
    result.update(samples=run["samples"], own_elapsed_s=run["elapsed_s"], own_samples_per_s=run["samples_per_s"])
    return result


def _summarise(name: str, runs: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Medians over repeats of one tool's figures, with every run kept under ``runs``."""
    for r in runs:
        if r["samples"] != expected:
            sys.exit(f"{name} embedded {r['samples']} samples, expected {expected}; see {r['logs']}")
        r["e2e_samples_per_s"] = round(r["samples"] / r["wall_s"], 2)
        r["samples_per_cpu_s"] = round(r["samples"] / r["cpu_s"], 2)
        r.pop("stdout")
    keys = ("wall_s", "cpu_s", "own_elapsed_s", "own_samples_per_s", "e2e_samples_per_s", "samples_per_cpu_s",
            "forward_only_samples_per_s", "gpu_util_mean_pct")
    summary = {k: round(float(np.median([r[k] for r in runs])), 2) for k in keys if k in runs[0]}
    return {"samples": expected, **summary, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": runs}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def compare_embeddings(mmrec_out: Path, peer_out: Path) -> dict[str, Any]:
    """Cosine between mmrec's and clip-retrieval's vector of each sample key (see module docstring)."""
    import pyarrow.parquet as pq

    mine: dict[str, np.ndarray] = {}
    for path in sorted(mmrec_out.glob("emb-*.parquet")):
        table = pq.read_table(path, columns=["key", "image"])
        vectors = np.stack(table.column("image").to_numpy(zero_copy_only=False))
        mine.update(zip(table.column("key").to_pylist(), vectors))
    # clip-retrieval writes img_emb/img_emb_<i>.npy and metadata/metadata_<i>.parquet row for row.
    peer_keys: list[str] = []
    peer_vectors = []
    for meta_path in sorted((peer_out / "metadata").glob("metadata_*.parquet"), key=lambda p: int(p.stem.split("_")[1])):
        part = meta_path.stem.split("_")[1]
        keys = pq.read_table(meta_path).column("image_path").to_pylist()
        vectors = np.load(peer_out / "img_emb" / f"img_emb_{part}.npy")
        if len(keys) != len(vectors):
            sys.exit(f"{meta_path}: {len(keys)} keys but {len(vectors)} vectors")
        peer_keys += keys
        peer_vectors.append(vectors)
    theirs = dict(zip(peer_keys, np.concatenate(peer_vectors).astype(np.float32)))
    common = sorted(mine.keys() & theirs.keys())
    if not common:
        sys.exit(f"no common keys: mmrec {sorted(mine)[:3]} ..., clip-retrieval {peer_keys[:3]} ...")
    a = _unit(np.stack([mine[k] for k in common]).astype(np.float32))  # (n, 512)
    b = _unit(np.stack([theirs[k] for k in common]))  # (n, 512)
    raw = (a * b).sum(1)
    centred = (_unit(a - a.mean(0)) * _unit(b - b.mean(0))).sum(1)
    mismatched = (a * np.roll(b, 1, axis=0)).sum(1)
    centred_mismatched = (_unit(a - a.mean(0)) * _unit(np.roll(b, 1, axis=0) - b.mean(0))).sum(1)
    return {
        "matched_by": "mmrec parquet 'key' == clip-retrieval metadata 'image_path' (the webdataset __key__)",
        "keys_mmrec": len(mine),
        "keys_clip_retrieval": len(theirs),
        "keys_common": len(common),
        "cosine_mean": round(float(raw.mean()), 5),
        "cosine_min": round(float(raw.min()), 5),
        "centred_cosine_mean": round(float(centred.mean()), 5),
        "centred_cosine_min": round(float(centred.min()), 5),
        "baseline_mismatched_cosine_mean": round(float(mismatched.mean()), 5),
        "baseline_mismatched_centred_cosine_mean": round(float(centred_mismatched.mean()), 5),
        "agree": bool(raw.min() >= 0.99 and centred.min() >= 0.99),
    }


def _table(rows: list[tuple[str, dict[str, Any]]], ratios: dict[str, float]) -> str:
    head = (f"{'tool':<34}{'samples':>8}{'wall s':>9}{'own samples/s':>15}{'e2e samples/s':>15}"
            f"{'CPU s':>8}{'samples/CPU-s':>15}{'peak RSS MB':>13}")
    lines = [head, "-" * len(head)]
    for name, r in rows:
        lines.append(f"{name:<34}{r['samples']:>8}{r['wall_s']:>9.1f}{r['own_samples_per_s']:>15.2f}"
                     f"{r['e2e_samples_per_s']:>15.2f}{r['cpu_s']:>8.1f}{r['samples_per_cpu_s']:>15.2f}{r['peak_rss_mb']:>13}")
    for name, r in ratios.items():
        lines.append(f"{name + ' / peer *':<34}{'':>8}{'':>9}{r['own_samples_per_s']:>14.2f}x"
                     f"{r['e2e_samples_per_s']:>14.2f}x{'':>8}{r['samples_per_cpu_s']:>14.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for method and caveats.")
    parser.add_argument("--samples", type=int, default=400, help="synthetic items to embed (default 400)")
    parser.add_argument("--shard-size", type=int, default=100, help="items per tar shard (default 100)")
    parser.add_argument("--batch-size", type=int, default=50, help="batch size for both tools (default 50)")
    parser.add_argument("--peer-venv", type=Path, default=REPO / "bench-out" / "peer-clip-retrieval",
                        help="clip-retrieval's own venv, made if missing (default bench-out/peer-clip-retrieval)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-out" / "extract",
                        help="shards, checkpoint, outputs, logs and extract-bench.json (default bench-out/extract)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each tool, alternating; the table shows medians (default 1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed to each tool's run (default 1800)")
    parser.add_argument("--variants", default="default",
                        help="comma-separated mmrec extract settings to run, each measured against the same peer runs: "
                        f"{', '.join(VARIANTS)} (default: default)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown or variants}; choose among {', '.join(VARIANTS)}")
    if min(args.samples, args.shard_size, args.batch_size, args.repeats) < 1:
        parser.error("--samples, --shard-size, --batch-size and --repeats must be positive")
    if -(-args.samples // args.shard_size) < NUM_WORKERS:
        # clip-retrieval's webdataset reader raises "No samples found" in the idle worker, then hangs
        # at exit waiting for its stats-reader process.
        parser.error(f"need at least {NUM_WORKERS} shards (one per decoding worker) for clip-retrieval: "
                     f"lower --shard-size or raise --samples")

    import torch

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    peer = ensure_peer(args.peer_venv.resolve(), work)
    pattern = make_shards(work, args.samples, args.shard_size)
    weights = make_weights(work)

    tools = {
        "clip-retrieval": lambda: run_clip_retrieval(args.peer_venv.resolve(), pattern, weights, work / "clip-retrieval-out", args, cuda),
    }
    names = {v: "mmrec" if v == "default" else f"mmrec {' '.join(VARIANTS[v])}" for v in variants}
    for v in variants:
        tools[names[v]] = lambda v=v: run_mmrec(pattern, weights, work / f"mmrec-{v}-out", args, device, cuda, VARIANTS[v])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
    for i in range(args.repeats):
        # Alternate the order (peer first, then mmrec first, ...) so a drift in machine speed hits both.
        order = list(tools) if i % 2 == 0 else list(tools)[::-1]
        if args.repeats > 1:
            _log(f"repeat {i + 1}/{args.repeats}: {' then '.join(order)}")
        for name in order:
            runs[name].append(tools[name]())
    results = {name: _summarise(name, tool_runs, args.samples) for name, tool_runs in runs.items()}
    # Ratios within each pair of back-to-back runs, then the median: robust to a shared machine
    # whose speed drifts from one minute to the next.
    ratios = {
        names[v]: {
            k: round(float(np.median([m[k] / p[k] for m, p in zip(runs[names[v]], runs["clip-retrieval"])])), 3)
            for k in ("own_samples_per_s", "e2e_samples_per_s", "samples_per_cpu_s")
        }
        for v in variants
    }
    agreement = {names[v]: compare_embeddings(work / f"mmrec-{v}-out", work / "clip-retrieval-out") for v in variants}

    import mmrec

    report = {
        "what": f"image-only {MODEL} embedding (random weights, one checkpoint) of synthetic 64x64 JPEG items",
        "machine": {"cpus": os.cpu_count(), "device": torch.cuda.get_device_name() if cuda else "cpu",
                    "torch_threads_mmrec": torch.get_num_threads()},
        "config": {"samples": args.samples, "shard_size": args.shard_size, "batch_size": args.batch_size,
                   "variants": {names[v]: VARIANTS[v] for v in variants},
                   "num_workers": NUM_WORKERS, "repeats": args.repeats, "shards": pattern, "weights": str(weights), "weights_seed": WEIGHTS_SEED},
        "versions": {"mmrec": mmrec.__version__, "torch": torch.__version__, "peer": peer["versions"]},
        "peer_setup": {k: v for k, v in peer.items() if k != "versions"},
        "results": results,
        "ratio_mmrec_over_clip_retrieval": ratios,
        "embedding_agreement": agreement,
    }
    (work / "extract-bench.json").write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(_table(list(results.items()), ratios))
    print("* median of the per-pair ratios (mmrec run / clip-retrieval run of the same repeat); the rows are medians.")
    print("own samples/s: clip-retrieval = sample_count / total_duration summed over stats/*.json (its "
          "read+encode+write loop); mmrec = manifest runs[0].samples_per_s (its loader+encode+write loop). "
          "e2e = samples / process wall time (imports and model loads included). samples/CPU-s = samples / "
          "(user + sys CPU seconds of the whole process tree): the figure least moved by a busy host.")
    if args.repeats > 1:
        for name, r in results.items():
            per_run = ", ".join(f"{x['own_samples_per_s']:.2f}/{x['e2e_samples_per_s']:.2f}/{x['samples_per_cpu_s']:.2f}"
                                f" ({x['other_busy_cpus_before']:.1f})" for x in r["runs"])
            print(f"{name} per run, own/e2e samples/s / samples/CPU-s (CPUs busy with other work before): {per_run}")
    print(f"clip-retrieval forward only (stats inference_duration): "
          f"{results['clip-retrieval']['forward_only_samples_per_s']:.2f} samples/s")
    if cuda:
        for name, r in results.items():
            print(f"{name}: GPU utilisation mean {r['gpu_util_mean_pct']}% (median over runs)")
    for name, a in agreement.items():
        print(f"{name} vs clip-retrieval embeddings: {a['keys_common']} common keys; cosine mean {a['cosine_mean']:.5f} "
              f"min {a['cosine_min']:.5f}; centred mean {a['centred_cosine_mean']:.5f} min {a['centred_cosine_min']:.5f} "
              f"(mismatched-pair baseline: raw {a['baseline_mismatched_cosine_mean']:.3f}, "
              f"centred {a['baseline_mismatched_centred_cosine_mean']:.3f}) -> {'AGREE' if a['agree'] else 'DISAGREE'}")
    if peer["install_s"] is not None:
        print(f"peer venv installed in {peer['install_s']:.0f} s")
    print(f"report: {work / 'extract-bench.json'}")
    return 0 if all(a["agree"] for a in agreement.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
