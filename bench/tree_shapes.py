"""Which MISS tree finds more neighbours per item scored: recall@100 vs % of items scored, against FAISS IVF.

Reads a data folder written by ``bench/scale.py`` (``x.npy``, ``q.npy``, ``truth.npy``: SYNTHETIC planted
clusters, exact top-100). Trees (plain k-means splits, :class:`mmrec.index.IndexTree`):

- ``b{B}``: branching B; a smaller B gives more levels (the tree over 100k items has 4 levels at B=32,
  6 at B=8);
- ``b{B}-spann{eps}``: redundant assignment, as SPANN (Chen et al., NeurIPS'21, §3.2) does for IVF
  posting lists: every item is also a leaf under its second-nearest node of the level above the items
  when that node is at most (1 + eps) times as far as its nearest one (squared L2 to the node means);
  beam search then returns an item at most once (the best k distinct rows of the top 2k leaves).

IVF{nlist},Flat (nlist as bench/scale.py) is swept over nprobe. Items scored per query: all nodes
scored on every level (tree; a redundant leaf counts each time) or nlist centroids plus the vectors of
the probed lists (IVF, FAISS's ``indexIVF_stats``). For every tree point, IVF's recall at the same %
scored by log-linear interpolation; and for every line, the % scored at which it reaches recall 0.9.

    OMP_NUM_THREADS=1 python bench/tree_shapes.py --data /tmp/scale-run/syn-100000-64 --out docs/tree-shapes.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 100


def redundant_tree(tree: Any, x: np.ndarray, eps: float) -> Any:
    """A copy of ``tree`` whose items also hang under their second-nearest last inner node (SPANN's rule)."""
    from mmrec.index.exact import faiss_module
    from mmrec.index.tree import IndexTree

    faiss = faiss_module()
    parents = np.ascontiguousarray(tree.embeddings[-2])
    dist, near = faiss.knn(x, parents, 2)  # squared L2, (n, 2)
    second = dist[:, 1] <= (1 + eps) * dist[:, 0]
    item = np.concatenate([np.arange(len(x)), np.flatnonzero(second)])
    parent = np.concatenate([near[:, 0], near[second, 1]])
    order = np.lexsort((item, parent))
    items, parent = item[order], parent[order]
    offsets = np.searchsorted(parent, np.arange(len(parents) + 1)).astype(np.int64)
    copy = IndexTree(tree.embeddings[:-1] + [np.ascontiguousarray(x[items])], tree.offsets[:-1] + [offsets], items, tree.keys,
                     dict(tree.info))
    copy.info["redundant_leaves"] = int(second.sum())
    return copy


def distinct_top(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` distinct rows of each row of ``rows`` (best first); -1 past the end."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        _, first = np.unique(r, return_index=True)
        kept = r[np.sort(first)]
        kept = kept[kept >= 0][:k]
        out[i, : len(kept)] = kept
    return out


def tree_curve(tree: Any, q: np.ndarray, truth: np.ndarray, beams: list[int], *, redundant: bool) -> list[dict[str, Any]]:
    from mmrec.index.exact import recall_at

    points = []
    for beam in beams:
        start = time.perf_counter()
        scores, rows, scored = tree.search_with_count(q, 2 * K if redundant else K, beam=beam)
        secs = time.perf_counter() - start
        if redundant:
            rows = distinct_top(scores, rows, K)
        points.append({"beam": beam, "recall@100": round(recall_at(rows, truth, K), 4), "scored_pct": round(100 * scored / tree.n, 3),
                       "qps": round(len(q) / secs, 1)})
    return points


def ivf_curve(x: np.ndarray, q: np.ndarray, truth: np.ndarray) -> tuple[str, float, list[dict[str, Any]]]:
    from mmrec.index import build_index
    from mmrec.index.exact import faiss_module, recall_at
    from mmrec.index.select import default_nlist

    faiss = faiss_module()
    nlist = default_nlist(len(x))
    start = time.perf_counter()
    ivf = build_index(x, None, f"faiss:IVF{nlist},Flat", progress=False, n_queries=100, k=10)
    build = time.perf_counter() - start - ivf.info["times"].get("tune_s", 0.0)
    points = []
    for nprobe in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256):
        ivf.set_param(nprobe)
        faiss.cvar.indexIVF_stats.reset()
        start = time.perf_counter()
        rows = ivf.search(q, K)[1]
        secs = time.perf_counter() - start
        scored = faiss.cvar.indexIVF_stats.ndis / len(q) + nlist
        points.append({"nprobe": nprobe, "recall@100": round(recall_at(rows, truth, K), 4), "scored_pct": round(100 * scored / len(x), 3),
                       "qps": round(len(q) / secs, 1)})
    return f"IVF{nlist},Flat", build, points


def at_recall(points: list[dict[str, Any]], target: float) -> float | None:
    """% scored where a curve first reaches ``target`` recall (log-linear between the two points around it)."""
    for a, b in zip(points, points[1:]):
        if a["recall@100"] < target <= b["recall@100"]:
            t = (target - a["recall@100"]) / (b["recall@100"] - a["recall@100"])
            return round(float(np.exp(np.log(a["scored_pct"]) + t * (np.log(b["scored_pct"]) - np.log(a["scored_pct"])))), 3)
    return points[0]["scored_pct"] if points and points[0]["recall@100"] >= target else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from mmrec.index.tree import IndexTree

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--branchings", default="8,16,32")
    p.add_argument("--spann", default="32:0.1,32:0.3", help="comma-separated BRANCHING:EPS trees with redundant leaves")
    p.add_argument("--beams", default="4,8,16,24,32,48,64,96,128,192,256")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x, q, truth = (np.load(args.data / f"{name}.npy") for name in ("x", "q", "truth"))
    beams = [int(b) for b in args.beams.split(",")]
    report: dict[str, Any] = {"data": args.data.name, "n": len(x), "dim": x.shape[1], "queries": len(q), "k": K, "lines": {}}
    factory, build, points = ivf_curve(x, q, truth)
    report["lines"][factory] = {"build_s": round(build, 2), "points": points}
    trees: dict[int, Any] = {}
    for branching in sorted({int(b) for b in args.branchings.split(",")} | {int(s.split(":")[0]) for s in args.spann.split(",") if s}):
        start = time.perf_counter()
        trees[branching] = IndexTree.build(x, None, {"branching": branching, "balanced": False, "k": 10, "n_queries": 50}, progress=False)
        build = time.perf_counter() - start - trees[branching].info["times"]["tune_s"]
        if str(branching) in args.branchings.split(","):
            report["lines"][f"b{branching}"] = {"build_s": round(build, 2), "depth": trees[branching].depth,
                                                "points": tree_curve(trees[branching], q, truth, beams, redundant=False)}
            print(json.dumps({f"b{branching}": report["lines"][f"b{branching}"]}), flush=True)
    for spec in filter(None, args.spann.split(",")):
        branching, eps = spec.split(":")
        tree = redundant_tree(trees[int(branching)], x, float(eps))
        name = f"b{branching}-spann{eps}"
        report["lines"][name] = {"depth": tree.depth, "redundant_leaves_pct": round(100 * tree.info["redundant_leaves"] / len(x), 2),
                                 "points": tree_curve(tree, q, truth, beams, redundant=True)}
        print(json.dumps({name: report["lines"][name]}), flush=True)
    log_c = np.log([pt["scored_pct"] for pt in points])
    for name, line in report["lines"].items():
        line["scored_pct_at_recall_0.9"] = at_recall(line["points"], 0.9)
        if name.startswith("b"):
            for pt in line["points"]:
                inside = log_c[0] <= np.log(pt["scored_pct"]) <= log_c[-1]
                pt["ivf_recall@100_same_scored"] = round(float(np.interp(np.log(pt["scored_pct"]), log_c, [v["recall@100"] for v in points])), 4) if inside else None
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({n: line["scored_pct_at_recall_0.9"] for n, line in report["lines"].items()}), flush=True)
    return report


if __name__ == "__main__":
    main()
