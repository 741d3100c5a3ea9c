"""RQ-Kmeans codes: ``mmrec`` against bare FAISS (speed) and vector-quantize-pytorch (code quality).

Data: SYNTHETIC clustered vectors, seeded: ``N`` points in ``D`` dims drawn around a two-level
hierarchy of planted centres (``--top`` coarse centres, each with ``--sub`` finer ones) plus noise.

1. Speed. Bare FAISS RQ-Kmeans is what mmrec wraps: per level ``faiss.Kmeans(niter, seed, no
   subsampling).train(residual)``, nearest-centroid search, subtract. mmrec is ``RQKMeans.fit(x)``
   then ``transform(x)`` (input checks, blocked assignment, a second assignment pass in
   ``transform``). Same levels, codebook size, niter and seeds; the two run one after the other,
   alternating which goes first over ``--repeats``; the ratio is the median of the back-to-back
   ratios (goal <= 1.2). The codes of both must be identical.
2. Code quality. vector-quantize-pytorch ``ResidualVQ(dim=D, num_quantizers=L, codebook_size=K,
   kmeans_init=True)`` runs in its own venv (``--peer-venv``, made when missing: ``pip install
   torch==2.14.1 vector-quantize-pytorch``, torch from local disk). It learns its codebooks by EMA in
   training-mode forward passes; on a 2-core CPU that is seconds per large batch, so it trains
   ``--peer-steps`` steps of ``--peer-batch`` vectors drawn from a ``--peer-subsample`` subsample
   (the first batch does its k-means init), then encodes all N vectors. Its codes come back as a
   .npy file and go through the same :func:`mmrec.quantization.code_report` as mmrec's: per-level
   usage and entropy, % unique ids, collision rate, relative reconstruction error (goal: mmrec's %
   unique ids >= the peer's). Balanced RQ-Kmeans is reported beside them (``--skip-balanced``).

Writes ``WORK/quantize-bench.json`` (default ``bench-out/quantize``) and prints a table. The machine
may be shared with other jobs: read the timings as rough, the ratio as the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from peers import ensure_venv

REPO = Path(__file__).resolve().parents[1]
# OpenMP threads that spin while waiting lose most of their time on a machine shared with other jobs;
# passive waiting is set before FAISS and torch load, the same for every contender.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PEER_SCRIPT = r'''
import json, sys, time
import numpy as np, torch
from vector_quantize_pytorch import ResidualVQ
import importlib.metadata as m
args = json.loads(sys.argv[1])
torch.manual_seed(args["seed"])
x = np.load(args["data"], mmap_mode="r")
rng = np.random.default_rng(args["seed"])
sub = torch.from_numpy(np.ascontiguousarray(x[np.sort(rng.choice(len(x), size=min(args["subsample"], len(x)), replace=False))]))
rvq = ResidualVQ(dim=x.shape[1], num_quantizers=args["levels"], codebook_size=args["codebook_size"], kmeans_init=True)
rvq.train()
start = time.perf_counter()
with torch.no_grad():  # codebooks learn by EMA inside forward; no optimizer needed
    for step in range(args["steps"]):
        batch = sub[torch.randint(len(sub), (args["batch"],))]
        rvq(batch[None])  # (1, B, D)
train_s = time.perf_counter() - start
rvq.eval()
start = time.perf_counter()
codes, recon = [], []
with torch.no_grad():
    for s in range(0, len(x), 65536):
        chunk = torch.from_numpy(np.ascontiguousarray(x[s : s + 65536]))[None]
        quantized, indices, _ = rvq(chunk)
        codes.append(indices[0].numpy()); recon.append(quantized[0].numpy())
encode_s = time.perf_counter() - start
np.save(args["codes"], np.concatenate(codes).astype(np.int64))
np.save(args["recon"], np.concatenate(recon).astype(np.float32))
print(json.dumps({"train_s": train_s, "encode_s": encode_s, "torch_threads": torch.get_num_threads(),
                  "versions": {p: m.version(p) for p in ("vector-quantize-pytorch", "torch")}}))
'''


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def make_data(n: int, dim: int, top: int, sub: int, seed: int) -> np.ndarray:
    """SYNTHETIC ``(n, dim)`` float32 around a two-level hierarchy of planted centres."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(top, dim)).astype(np.float32)
    fine = 0.5 * rng.normal(size=(top, sub, dim)).astype(np.float32)
    a, b = rng.integers(0, top, n), rng.integers(0, sub, n)
    return np.ascontiguousarray(coarse[a] + fine[a, b] + 0.25 * rng.normal(size=(n, dim)).astype(np.float32))


def bare_faiss(x: np.ndarray, levels: int, k: int, niter: int, seed: int) -> tuple[np.ndarray, float]:
    """RQ-Kmeans with FAISS alone; returns (codes, seconds)."""
    import faiss

    start = time.perf_counter()
    residual = x.copy()
    codes = np.empty((len(x), levels), dtype=np.int64)
    for level in range(levels):
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed + level, max_points_per_centroid=len(x),
                          min_points_per_centroid=1, verbose=False)
        km.train(residual)
        _, labels = km.index.search(residual, 1)
        codes[:, level] = labels[:, 0]
        residual -= km.centroids[labels[:, 0]]
    return codes, time.perf_counter() - start


def mmrec_rq(x: np.ndarray, levels: int, k: int, niter: int, seed: int, *, balanced: bool = False) -> tuple[Any, np.ndarray, float]:
    """mmrec RQ-Kmeans ``fit`` then ``transform``; returns (quantizer, codes, seconds)."""
    from mmrec.quantization import BalancedRQKMeans, RQKMeans

    start = time.perf_counter()
    q = (BalancedRQKMeans if balanced else RQKMeans)(levels=levels, codebook_size=k, niter=niter, seed=seed)
    codes = q.fit_transform(x) if balanced else q.fit(x).transform(x)  # balanced: the fitted (balanced) codes
    return q, codes, time.perf_counter() - start


def ensure_peer(venv: Path, work: Path) -> None:
    """vector-quantize-pytorch's own venv, made unless a working one is there (:func:`peers.ensure_venv`)."""
    ensure_venv("vector-quantize-pytorch", venv, work)


def run_peer(venv: Path, work: Path, x_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = {"data": str(x_path), "codes": str(work / "peer-codes.npy"), "recon": str(work / "peer-recon.npy"),
            "levels": args.levels, "codebook_size": args.codebook_size, "steps": args.peer_steps,
            "batch": args.peer_batch, "subsample": args.peer_subsample, "seed": args.seed}
    start = time.perf_counter()
    done = subprocess.run([str(venv / "bin" / "python"), "-c", PEER_SCRIPT, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"vector-quantize-pytorch run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def _row(name: str, report: dict[str, Any]) -> str:
    usage = "/".join(f"{100 * lv['usage']:.0f}" for lv in report["levels"])
    entropy = "/".join(f"{lv['normalized_entropy']:.3f}" for lv in report["levels"])
    return (f"| {name} | {usage} | {entropy} | {report['unique_id_pct']:.2f} | {100 * report['collision_rate']:.2f} "
            f"| {report['relative_reconstruction_error']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="vectors (default 200000)")
    parser.add_argument("--dim", type=int, default=256, help="dimensions (default 256)")
    parser.add_argument("--top", type=int, default=64, help="planted coarse centres (default 64)")
    parser.add_argument("--sub", type=int, default=32, help="planted fine centres per coarse one (default 32)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--niter", type=int, default=20, help="k-means iterations per level (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="timed pairs, alternating order (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-balanced", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--peer-venv", type=Path, default=REPO / "bench-out" / "peer-vqp")
    parser.add_argument("--peer-steps", type=int, default=100, help="ResidualVQ training steps (default 100)")
    parser.add_argument("--peer-batch", type=int, default=8192, help="vectors per ResidualVQ step (default 8192)")
    parser.add_argument("--peer-subsample", type=int, default=65536, help="vectors ResidualVQ trains on (default 65536)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-out" / "quantize")
    args = parser.parse_args(argv)

    import faiss

    from mmrec.quantization import code_report

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    x = make_data(args.n, args.dim, args.top, args.sub, args.seed)
    x_path = work / "data.npy"
    np.save(x_path, x)
    _log(f"SYNTHETIC data {x.shape}, {args.top}x{args.sub} planted centres; RQ {args.levels}x{args.codebook_size}, niter {args.niter}")

    pairs, bare_codes, mine_codes, quantizer = [], None, None, None
    for r in range(args.repeats):
        order = ["faiss", "mmrec"] if r % 2 == 0 else ["mmrec", "faiss"]
        times = {}
        for who in order:
            if who == "faiss":
                bare_codes, times["faiss"] = bare_faiss(x, args.levels, args.codebook_size, args.niter, args.seed)
            else:
                quantizer, mine_codes, times["mmrec"] = mmrec_rq(x, args.levels, args.codebook_size, args.niter, args.seed)
        pairs.append(times)
        _log(f"repeat {r + 1}: bare FAISS {times['faiss']:.1f} s, mmrec fit+transform {times['mmrec']:.1f} s, "
             f"ratio {times['mmrec'] / times['faiss']:.3f}")
    ratios = [p["mmrec"] / p["faiss"] for p in pairs]
    speed = {"repeats": pairs, "ratios": ratios, "median_ratio": float(np.median(ratios)),
             "codes_identical": bool(np.array_equal(bare_codes, mine_codes))}

    quality = {"mmrec rq-kmeans": code_report(mine_codes, quantizer.codebook_sizes, x=x, x_hat=quantizer.reconstruct(mine_codes))}
    timings: dict[str, Any] = {}
    if not args.skip_balanced:
        bq, bcodes, seconds = mmrec_rq(x, args.levels, args.codebook_size, args.niter, args.seed, balanced=True)
        quality["mmrec balanced"] = code_report(bcodes, bq.codebook_sizes, x=x, x_hat=bq.reconstruct(bcodes))
        timings["mmrec balanced fit_s"] = seconds
        _log(f"balanced RQ-Kmeans: {seconds:.1f} s")
    peer = None
    if not args.skip_peer:
        ensure_peer(args.peer_venv.resolve(), work)
        _log(f"vector-quantize-pytorch ResidualVQ: {args.peer_steps} steps x {args.peer_batch} vectors from a "
             f"{args.peer_subsample} subsample, then encoding all {args.n}")
        peer = run_peer(args.peer_venv.resolve(), work, x_path, args)
        peer_codes = np.load(work / "peer-codes.npy")
        name = f"vector-quantize-pytorch {peer['versions']['vector-quantize-pytorch']} ResidualVQ"
        quality[name] = code_report(peer_codes, [args.codebook_size] * args.levels, x=x, x_hat=np.load(work / "peer-recon.npy"))
        _log(f"peer: train {peer['train_s']:.1f} s, encode {peer['encode_s']:.1f} s")

    result = {
        "data": {"n": args.n, "dim": args.dim, "top": args.top, "sub": args.sub, "synthetic": True, "seed": args.seed},
        "rq": {"levels": args.levels, "codebook_size": args.codebook_size, "niter": args.niter},
        "speed": speed, "quality": quality, "timings": timings, "peer": peer,
        "peer_setup": None if args.skip_peer else {"steps": args.peer_steps, "batch": args.peer_batch, "subsample": args.peer_subsample},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "faiss": faiss.__version__,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "date": time.strftime("%Y-%m-%d"),
    }
    (work / "quantize-bench.json").write_text(json.dumps(result, indent=2))

    print()
    print(f"RQ-Kmeans {args.levels}x{args.codebook_size} on {args.n}x{args.dim}: mmrec / bare FAISS time = "
          f"{speed['median_ratio']:.3f} (median of {len(ratios)}; goal <= 1.2); identical codes: {speed['codes_identical']}")
    print()
    print("| codes | usage % per level | normalised entropy per level | % unique ids | collision % | rel. recon. error |")
    print("|---|---|---|---|---|---|")
    for name, report in quality.items():
        print(_row(name, report))
    print(f"\nwritten: {work / 'quantize-bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
