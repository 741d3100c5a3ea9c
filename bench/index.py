"""``mmrec index build --kind auto`` against autofaiss ``build_index`` at the same memory budget; the
MISS tree against IVF at equal candidate counts; the HTTP server under a bounded loopback load.

What it measures, in one run on this machine:

1. **Data.** N SYNTHETIC clustered unit vectors (default 1,000,000 x 128: 1000 Gaussian clusters with
   per-cluster spread, L2-normalised), written as ``emb-*.parquet`` shards (what ``mmrec extract``
   writes; mmrec reads these) and the same rows as ``.npy`` files (what autofaiss reads), plus 1000
   query vectors drawn from the same mixture and never indexed. Exact top-100 of every query by
   inner product is computed once by a streaming flat search and shared by every comparison.
2. **mmrec auto vs autofaiss.** autofaiss 2.18 runs in its own venv (``--peer-venv``, made here when
   missing as in /work/shared/BENCH-PEERS.md: ``python3 -m venv DIR && DIR/bin/pip install autofaiss
   faiss-cpu "pyarrow<26"``) as a subprocess: ``build_index(npy_dir, max_index_memory_usage=BUDGET,
   max_index_query_time_ms=10, metric_type="ip")``. It runs first; then mmrec runs as a subprocess
   too: ``build_index(parquet_dir, kind="auto", max_memory=BUDGET, max_query_ms=10,
   target_recall=R)`` where R is autofaiss's recall@10 measured here, rounded down to 3 decimals and
   capped at 0.999, so that both aim at the same recall. Build time is each tool's own timer around
   its build call (mmrec's includes its exact-search pass and tuning; autofaiss's its speed search and
   metrics); wall time and peak RSS are per process. Both saved indexes are then loaded into this
   process and measured by the same code on the same queries: recall@10 vs exact, batch QPS (1000
   queries per call, 2 FAISS threads, repeated to >= 1 s) and single-query latency.
3. **MISS tree vs IVF.** A tree (branching 32, inner-product beam search) and an ``IVF{nlist},Flat``
   index over the same vectors; for several beams / nprobes, recall@10 and @100 against the number of
   embeddings each query is compared with (tree: nodes scored over all levels; IVF: nlist centroids
   plus the vectors of the probed lists, counted exactly per query), and IVF's recall at the tree's
   candidate count by log-linear interpolation.
4. **Server.** ``mmrec index serve`` on 127.0.0.1 (a subprocess) over mmrec's auto index; client
   asyncio clients in this process (bench/serve.py's load) send single-vector requests, then
   32-vector batches, each for a bounded time (``--server-seconds``): requests/s, vectors/s, p50/p99 latency. Client and server share the
   same 2 cores.

Caveat: the machine (2 cores) is shared with other engineers' jobs, so absolute timings are noisy;
both tools of a comparison run one after the other under the same conditions. Results go to a table
on stdout and to ``bench-out/index-bench.json`` (``--out``).

    .venv/bin/python bench/index.py                     # the full run (about 20-30 min here)
    .venv/bin/python bench/index.py --n 100000 --server-seconds 3   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from peers import ensure_venv
from serve import run_one

REPO = Path(__file__).resolve().parents[1]
PEER_PACKAGES = ["autofaiss", "faiss-cpu", "pyarrow<26"]
SHARD_ROWS = 100_000
K_TRUTH = 100

AUTOFAISS_CHILD = r"""
import json, resource, sys, time
from autofaiss import build_index
npy_dir, out, budget, ms = sys.argv[1:5]
start = time.perf_counter()
_, infos = build_index(embeddings=npy_dir, index_path=out + "/knn.index", index_infos_path=out + "/infos.json",
                       max_index_memory_usage=budget, current_memory_available="8G",
                       max_index_query_time_ms=float(ms), metric_type="ip", verbose=30)
build_s = time.perf_counter() - start
print("RESULT " + json.dumps({"build_s": build_s, "infos": infos, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, default=str))
"""

MMREC_CHILD = r"""
import json, resource, sys, time
from mmrec.index import build_index
emb_dir, out, budget, ms, target = sys.argv[1:6]
start = time.perf_counter()
index = build_index(emb_dir, out, "auto", max_memory=budget, max_query_ms=float(ms), target_recall=float(target), progress=False)
build_s = time.perf_counter() - start
info = {k: index.info[k] for k in ("factory", "selection", "tuning", "measured", "times", "index_bytes")}
print("RESULT " + json.dumps({"build_s": build_s, "info": info, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# -- data ---------------------------------------------------------------------------------------
def _mixture(n: int, dim: int, clusters: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    """SYNTHETIC: ``n`` unit vectors from a fixed mixture of ``clusters`` Gaussians (mixture from ``seed``)."""
    mix = np.random.default_rng(seed)
    centres = mix.standard_normal((clusters, dim)).astype(np.float32)
    spread = mix.uniform(0.4, 0.8, clusters).astype(np.float32)
    label = rng.integers(0, clusters, n)
    x = centres[label] + spread[label, None] * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_data(work: Path, n: int, dim: int, clusters: int, n_queries: int, seed: int) -> tuple[Path, Path, np.ndarray]:
    """Parquet shards, .npy shards and queries in ``work/data`` (reused when the parameters match)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = work / "data"
    params = {"n": n, "dim": dim, "clusters": clusters, "queries": n_queries, "seed": seed, "synthetic": True}
    marker = data / "data.json"
    emb, npy = data / "emb", data / "npy"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        _log(f"reusing data in {data}")
        return emb, npy, np.load(data / "queries.npy")
    shutil.rmtree(data, ignore_errors=True)
    emb.mkdir(parents=True)
    npy.mkdir()
    rng = np.random.default_rng(seed + 1)
    start = time.perf_counter()
    for shard, lo in enumerate(range(0, n, SHARD_ROWS)):
        x = _mixture(min(SHARD_ROWS, n - lo), dim, clusters, seed, rng)
        keys = pa.array([f"item-{i:08d}" for i in range(lo, lo + len(x))])
        column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
        pq.write_table(pa.table({"key": keys, "fused": column}), emb / f"emb-{shard:04d}.parquet", row_group_size=16384)
        np.save(npy / f"part-{shard:04d}.npy", x)
    queries = _mixture(n_queries, dim, clusters, seed, np.random.default_rng(seed + 2))
    np.save(data / "queries.npy", queries)
    marker.write_text(json.dumps(params))
    _log(f"wrote {n} x {dim} SYNTHETIC vectors ({clusters} clusters) in {time.perf_counter() - start:.0f} s")
    return emb, npy, queries


def exact_truth(work: Path, emb: Path, queries: np.ndarray) -> np.ndarray:
    """Exact top-100 rows of every query (inner product), by one streaming pass; cached."""
    from mmrec.index.exact import ExactKnn
    from mmrec.store import open_source

    path = work / "data" / "truth.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    knn = ExactKnn(queries, K_TRUTH, metric="ip")
    for batch in open_source(emb).batches():
        knn.add(batch.vectors)
    truth = knn.result()[1]
    np.save(path, truth)
    _log(f"exact top-{K_TRUTH} of {len(queries)} queries in {time.perf_counter() - start:.0f} s")
    return truth


# -- peers and children ---------------------------------------------------------------------------
def ensure_peer(venv: Path, work: Path) -> dict[str, Any]:
    """autofaiss's own venv, made unless a working one is there (:func:`peers.ensure_venv`)."""
    return ensure_venv("autofaiss", venv, work, packages=PEER_PACKAGES, module="autofaiss, faiss",
                       distributions=["autofaiss", "faiss-cpu", "numpy"])


def run_child(python: str, code: str, args: list[str], log: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; returns its RESULT json plus the process wall time."""
    start = time.perf_counter()
    with open(log, "w") as err:
        done = subprocess.run([python, "-c", code, *args], stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"child failed (exit {done.returncode}); see {log}")
    return {**json.loads(lines[-1][len("RESULT ") :]), "wall_s": wall}


# -- measuring ------------------------------------------------------------------------------------
def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    from mmrec.index.exact import recall_at

    return round(recall_at(found, truth, k), 4)


def harness(search, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """recall@10, batch QPS (>= 1 s of repeats) and single-query latency of ``search(q, k)``."""
    rows = search(queries, 10)[1]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        search(queries, 10)
        done += len(queries)
    qps = done / (time.perf_counter() - start)
    lat = []
    for q in queries[:200]:
        t = time.perf_counter()
        search(q[None], 10)
        lat.append((time.perf_counter() - t) * 1000)
    return {"recall@10": recall(rows, truth, 10), "qps": round(qps, 1), "ms_per_query_mean": round(float(np.mean(lat)), 3), "ms_per_query_p99": round(float(np.percentile(lat, 99)), 3)}


def tree_vs_ivf(work: Path, emb: Path, queries: np.ndarray, truth: np.ndarray, branching: int) -> dict[str, Any]:
    """Recall@10/@100 of the tree and of IVF-Flat against the embeddings compared per query."""
    import faiss

    from mmrec.index import build_index
    from mmrec.index.select import default_nlist

    out: dict[str, Any] = {}
    start = time.perf_counter()
    tree = build_index(emb, work / "tree", "tree", branching=branching, target_recall=0.9, progress=False, n_queries=300)
    out["tree_build_s"] = round(time.perf_counter() - start, 1)
    out["tree_nodes_per_level"] = tree.node_counts()
    out["tree_nodes"] = int(sum(tree.node_counts()))
    tree_points = []
    for beam in (4, 8, 16, 32, 64, 128, 256):
        t = time.perf_counter()
        _, rows, scored = tree.search_with_count(queries, K_TRUTH, beam=beam)
        secs = time.perf_counter() - t
        tree_points.append({"beam": beam, "candidates": round(scored), "recall@10": recall(rows, truth, 10), "recall@100": recall(rows, truth, 100), "qps": round(len(queries) / secs, 1)})
        _log(f"tree beam {beam}: {tree_points[-1]}")
    del tree
    n = int(out["tree_nodes_per_level"][-1])
    nlist = default_nlist(n)
    start = time.perf_counter()
    ivf = build_index(emb, work / "ivf", f"faiss:IVF{nlist},Flat", progress=False, n_queries=300)
    out["ivf_build_s"] = round(time.perf_counter() - start, 1)
    out["ivf_factory"] = f"IVF{nlist},Flat"
    inner = faiss.extract_index_ivf(ivf.index)
    sizes = np.array([inner.invlists.list_size(i) for i in range(nlist)])
    ivf_points = []
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        ivf.set_param(nprobe)
        _, probed = inner.quantizer.search(queries, nprobe)
        t = time.perf_counter()
        rows = ivf.search(queries, K_TRUTH)[1]
        secs = time.perf_counter() - t
        ivf_points.append({"nprobe": nprobe, "candidates": round(nlist + float(sizes[probed].sum(1).mean())), "recall@10": recall(rows, truth, 10), "recall@100": recall(rows, truth, 100), "qps": round(len(queries) / secs, 1)})
    log_c = np.log([p["candidates"] for p in ivf_points])
    for p in tree_points:
        inside = log_c[0] <= math.log(p["candidates"]) <= log_c[-1]  # IVF scans at least nlist + one list
        for k in (10, 100):
            value = float(np.interp(math.log(p["candidates"]), log_c, [q[f"recall@{k}"] for q in ivf_points]))
            p[f"ivf_recall@{k}_at_same_candidates"] = round(value, 4) if inside else None
    out["tree"], out["ivf"] = tree_points, ivf_points
    return out


def server_load(index_dir: Path, queries: np.ndarray, seconds: float, clients: int) -> dict[str, Any]:
    """Requests/s of ``mmrec index serve`` on loopback, single vectors then batches of 32, under the
    asyncio load of ``bench/serve.py`` (:func:`serve.run_one`)."""
    argv = [sys.executable, "-m", "mmrec", "index", "serve", "--index", str(index_dir), "--port", "0"]
    out: dict[str, Any] = {"clients": clients, "seconds_each": seconds}
    for batch in (1, 32):
        bodies = [json.dumps({"vectors": queries[i : i + batch].tolist(), "k": 10}).encode() for i in range(0, len(queries) - batch, batch)]
        result = run_one("uvicorn", argv, bodies, clients, seconds)
        out["host"] = result.pop("host")
        out[f"batch{batch}"] = {**result, "vectors_per_s": round(result["requests_per_s"] * batch, 1),
                                "errors": result["non_200"] + result["connection_errors"]}
        _log(f"server batch {batch}: {out[f'batch{batch}']}")
    return out


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--budget", default="1G", help="memory budget for both tools (default 1G)")
    parser.add_argument("--max-query-ms", type=float, default=10.0, help="latency budget for both tools (autofaiss's default, 10)")
    parser.add_argument("--branching", type=int, default=32)
    parser.add_argument("--server-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(REPO / "bench-out" / "index"), help="working folder (data, indexes, logs)")
    parser.add_argument("--out", default=str(REPO / "bench-out" / "index-bench.json"), help="the JSON report")
    parser.add_argument("--peer-venv", default=str(REPO / "bench-out" / "peer-autofaiss"))
    args = parser.parse_args(argv)

    import faiss

    from mmrec.index import load_index
    from mmrec.io import write_json

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": vars(args), "machine": {"cpus": faiss.omp_get_max_threads(), "note": "shared 2-core box; other jobs may run"}, "date": time.strftime("%Y-%m-%d %H:%M")}
    emb, npy, queries = make_data(work, args.n, args.dim, args.clusters, args.queries, args.seed)
    truth = exact_truth(work, emb, queries)

    peer = ensure_peer(Path(args.peer_venv), work)
    report["peer"] = peer
    af_dir = work / "autofaiss"
    shutil.rmtree(af_dir, ignore_errors=True)
    af_dir.mkdir()
    _log(f"autofaiss build_index, max_index_memory_usage={args.budget} ...")
    af = run_child(str(Path(args.peer_venv) / "bin" / "python"), AUTOFAISS_CHILD, [str(npy), str(af_dir), args.budget, str(args.max_query_ms)], work / "autofaiss.log")
    af_index = faiss.read_index(str(af_dir / "knn.index"))
    faiss.ParameterSpace().set_index_parameters(af_index, af["infos"].get("index_param", ""))
    af["measured_here"] = harness(af_index.search, queries, truth)
    af["index_key"], af["index_param"] = af["infos"].get("index_key"), af["infos"].get("index_param")
    af["index_bytes"] = (af_dir / "knn.index").stat().st_size
    _log(f"autofaiss: {af['index_key']} {af['index_param']} build {af['build_s']:.0f} s, {af['measured_here']}")
    del af_index

    target = min(0.999, math.floor(af["measured_here"]["recall@10"] * 1000) / 1000)
    mm_dir = work / "mmrec"
    shutil.rmtree(mm_dir, ignore_errors=True)
    _log(f"mmrec build_index auto, max_memory={args.budget}, target_recall={target} ...")
    mm = run_child(sys.executable, MMREC_CHILD, [str(emb), str(mm_dir), args.budget, str(args.max_query_ms), str(target)], work / "mmrec.log")
    mm_index = load_index(mm_dir)
    mm["measured_here"] = harness(mm_index.search, queries, truth)
    mm["target_recall"] = target
    _log(f"mmrec: {mm['info']['factory']} {mm_index.info['search_params']} build {mm['build_s']:.0f} s, {mm['measured_here']}")
    del mm_index
    report["auto_vs_autofaiss"] = {"budget": args.budget, "max_query_ms": args.max_query_ms, "autofaiss": af, "mmrec": mm}

    _log(f"MISS tree (branching {args.branching}) vs IVF ...")
    report["tree_vs_ivf"] = tree_vs_ivf(work, emb, queries, truth, args.branching)
    _log(f"server load, {args.clients} clients, {args.server_seconds} s per batch size ...")
    report["server"] = server_load(mm_dir, queries, args.server_seconds, args.clients)
    report["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    write_json(args.out, report)
    print(format_report(report))
    return report


def format_report(report: dict[str, Any]) -> str:
    a = report["auto_vs_autofaiss"]
    af, mm = a["autofaiss"], a["mmrec"]
    lines = [
        f"## mmrec auto vs autofaiss, {report['args']['n']} x {report['args']['dim']} SYNTHETIC clustered, budget {a['budget']}, {a['max_query_ms']} ms/query",
        "| | index | search param | recall@10 | batch QPS | ms/query (1 query) | build s (own timer) | process wall s | peak RSS MB | index MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r, key, param, size in (
        ("autofaiss", af, af["index_key"], af["index_param"], af["index_bytes"]),
        ("mmrec", mm, mm["info"]["factory"], json.dumps(mm["info"]["tuning"].get("param") and {mm["info"]["tuning"]["param"]: mm["info"]["tuning"]["value"]}), mm["info"]["index_bytes"]),
    ):
        m = r["measured_here"]
        lines.append(f"| {name} | {key} | {param} | {m['recall@10']:.4f} | {m['qps']:.0f} | {m['ms_per_query_mean']:.2f} | {r['build_s']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | {size / 2**20:.0f} |")
    t = report["tree_vs_ivf"]
    lines += [
        "",
        f"## MISS tree (nodes per level {t['tree_nodes_per_level']}, built in {t['tree_build_s']} s) vs {t['ivf_factory']} (built in {t['ivf_build_s']} s)",
        "| beam | candidates | tree recall@10 | IVF recall@10 at same candidates | tree recall@100 | IVF recall@100 at same candidates | tree QPS (numpy) |",
        "|---|---|---|---|---|---|---|",
    ]
    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for p in t["tree"]:
        lines.append(f"| {p['beam']} | {p['candidates']} | {p['recall@10']:.3f} | {cell(p['ivf_recall@10_at_same_candidates'])} | {p['recall@100']:.3f} | {cell(p['ivf_recall@100_at_same_candidates'])} | {p['qps']:.0f} |")
    lines.append("IVF points: " + ", ".join(f"nprobe {q['nprobe']}: {q['candidates']} cand., r@10 {q['recall@10']:.3f}, r@100 {q['recall@100']:.3f}" for q in t["ivf"]))
    s = report["server"]
    lines += ["", f"## mmrec index serve on {s['host']}, {s['clients']} asyncio clients, {s['seconds_each']} s each", "| batch | requests/s | vectors/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    for b in (1, 32):
        r = s[f"batch{b}"]
        lines.append(f"| {b} | {r['requests_per_s']:.0f} | {r['vectors_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
