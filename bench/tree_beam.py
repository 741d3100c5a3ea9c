"""The MISS tree's beam search before (numpy gathers, per-level scorers) and after (batched torch) in one
process, on SYNTHETIC clustered vectors (:mod:`mmrec.synthetic.vectors`): queries/s at several beams,
interleaved runs, the median of ``--repeats``. Runs only while both paths exist (commit of issue 28).

    OMP_NUM_THREADS=1 python bench/tree_beam.py --n 100000 --dim 64 --branching 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> list[dict]:
    from mmrec.index.exact import exact_knn, recall_at
    from mmrec.index.tree import IndexTree
    from mmrec.synthetic.vectors import planted_clusters

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--branching", type=int, default=32)
    p.add_argument("--balanced", action="store_true")
    p.add_argument("--beams", default="4,16,64")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x, _, q, _ = planted_clusters(args.n, args.dim, n_queries=args.queries)
    truth = exact_knn([x], q, args.k)[1]
    tree = IndexTree.build(x, None, {"branching": args.branching, "balanced": args.balanced, "k": 10, "n_queries": 50}, progress=False)
    rows = []
    for beam in map(int, args.beams.split(",")):
        paths = {"numpy": lambda b=beam: tree._beam_numpy(len(q), args.k, b, tree._ip_score_numpy(q)),
                 "torch": lambda b=beam: tree._beam(len(q), args.k, b, tree._ip_score(q))}
        times: dict[str, list[float]] = {name: [] for name in paths}
        found = {name: f()[1] for name, f in paths.items()}  # warm-up, and the results compared
        for _ in range(args.repeats):
            for name, f in paths.items():
                start = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - start)
        qps = {name: len(q) / statistics.median(t) for name, t in times.items()}
        row = {"n": args.n, "dim": args.dim, "branching": args.branching, "balanced": args.balanced, "beam": beam, "k": args.k,
               "recall@k": round(recall_at(found["torch"], truth, args.k), 4), "same_item_sets": float(np.mean([set(a) == set(b) for a, b in zip(found["torch"], found["numpy"])])),
               "numpy_qps": round(qps["numpy"], 1), "torch_qps": round(qps["torch"], 1), "speedup": round(qps["torch"] / qps["numpy"], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
