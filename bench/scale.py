"""How index build, search, RQ-Kmeans, the generative trie and softmax training cost grow with the catalogue: 10k to 10M items.

For each size and dim, SYNTHETIC clustered vectors with planted neighbourhoods
(:func:`mmrec.synthetic.vectors.planted_clusters`: groups of 10 near-identical items inside clusters;
1000 queries are fresh members of random groups, never indexed), or real item vectors (``--emb``, an
``emb-*.parquet`` folder: 1000 random items are held out as queries). Exact top-100 of every query is
computed once. Then one subprocess per method (so that its peak memory is its own):

- ``flat``, ``ivf`` (IVF{nlist},Flat, nlist the power of two nearest 4·√N), ``hnsw`` (HNSW32),
  ``ivfpq`` (IVF{nlist},PQ{dim/2}x4fs: 4-bit fast-scan codes, 2 dims per code) and ``tree`` (the MISS tree,
  :class:`mmrec.index.IndexTree`, ``--branching``; ``tree8``: branching 8) are built
  through :func:`mmrec.index.build_index`; build seconds exclude its own tuning pass (``times.tune_s``);
  peak memory is the process's ``ru_maxrss`` above its RSS once the vectors are loaded;
- the search knob (nprobe, efSearch, beam) is tuned by :func:`mmrec.index.tune.tune` to the smallest value
  reaching recall@100 ≥ ``--target`` against exact search on the same 1000 queries; then queries/s
  (:func:`mmrec.index.tune.throughput`: the whole batch per call) and the % of items scored per query
  (IVF: nlist centroids + the codes scanned, FAISS's ``indexIVF_stats``; HNSW: distances computed,
  ``hnsw_stats``; tree: nodes scored on all levels; flat: 100 %);
- ``rq``: RQ-Kmeans codes (3 × 256, :class:`mmrec.quantization.rq_kmeans.RQKMeans`): fit + encode seconds
  and % of items whose code tuple is unique;
- against the catalogue, without vectors (rows ``catalogue-N``): ``trie`` (:func:`run_trie`: trie build
  seconds and memory, constrained-beam users/s of a tiny generative retriever), ``full`` and ``inbatch``
  (:func:`run_softmax`: training samples/s and peak memory of the sequential retriever's step with full
  softmax or in-batch + logQ).

``--coarse hnsw`` and ``--train-per-list`` make the IVF build affordable at 10M on one thread; ``--keep``
saves the IVF and tree indexes for ``bench/tree_vs_ivf.py --cache`` (tree against IVF, interleaved).

Rows go to ``OUT/rows.json`` and ``OUT/rows.parquet`` as they finish (a rerun skips rows already there);
``--plots`` writes log-log plots of each cost against N, one line per method and dim, with the growth
exponent fitted per line (least squares on log cost vs log N) in the legend.

    OMP_NUM_THREADS=1 python bench/scale.py --sizes 10k,100k --dims 64,128 --out /tmp/scale --plots docs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("flat", "ivf", "hnsw", "ivfpq", "tree", "rq")  # and treeB: the MISS tree at branching B
K = 100


def _log(message: str) -> None:
    print(f"[scale] {message}", flush=True)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


# -- data ---------------------------------------------------------------------------------------
def make_data(work: Path, n: int, dim: int, *, emb: str | None, n_queries: int, seed: int) -> Path:
    """``x.npy``, ``q.npy``, ``truth.npy`` (exact top-100 rows) and, for SYNTHETIC data, the planted groups."""
    from mmrec.index.exact import exact_knn

    folder = work / (f"real-{dim}" if emb else f"syn-{n}-{dim}")
    if (folder / "truth.npy").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if emb:
        from mmrec.store import read_embeddings

        x = read_embeddings(emb)[1]
        held = np.random.default_rng(seed).choice(len(x), size=min(n_queries, len(x) // 10), replace=False)
        q, x = x[held], np.delete(x, held, axis=0)
    else:
        from mmrec.synthetic.vectors import planted_clusters

        x, group, q, q_group = planted_clusters(n, dim, n_queries=n_queries, seed=seed)
        np.save(folder / "group.npy", group)
        np.save(folder / "q_group.npy", q_group)
    truth = exact_knn((x[i : i + 65536] for i in range(0, len(x), 65536)), q, K)[1]
    for name, a in (("x", x), ("q", q), ("truth", truth)):
        np.save(folder / f"{name}.npy", np.ascontiguousarray(a))
    _log(f"{folder.name}: {len(x)} x {x.shape[1]} vectors and exact top-{K} in {time.perf_counter() - start:.1f} s")
    return folder


def planted_recovery(folder: Path, rows: np.ndarray) -> float:
    """Fraction of each query's planted group (its 10 group mates) found in ``rows`` (q, ≥10), averaged."""
    group, q_group = np.load(folder / "group.npy"), np.load(folder / "q_group.npy")
    size = np.bincount(group)
    return float(np.mean([(group[r[r >= 0]] == g).sum() / size[g] for r, g in zip(rows, q_group)]))


# -- one method, in its own process ---------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _factory(method: str, n: int, dim: int, coarse: str = "flat") -> str:
    from mmrec.index.select import default_nlist

    ivf = f"IVF{default_nlist(n)}" + ("_HNSW32" if coarse == "hnsw" else "")
    return {"flat": "Flat", "ivf": f"{ivf},Flat", "hnsw": "HNSW32", "ivfpq": f"{ivf},PQ{dim // 2}x4fs"}[method]


def run_method(method: str, folder: Path, *, threads: int, target: float, tree: dict[str, Any], ivf: dict[str, Any] | None = None,
               keep: bool = False) -> dict[str, Any]:
    """Build, tune and time one method over the vectors in ``folder``; the row of the table."""
    import faiss
    import torch

    from mmrec.index import build_index
    from mmrec.index.select import default_nlist
    from mmrec.index.tune import throughput, tune

    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    x, q, truth = (np.load(folder / f"{name}.npy") for name in ("x", "q", "truth"))
    n, dim = x.shape
    row: dict[str, Any] = {"method": method, "n": n, "dim": dim, "threads": threads, "data": folder.name}
    rss0 = _rss_mb()
    start = time.perf_counter()
    if method == "rq":
        from mmrec.quantization.rq_kmeans import RQKMeans

        codes = RQKMeans(levels=3, codebook_size=256).fit_transform(x)
        row["build_s"] = round(time.perf_counter() - start, 3)
        row["unique_pct"] = round(100 * len(np.unique(codes, axis=0)) / n, 3)
        row["peak_mb"] = round(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0), 1)
        return row
    small = {"progress": False, "n_queries": 100, "k": 10, "target_recall": target}
    if method.startswith("tree"):  # tree, or tree8: branching 8
        tree = {**tree, "branching": int(method[4:] or tree["branching"])}
        index = build_index(x, None, "tree", **small, **tree)
        row["config"] = f"tree(branching={tree['branching']}, balanced={tree['balanced']}, depth={index.depth})"
    else:
        ivf = ivf or {}
        row["config"] = _factory(method, n, dim, ivf.get("coarse", "flat"))
        train = {} if not ivf.get("train_per_list") or method == "flat" else {"train_size": ivf["train_per_list"] * default_nlist(n)}
        index = build_index(x, None, f"faiss:{row['config']}", **small, **train)
        row.update({"train_size": train["train_size"]} if train else {})
    row["build_s"] = round(time.perf_counter() - start - index.info["times"].get("tune_s", 0.0), 3)
    if method.startswith("tree"):  # the FAISS inverted lists its CPU search scans (built by the tuning pass): timed again, counted
        index._lists = None
        lists_start = time.perf_counter()
        index.lists()
        row["lists_s"] = round(time.perf_counter() - lists_start, 3)
        row["build_s"] = round(row["build_s"] + row["lists_s"], 3)
    row["peak_mb"] = round(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0), 1)
    tuned = tune(index, q, truth, k=K, target=target)
    row.update(param=tuned["param"], value=tuned.get("value"), target_reached=tuned.get("target_reached", True))
    if method.startswith("tree"):
        scores, rows, scored = index.search_with_count(q, K)
    else:
        faiss.cvar.indexIVF_stats.reset()
        faiss.cvar.hnsw_stats.reset()
        scores, rows = index.search(q, K)
        ivf = faiss.cvar.indexIVF_stats
        scored = {"flat": float(n), "hnsw": faiss.cvar.hnsw_stats.ndis / len(q)}.get(method)
        if scored is None:
            scored = ivf.ndis / len(q) + faiss.extract_index_ivf(index.index).nlist
    from mmrec.index.exact import recall_at

    row["recall@100"] = round(recall_at(rows, truth, K), 4)
    row["scored_pct"] = round(100 * scored / n, 3)
    row["qps"] = round(throughput(index, q, K), 1)
    if method.startswith("tree"):  # the same beam through the batched torch path (the engine off CPU)
        start = time.perf_counter()
        index.search_with_count(q, K, engine="torch")
        row["qps_torch"] = round(len(q) / (time.perf_counter() - start), 1)
    if (folder / "group.npy").is_file():
        row["planted_recovered"] = round(planted_recovery(folder, rows[:, :10]), 4)
    if keep and (method == "ivf" or method.startswith("tree")):  # for bench/tree_vs_ivf.py --cache OUT/indexes
        index.save(folder.parent / "indexes" / folder.name / (f"tree{tree['branching']}" if method.startswith("tree") else method))
    return row


# -- generative retrieval and sequential training against the catalogue (no vectors) --------------
CATALOGUE = ("trie", "full", "inbatch")  # trie + constrained beam; one training step of full softmax / in-batch + logQ
LEVELS, CODEBOOK = 3, 256


def _timed(fn: Any, *, min_s: float, min_reps: int = 3) -> tuple[float, int]:
    """Median seconds of ``fn()`` over at least ``min_reps`` calls and ``min_s`` seconds (after one warm-up call)."""
    fn()
    times: list[float] = []
    while len(times) < min_reps or sum(times) < min_s:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), len(times)


def run_trie(n: int, *, seed: int, users: int = 256, history: int = 20, beam: int = 20, min_s: float = 2.0) -> dict[str, Any]:
    """Trie of ``n`` random 3 × 256 code tuples (:class:`mmrec.retrieval.generative_beam.CodeTrie`): build seconds,
    its tables' MB and the process's peak above the start; constrained-beam users/s of a tiny untrained
    generative retriever (dim 32, one encoder and one decoder block: the model's cost does not depend on N,
    the trie's lookups are what could)."""
    import torch

    from mmrec.retrieval.generative import GenerativeConfig, GenerativeRetriever
    from mmrec.retrieval.generative_beam import CodeTrie, beam_search

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, CODEBOOK, (n, LEVELS))
    rss0 = _rss_mb()
    start = time.perf_counter()
    trie = CodeTrie(codes, [CODEBOOK] * LEVELS)
    row: dict[str, Any] = {"build_s": round(time.perf_counter() - start, 3), "tuples": len(trie)}
    row["peak_mb"] = round(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0), 1)
    arrays = [trie.tuples, trie.item_tuple, trie.slot_items, trie.slot_offsets]
    row["trie_mb"] = round((sum(a.nbytes for a in arrays) + sum(c.numel() * c.element_size() for c in trie.child)) / 2**20, 1)
    torch.manual_seed(seed)
    model = GenerativeRetriever(GenerativeConfig(n_items=n, code_sizes=(CODEBOOK,) * LEVELS, dim=32, heads=2, encoder_layers=1,
                                                 decoder_layers=1, max_len=history, beam=beam, dropout=0.0)).eval()
    model.set_codes(codes)
    hist = torch.from_numpy(rng.integers(0, n, (users, history)))
    secs, reps = _timed(lambda: beam_search(model, trie, hist, beam), min_s=min_s)
    row.update(config=f"trie {LEVELS}x{CODEBOOK}, beam {beam}", users_per_s=round(users / secs, 1), us_per_query=round(1e6 * secs / users, 2),
               reps=reps)
    return row


def run_softmax(loss: str, n: int, *, seed: int, batch: int = 256, dim: int = 64, history: int = 50, min_s: float = 6.0) -> dict[str, Any]:
    """Training steps of the sequential retriever (SASRec shape: ``retrieve train --model sasrec``'s model and
    step, AdamW fused) over ``n`` items with ``loss`` ``full`` or ``inbatch`` (+ logQ): samples/s and the
    process's peak memory above the start. SYNTHETIC Zipf(1.1) item ids, ``batch`` targets per step."""
    import torch

    from mmrec.config import build_config
    from mmrec.pipelines.retrieve import TrainJob
    from mmrec.retrieval.sequence_train import SASRecFamily, _step

    rng = np.random.default_rng(seed)
    job = build_config(TrainJob, {"model": "sasrec", "loss": loss, "batch_size": batch, "model_config": {"dim": dim, "max_len": history}}, "job")
    rss0 = _rss_mb()
    torch.manual_seed(seed)
    model = SASRecFamily.model_class(SASRecFamily.model_config(job, n, None, None))
    optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, fused=True)
    popularity = 1.0 / np.arange(1, n + 1) ** 1.1
    log_p = torch.as_tensor(np.log(popularity / popularity.sum()), dtype=torch.float32)
    samples = type("Samples", (), {"log_p": log_p})()  # what the step reads of TrainingSamples: the targets' log frequency
    step = _step(job, model, samples, torch.device("cpu"), torch.Generator().manual_seed(seed))
    users = batch // history  # full-length histories: ``batch`` targets = ``users`` x ``history`` positions
    seqs = torch.from_numpy(rng.choice(n, size=(users, history + 1), p=popularity / popularity.sum()))
    data = {"history": seqs[:, :-1], "targets": seqs[:, 1:]}
    model.train()

    def one() -> None:
        optimizer.zero_grad(set_to_none=True)
        step(model, data).backward()
        optimizer.step()

    secs, reps = _timed(one, min_s=min_s)
    targets = users * history
    return {"config": f"sasrec dim {dim}, {loss}" + (" + logQ" if loss == "inbatch" else ""), "build_s": None,
            "samples_per_s": round(targets / secs, 1), "us_per_query": round(1e6 * secs / targets, 2), "reps": reps,
            "peak_mb": round(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0), 1)}


def run_catalogue(method: str, n: int, *, threads: int, seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    row: dict[str, Any] = {"method": method, "n": n, "dim": 0, "threads": threads, "data": f"catalogue-{n}"}
    row.update(run_trie(n, seed=seed) if method == "trie" else run_softmax(method, n, seed=seed))
    return row


def _child(spec: str) -> None:
    args = json.loads(spec)
    if args["method"] in CATALOGUE:
        row = run_catalogue(args["method"], args["n"], threads=args["threads"], seed=args["seed"])
    else:
        row = run_method(args["method"], Path(args["folder"]), threads=args["threads"], target=args["target"], tree=args["tree"],
                         ivf=args.get("ivf"), keep=args.get("keep", False))
    print("ROW " + json.dumps(row), flush=True)


def run_child(method: str, folder: Path | None, *, threads: int, target: float, tree: dict[str, Any], timeout: float, n: int = 0,
              seed: int = 0, ivf: dict[str, Any] | None = None, keep: bool = False) -> dict[str, Any] | None:
    spec = json.dumps({"method": method, "folder": str(folder), "threads": threads, "target": target, "tree": tree, "n": n, "seed": seed,
                       "ivf": ivf or {}, "keep": keep})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        _log(f"{method} on {folder or n}: over {timeout:.0f} s, skipped")
        return None
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode or not rows:
        _log(f"{method} on {folder or n} failed:\n{done.stderr[-3000:]}")
        return None
    return json.loads(rows[-1])


# -- table and plots ------------------------------------------------------------------------------
def growth_exponent(n: list[float], cost: list[float]) -> float | None:
    """Slope of log(cost) against log(n) (least squares); None below two sizes."""
    pairs = [(a, b) for a, b in zip(n, cost) if b and b > 0]
    if len({a for a, _ in pairs}) < 2:
        return None
    return float(np.polyfit(np.log([a for a, _ in pairs]), np.log([b for _, b in pairs]), 1)[0])


PANELS = (("build_s", "build seconds", None), ("peak_mb", "peak memory above the data (MB)", None),
          ("us_per_query", "µs per query at recall@100 ≥ target", None), ("scored_pct", "% of items scored per query", None))
CATALOGUE_PANELS = (("build_s", "trie build seconds", ("trie",)), ("trie_mb", "trie tables (MB)", ("trie",)),
                    ("us_per_query", "constrained beam: µs per user (beam 20)", ("trie",)),
                    ("us_per_query", "training: µs per sample (one step / targets)", ("full", "inbatch")),
                    ("peak_mb", "training: peak MB above the start", ("full", "inbatch")))


def plot(rows: list[dict[str, Any]], path: Path, title: str, *, panels: tuple = PANELS, data: str = "syn") -> dict[str, dict[str, float | None]]:
    """Log-log cost vs N, one line per (method, dim, threads) of the rows whose data starts with ``data``; a panel
    ``(key, title, methods or None)``; returns the fitted exponents per panel (``key`` or ``key:methods``) and line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["data"].startswith(data)]
    cols = 2 if len(panels) <= 4 else 3
    fig, axes = plt.subplots(2, cols, figsize=(6 * cols, 9), squeeze=False)
    exponents: dict[str, dict[str, float | None]] = {}
    methods = sorted({r["method"] for r in rows})
    for ax, (key, label, only) in zip(axes.flat, panels):
        name = key if only is None else f"{key}:{'+'.join(only)}"
        lines = sorted({(r["method"], r["dim"], r["threads"]) for r in rows if r.get(key) is not None and (only is None or r["method"] in only)})
        for method, dim, threads in lines:
            pts = sorted((r["n"], r[key]) for r in rows if (r["method"], r["dim"], r["threads"]) == (method, dim, threads)
                         and r.get(key) is not None and (key in ("build_s", "peak_mb") or r.get("target_reached", True)))
            if not pts:
                continue
            e = growth_exponent([p[0] for p in pts], [p[1] for p in pts])
            line = method + (f" d{dim}" if dim else "") + (f" {threads} threads" if threads != 1 else "")
            exponents.setdefault(name, {})[line] = None if e is None else round(e, 2)
            style = ("o-" if dim in (0, 64) else "s--") if threads == 1 else ("^:" if dim in (0, 64) else "v-.")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=f"C{methods.index(method) % 10}",
                    label=line + ("" if e is None else f" (N^{e:.2f})"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items N")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return exponents


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown tables (those in docs/scaling.md): indexes, then the catalogue rows if any."""
    head = ("| data | N | dim | threads | method | build s | peak MB | knob | recall@100 | % scored | queries/s | planted found |\n"
            "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
    lines = [head]
    vector_rows = [r for r in rows if not r["data"].startswith("catalogue")]
    order = lambda r: METHODS.index(r["method"][:4] if r["method"].startswith("tree") else r["method"])  # noqa: E731
    for r in sorted(vector_rows, key=lambda r: (r["data"].split("-")[0], r["dim"], r["n"], r["threads"], order(r), r["method"])):
        if r["method"] == "rq":
            knob, recall, scored, qps, planted = f"unique codes {r['unique_pct']} %", "", "", "", ""
        else:
            knob = "" if r.get("param") is None else f"{r['param']} {r['value']}" + ("" if r.get("target_reached", True) else " (target missed)")
            recall, scored, qps = f"{r['recall@100']:.3f}", f"{r['scored_pct']:.2f}", f"{r['qps']:,.0f}"
            planted = "" if r.get("planted_recovered") is None else f"{r['planted_recovered']:.3f}"
        name = "RQ-Kmeans 3×256" if r["method"] == "rq" else r.get("config", r["method"]).replace("balanced=False, ", "").replace("tree(", "MISS tree(")
        lines.append(f"| {r['data'].split('-')[0]} | {r['n']:,} | {r['dim']} | {r['threads']} | {name} | {r['build_s']:.1f} | {r['peak_mb']:.0f} | {knob} | "
                     f"{recall} | {scored} | {qps} | {planted} |")
    catalogue = sorted((r for r in rows if r["data"].startswith("catalogue")), key=lambda r: (CATALOGUE.index(r["method"]), r["threads"], r["n"]))
    if catalogue:
        lines += ["", "| N | threads | what | build s | tables MB | peak MB | users/s or samples/s | µs per user / sample |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in catalogue:
            rate = r.get("users_per_s", r.get("samples_per_s"))
            build = "" if r.get("build_s") is None else f"{r['build_s']:.2f}"
            lines.append(f"| {r['n']:,} | {r['threads']} | {r['config']} | {build} | {r.get('trie_mb', '')} | {r['peak_mb']:.0f} | {rate:,.0f} | "
                         f"{r['us_per_query']:,.0f} |")
    return "\n".join(lines)


def write_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.io import write_json

    write_json(out / "rows.json", rows)
    keys = sorted({k for r in rows for k in r})
    pq.write_table(pa.table({k: [None if r.get(k) is None else str(r[k]) if k == "value" else r[k] for r in rows] for k in keys}),
                   out / "rows.parquet")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10k,100k", help="comma-separated N (10k, 100k, 1M; 10M needs --allow-10m)")
    p.add_argument("--allow-10m", action="store_true", help="let --sizes include 10M (about 2.6 GB of vectors at dim 64)")
    p.add_argument("--dims", default="64,128")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--threads", default="1", help="comma-separated FAISS / torch thread counts")
    p.add_argument("--emb", default=None, help="also run on real item vectors: a folder of emb-*.parquet (column fused)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--target", type=float, default=0.9, help="recall@100 vs exact search each knob is tuned to")
    p.add_argument("--branching", type=int, default=32, help="MISS tree children per node")
    p.add_argument("--balanced", action="store_true", help="MISS tree: balanced k-means splits (default: plain k-means)")
    p.add_argument("--coarse", default="flat", choices=("flat", "hnsw"), help="IVF / IVF-PQ coarse quantizer: exact, or HNSW32 over the centroids")
    p.add_argument("--train-per-list", type=int, default=None, help="IVF / IVF-PQ k-means sample per inverted list (default: mmrec's 50)")
    p.add_argument("--keep", action="store_true", help="save the IVF and tree indexes to OUT/indexes/DATA/ (bench/tree_vs_ivf.py --cache)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one method may take at one size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder of the data, rows.json / rows.parquet (required)")
    p.add_argument("--plots", type=Path, default=None, help="folder for scaling-cost.png")
    p.add_argument("--table", action="store_true", help="print the rows in OUT as a Markdown table and stop")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child)
        return []
    if args.out is None:
        p.error("--out is required")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    if any(s >= 10_000_000 for s in sizes) and not args.allow_10m:
        p.error("10M items needs --allow-10m (2.6 GB of float32 vectors at dim 64, 5.1 GB at 128, plus each index)")
    if args.table:
        print(format_table(json.loads((args.out / "rows.json").read_text())))
        return []
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "rows.json"
    rows: list[dict[str, Any]] = json.loads(done_path.read_text()) if done_path.is_file() else []
    tree = {"branching": args.branching, "balanced": args.balanced}
    methods = args.methods.split(",")
    for n in sizes:  # generative retrieval and training against the catalogue: no vectors
        for threads in map(int, args.threads.split(",")):
            for method in [m for m in methods if m in CATALOGUE]:
                if any(r["data"] == f"catalogue-{n}" and r["method"] == method and r["threads"] == threads for r in rows):
                    continue
                start = time.perf_counter()
                row = run_child(method, None, threads=threads, target=args.target, tree=tree, timeout=args.timeout, n=n, seed=args.seed)
                if row is not None:
                    row["wall_s"] = round(time.perf_counter() - start, 1)
                    rows.append(row)
                    write_rows(args.out, rows)
                    _log(json.dumps(row))
    methods = [m for m in methods if m not in CATALOGUE]
    datasets = [(n, dim, None) for n in sizes for dim in map(int, args.dims.split(","))] if methods else []
    if args.emb:
        datasets.insert(0, (0, 0, args.emb))
    for n, dim, emb in datasets:
        folder = make_data(args.out, n, dim, emb=emb, n_queries=args.queries, seed=args.seed)
        for threads in map(int, args.threads.split(",")):
            for method in methods:
                if any(r["data"] == folder.name and r["method"] == method and r["threads"] == threads for r in rows):
                    continue
                start = time.perf_counter()
                row = run_child(method, folder, threads=threads, target=args.target, tree=tree, timeout=args.timeout,
                                ivf={"coarse": args.coarse, "train_per_list": args.train_per_list}, keep=args.keep)
                if row is None:
                    continue
                row["wall_s"] = round(time.perf_counter() - start, 1)
                row["us_per_query"] = round(1e6 / row["qps"], 2) if row.get("qps") else None
                rows.append(row)
                write_rows(args.out, rows)
                _log(json.dumps(row))
    if args.plots:
        when = f"bench/scale.py, {time.strftime('%Y-%m-%d')}, threads {sorted({r['threads'] for r in rows})}"
        exponents = plot(rows, args.plots / "scaling-cost.png", f"{when}, target recall@100 {args.target}; SYNTHETIC planted-cluster vectors")
        if any(r["data"].startswith("catalogue") for r in rows):
            exponents["catalogue"] = plot(rows, args.plots / "scaling-catalogue.png", f"{when}; SYNTHETIC code tuples and Zipf sequences",
                                          panels=CATALOGUE_PANELS, data="catalogue")
        (args.out / "exponents.json").write_text(json.dumps(exponents, indent=1))
        _log(f"exponents: {json.dumps(exponents)}")
    return rows


if __name__ == "__main__":
    main()
