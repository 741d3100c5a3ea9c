"""MMBee GIE at scale: graph build, metapath expansion (vs scipy.sparse) and one GraphCL epoch.

What it does, in one process on this machine:

1. **Data (SYNTHETIC).** A live behaviour log in the issue-8 contract's schema, generated with numpy
   and written as Parquet in row groups: ``--rows`` rows (default 12M) over ``--users`` users and
   ``--authors`` authors in ``--communities`` planted communities (an impression goes to an author of
   the user's community with probability 0.8, Zipf popularity within it); users' activity and gift
   propensity are lognormal (heavy-tailed); 85 % of impressions are watches; gifts are ~1 % of
   watches, values lognormal. ``item_id`` and ``domain`` are dictionary-encoded strings.
2. **Build.** :func:`mmrec.graphs.build_graphs` on the Parquet file (streamed, 1M-row batches): U2A
   gifts and watches, A2A Swing.
3. **Expansion vs scipy.sparse.** :func:`mmrec.graphs.expand_metapaths` (torch sparse CSR, chunked)
   for ``user>author>author``, ``author>user>author`` and the much denser co-watching path
   ``author-watched_by>user-watches>author``; then the same thing with scipy.sparse in the same run:
   the same row-normalised CSR matrices multiplied whole (one ``@`` per hop), the same exclusions
   (self; authors the user already gifted), the same per-row top-k (one numpy lexsort). The table
   gives both times, the ratio, the share of source rows whose top-k lists agree exactly, and the
   share of expanded authors in the source's planted community (chance: 1 / communities).
4. **GraphCL.** One epoch of :func:`mmrec.graphs.fit_graphcl` (HeteroSAGE, fanouts 10,5, dim 64,
   batch 1024 seeds, users and authors in turn, every node with an edge once); ``--max-steps`` caps
   the batches, and then the table says how many ran and extrapolates to the full epoch.

Peak memory: the process's resident set, sampled every 20 ms by a thread (psutil), per stage (peak,
and peak minus the RSS at the stage's start). torch runs with ``--threads`` threads (default 1; scipy's
sparse product is single-threaded). Results go to stdout (a markdown table) and ``--json-out``.

    .venv/bin/python bench/graphs.py                                 # the full run (~3.5 minutes here)
    .venv/bin/python bench/graphs.py --rows 200000 --users 20000 --authors 2000 --max-steps 20  # smoke run
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
METAPATHS = ("user>author>author", "author>user>author", "author-watched_by>user-watches>author")


class PeakRSS:
    """Sample the process RSS in a thread; ``stage()`` returns (peak, peak - start) in MiB since the last call."""

    def __init__(self, every: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process()
        self.every, self.peak, self.start = every, 0, self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every)

    def reset(self) -> None:
        self.start = self.peak = self.process.memory_info().rss

    def stage(self) -> tuple[float, float]:
        self.peak = max(self.peak, self.process.memory_info().rss)
        out = (self.peak / 2**20, (self.peak - self.start) / 2**20)
        self.reset()
        return out


def generate_log(path: Path, *, rows: int, users: int, authors: int, communities: int, seed: int,
                 row_group: int = 1 << 20) -> dict[str, Any]:
    """Write the SYNTHETIC log (see the module docstring); returns counts and the planted communities."""
    rng = np.random.default_rng(seed)
    user_c = rng.integers(0, communities, users)
    author_c = rng.permutation(np.arange(authors) % communities)
    by_c = np.argsort(author_c, kind="stable")  # authors grouped by community
    c_start = np.searchsorted(author_c[by_c], np.arange(communities))
    c_size = np.bincount(author_c, minlength=communities)
    activity = rng.lognormal(0, 1.0, users)
    propensity = rng.lognormal(0, 1.5, users)
    user_cdf = np.cumsum(activity / activity.sum())
    segments = pa.array([f"seg-{i:06d}-{j:03d}" for i in range(2000) for j in range(10)])
    domains = pa.array(["live", "video"])
    gift_scale = None
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.dictionary(pa.int32(), pa.string())), ("author_id", pa.int64()),
                        ("domain", pa.dictionary(pa.int8(), pa.string())), ("ts", pa.int64()), ("watch", pa.int8()),
                        ("like", pa.int8()), ("comment", pa.int8()), ("gift", pa.int8()), ("gift_value", pa.float32())])
    counts = {"rows": 0, "watch": 0, "gift": 0}
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            user = np.minimum(np.searchsorted(user_cdf, rng.random(n)), users - 1)
            own = rng.random(n) < 0.8
            c = np.where(own, user_c[user], rng.integers(0, communities, n))
            rank = np.minimum(rng.zipf(1.3, n) - 1, c_size[c] - 1)  # popularity within the community
            author = by_c[c_start[c] + rank]
            watch = rng.random(n) < 0.85
            if gift_scale is None:  # gifts ~1 % of watches on average
                gift_scale = 0.01 / np.mean(propensity[user[watch]])
            gift = watch & (rng.random(n) < np.minimum(gift_scale * propensity[user], 1.0))
            value = np.where(gift, rng.lognormal(1.0, 1.0, n), 0.0).astype(np.float32)
            table = pa.table({
                "user_id": user.astype(np.int64),
                "item_id": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(segments), n).astype(np.int32)), segments),
                "author_id": author.astype(np.int64),
                "domain": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), domains),
                "ts": np.arange(start, start + n, dtype=np.int64),
                "watch": watch.astype(np.int8), "like": (watch & (rng.random(n) < 0.05)).astype(np.int8),
                "comment": np.zeros(n, np.int8), "gift": gift.astype(np.int8), "gift_value": value,
            }, schema=schema)
            writer.write_table(table)
            counts["rows"] += n
            counts["watch"] += int(watch.sum())
            counts["gift"] += int(gift.sum())
    return {**counts, "user_community": user_c, "author_community": author_c}


def scipy_expand(graph, metapath: str, k: int) -> dict[int, list[int]]:
    """The same expansion as :func:`mmrec.graphs.expand_metapaths`, with scipy.sparse, unchunked."""
    import scipy.sparse as sp

    from mmrec.graphs.metapath import parse_metapath

    hops = parse_metapath(metapath, graph.edge_types)
    matrices = []
    for hop in hops:
        index = graph[hop].edge_index.numpy()
        weight = graph[hop].edge_weight.numpy().astype(np.float64)
        shape = (graph[hop[0]].num_nodes, graph[hop[2]].num_nodes)
        m = sp.csr_matrix((weight, (index[0], index[1])), shape=shape)
        total = np.asarray(m.sum(axis=1)).ravel()
        matrices.append(sp.diags(1.0 / np.maximum(total, 1e-300)) @ m)
    product = matrices[0]
    for m in matrices[1:]:
        product = product @ m
    product = product.tocsr()
    if hops[0][0] == hops[-1][2]:
        product.setdiag(0)
    if len(hops) > 1 and hops[0][2] == hops[-1][2]:
        product = product - product.multiply(matrices[0] > 0)
    product = product.tocoo()
    keep = product.data > 0
    rows, cols, vals = product.row[keep], product.col[keep], product.data[keep]
    order = np.lexsort((cols, -vals.astype(np.float32), rows))  # mmrec's rule: float32 score, then lower id
    rows, cols = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    top = rank < k
    rows, cols = rows[top], cols[top]
    bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1], True])
    return {int(rows[a]): cols[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=12_000_000, help="rows of the SYNTHETIC live log")
    parser.add_argument("--users", type=int, default=1_000_000, help="users of the log")
    parser.add_argument("--authors", type=int, default=50_000, help="authors of the log")
    parser.add_argument("--communities", type=int, default=100, help="planted communities (chance purity 1 / this)")
    parser.add_argument("--k", type=int, default=20, help="top-k authors kept per source row by the expansion")
    parser.add_argument("--max-steps", type=int, default=0, help="cap on the GraphCL epoch's batches; 0 = the whole epoch")
    parser.add_argument("--batch-size", type=int, default=1024, help="GraphCL seed nodes per batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the log and of GraphCL")
    parser.add_argument("--out", default=str(REPO / "bench-out" / "graphs"), help="work folder")
    parser.add_argument("--json-out", default=None, help="report file; none = OUT/graphs-bench.json")
    args = parser.parse_args(argv)

    import torch

    from mmrec.graphs import build_graphs, expand_metapaths, fit_graphcl

    torch.set_num_threads(args.threads)
    import scipy.sparse  # noqa: F401  imported before any timing
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    memory = PeakRSS()
    results: dict[str, Any] = {"args": vars(args), "stages": {}}

    def record(name: str, seconds: float, **extra: Any) -> None:
        peak, delta = memory.stage()
        results["stages"][name] = {"seconds": round(seconds, 3), "peak_rss_mib": round(peak), "delta_rss_mib": round(delta), **extra}
        print(f"{name}: {seconds:.1f} s, peak RSS {peak:.0f} MiB (+{delta:.0f}) {extra or ''}", flush=True)

    log = out / "live-behaviour.parquet"
    t = time.perf_counter()
    counts = generate_log(log, rows=args.rows, users=args.users, authors=args.authors, communities=args.communities, seed=args.seed)
    community = {"user": counts.pop("user_community"), "author": counts.pop("author_community")}
    record("generate SYNTHETIC log", time.perf_counter() - t, **counts, file_mib=round(log.stat().st_size / 2**20))

    memory.reset()
    t = time.perf_counter()
    graph = build_graphs(log)
    edges = {"__".join(e): int(graph[e].edge_index.shape[1]) for e in graph.edge_types}
    record("build_graphs", time.perf_counter() - t, edges=edges)

    agreement, planted = {}, {}
    for metapath in METAPATHS:
        memory.reset()
        t = time.perf_counter()
        table = expand_metapaths(graph, metapath, args.k)
        record(f"expand {metapath} (torch)", time.perf_counter() - t, sources=table.num_rows)
        ours = dict(zip(table.column("src_id").to_pylist(), table.column("dst_ids").to_pylist()))
        src_type = table.column("src_type")[0].as_py() if table.num_rows else "user"
        flat = np.concatenate([np.asarray(v, np.int64) for v in ours.values()]) if ours else np.zeros(0, np.int64)
        owner = np.repeat(np.fromiter(ours, np.int64), [len(v) for v in ours.values()])
        planted[metapath] = float(np.mean(community["author"][flat] == community[src_type][owner])) if len(flat) else 0.0
        del table
        memory.reset()
        t = time.perf_counter()
        theirs = scipy_expand(graph, metapath, args.k)
        record(f"expand {metapath} (scipy)", time.perf_counter() - t, sources=len(theirs))
        same = sum(ours.get(s) == v for s, v in theirs.items())
        agreement[metapath] = same / max(len(theirs), 1)
        del ours, theirs
    results["agreement"] = agreement
    results["same_community_share"] = planted

    memory.reset()
    t = time.perf_counter()
    config = {"dim": 64, "fanouts": (10, 5), "batch_size": args.batch_size, "epochs": 1, "max_steps": args.max_steps or None,
              "seed": args.seed}
    model, report = fit_graphcl(graph, config=config)
    seconds = time.perf_counter() - t
    from mmrec.graphs import NeighborSampler

    sampler = NeighborSampler(graph, [1])
    epoch_batches = sum(-(-int((sampler.degree(nt) > 0).sum()) // args.batch_size) for nt in graph.node_types)
    record("GraphCL epoch", seconds, steps=report["steps"], epoch_batches=epoch_batches, seeds=report["seed_nodes"],
           loss=round(report["epoch_loss"][0], 3), steps_per_s=round(report["steps"] / report["seconds"], 2),
           full_epoch_s_extrapolated=round(seconds / max(report["steps"], 1) * epoch_batches, 1))
    memory.stop.set()
    import resource

    results["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    s = results["stages"]
    lines = ["| stage | time s | peak RSS MiB (+ over the stage start) | notes |", "|---|---:|---:|---|"]
    g = s["generate SYNTHETIC log"]
    lines.append(f"| generate SYNTHETIC log (not mmrec) | {g['seconds']} | {g['peak_rss_mib']} | {g['rows']:,} rows, "
                 f"{g['watch']:,} watches, {g['gift']:,} gifts, {g['file_mib']} MiB Parquet |")
    b = s["build_graphs"]
    lines.append(f"| build_graphs | {b['seconds']} | {b['peak_rss_mib']} (+{b['delta_rss_mib']}) | "
                 + ", ".join(f"{k.replace('__', ' ')} {v:,}" for k, v in b["edges"].items()) + " |")
    for metapath in METAPATHS:
        a, c = s[f"expand {metapath} (torch)"], s[f"expand {metapath} (scipy)"]
        lines.append(f"| expand `{metapath}` k={args.k}: mmrec (torch CSR) / scipy.sparse | {a['seconds']} / {c['seconds']} "
                     f"(scipy/mmrec {c['seconds'] / max(a['seconds'], 1e-3):.2f}x) | {a['peak_rss_mib']} (+{a['delta_rss_mib']}) / "
                     f"{c['peak_rss_mib']} (+{c['delta_rss_mib']}) | {a['sources']:,} sources; identical top-k "
                     f"{100 * agreement[metapath]:.2f} %; in the source's planted community {100 * planted[metapath]:.0f} % "
                     f"(chance {100 / args.communities:.0f} %) |")
    e = s["GraphCL epoch"]
    capped = f"full epoch ~{e['full_epoch_s_extrapolated']} s extrapolated; " if args.max_steps else ""
    lines.append(f"| GraphCL, {e['steps']} of {e['epoch_batches']} batches of one epoch | {e['seconds']} | "
                 f"{e['peak_rss_mib']} (+{e['delta_rss_mib']}) | {capped}{e['seeds']:,} seed nodes, "
                 f"{e['steps_per_s']} batches/s, mean loss {e['loss']} |")
    table = "\n".join(lines)
    results["table"] = table
    print(table)
    print(f"process peak RSS (ru_maxrss): {results['ru_maxrss_mib']} MiB; torch threads {args.threads}")
    json_out = Path(args.json_out or out / "graphs-bench.json")
    json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
