"""The MISS tree's beam search three ways in one process: the numpy beam the issue measured (a frozen copy
of the path deleted after commit 1b89a4c, kept here as the peer), the batched torch beam, and the FAISS
inverted-list scan (:meth:`mmrec.index.IndexTree._scan`, the CPU default).

Loads trees saved by ``bench/tree_vs_ivf.py --cache`` / ``bench/scale.py --keep`` and the data folder of
``bench/scale.py`` (``q.npy``, ``truth.npy``); tunes the beam to recall@100 ≥ ``--target``; then
``--reps`` interleaved rounds (each path searches all queries once); median queries/s and the ratios.
Every path must return the same item sets (checked).

    OMP_NUM_THREADS=1 python bench/tree_beam.py --data /tmp/scale-run/syn-1000000-64 --trees /tmp/scale-idx/syn-1000000-64/tree32
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

K = 100


def numpy_beam(tree: Any, queries: np.ndarray, k: int, beam: int, floats: int = 1 << 24) -> np.ndarray:
    """The numpy beam of issue 28's "today" (index/tree.py at 1b89a4c, ``_beam_numpy`` + ``_ip_score_numpy``,
    ``ip`` metric): children padded to the widest node, gathered in numpy, argpartition + argsort per level."""
    width = max(int(np.diff(o).max()) for o in tree.offsets)
    inner = [e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) for e in tree.embeddings[:-1]]
    embeddings = inner + [tree.embeddings[-1]]
    n = len(queries)
    out = np.full((n, k), -1, dtype=np.int64)
    chunk = max(1, floats // (max(beam, len(tree.embeddings[0])) * width * tree.dim))
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        q = part.stop - part.start
        cand = np.broadcast_to(np.arange(len(tree.embeddings[0])), (q, len(tree.embeddings[0])))
        for level in range(tree.depth):
            valid = cand >= 0
            dots = np.matmul(embeddings[level][np.where(valid, cand, 0)], queries[part][:, :, None])[..., 0]
            s = np.where(valid, dots, -np.inf).astype(np.float32)
            keep = min(k if level == tree.depth - 1 else beam, s.shape[1])
            top = np.argpartition(-s, keep - 1, axis=1)[:, :keep] if keep < s.shape[1] else np.broadcast_to(np.arange(s.shape[1]), (q, s.shape[1]))
            top_s = np.take_along_axis(s, top, 1)
            order = np.argsort(-top_s, axis=1, kind="stable")
            sel, sel_s = np.take_along_axis(cand, np.take_along_axis(top, order, 1), 1), np.take_along_axis(top_s, order, 1)
            sel = np.where(np.isfinite(sel_s), sel, -1)
            if level == tree.depth - 1:
                out[part, :keep] = np.where(sel >= 0, tree.items[np.maximum(sel, 0)], -1)
                break
            lo = tree.offsets[level + 1][np.maximum(sel, 0)]
            hi = np.where(sel >= 0, tree.offsets[level + 1][np.maximum(sel, 0) + 1], lo)
            kids = lo[..., None] + np.arange(width)  # (q, keep, width)
            cand = np.where(kids < hi[..., None], kids, -1).reshape(q, -1)
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--trees", required=True, help="comma-separated saved tree folders")
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import faiss
    import torch

    from mmrec.index import load_index
    from mmrec.index.exact import recall_at
    from mmrec.index.tune import tune

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    q, truth = np.load(args.data / "q.npy"), np.load(args.data / "truth.npy")
    rows = []
    for folder in args.trees.split(","):
        tree = load_index(folder)
        beam = tune(tree, q, truth, k=K, target=args.target)["value"]
        paths: dict[str, Callable[[], np.ndarray]] = {
            "numpy": lambda tree=tree, beam=beam: numpy_beam(tree, q, K, beam),
            "torch": lambda tree=tree, beam=beam: tree.search_with_count(q, K, beam=beam, engine="torch")[1],
            "faiss": lambda tree=tree, beam=beam: tree.search_with_count(q, K, beam=beam, engine="faiss")[1]}
        found = {name: f() for name, f in paths.items()}
        same = {name: float(np.mean([set(a) == set(b) for a, b in zip(found["faiss"], r)])) for name, r in found.items()}
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.reps):
            for name, f in paths.items():
                start = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - start)
        qps = {name: len(q) / float(np.median(t)) for name, t in times.items()}
        row = {"data": args.data.name, "tree": Path(folder).name, "depth": tree.depth, "beam": beam, "threads": args.threads,
               "recall@100": round(recall_at(found["faiss"], truth, K), 4), "same_item_sets": same,
               **{f"{name}_qps": round(v, 1) for name, v in qps.items()},
               "faiss_over_numpy": round(qps["faiss"] / qps["numpy"], 2), "torch_over_numpy": round(qps["torch"] / qps["numpy"], 2),
               "faiss_over_torch": round(qps["faiss"] / qps["torch"], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
