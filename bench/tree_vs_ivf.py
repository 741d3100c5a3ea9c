"""The MISS tree against FAISS IVF at recall@100 ≥ 0.9: queries/s of both in one process, interleaved.

Reads a data folder written by ``bench/scale.py`` (``x.npy``, ``q.npy``, ``truth.npy``: SYNTHETIC planted
clusters, exact top-100). Builds (or loads from ``--cache``) IVF{nlist},Flat (nlist as bench/scale.py) and
MISS trees at each ``--branchings`` (plain k-means splits), tunes each knob (nprobe, beam) with
:func:`mmrec.index.tune.tune` to the smallest value reaching recall@100 ≥ ``--target``, then times
``--reps`` rounds in which every index searches the whole query batch once, in turn (so a busy neighbour
slows all of them alike); reports the median queries/s, the tree's ratio to IVF and, for the tree, the
same beam through the batched torch path (``engine="torch"``, the path off CPU) and items scored per query.

    OMP_NUM_THREADS=1 python bench/tree_vs_ivf.py --data /tmp/scale-run/syn-1000000-64 --cache /tmp/scale-idx --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 100


def load_or_build(x: np.ndarray, kind: str, path: Path | None, *, build_max: int, **options: Any) -> Any:
    from mmrec.index import build_index, load_index

    if path is not None and (path / "index.json").is_file():
        return load_index(path)
    if len(x) > build_max:
        raise SystemExit(f"{path}: not built; above --build-max {build_max} vectors build with bench/scale.py --keep")
    index = build_index(np.ascontiguousarray(x), None, kind, progress=False, n_queries=100, k=10, target_recall=0.9, **options)
    if path is not None:
        index.save(path)
    return index


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--branchings", default="32,8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--cache", type=Path, default=None, help="folder to keep the built indexes in (reused when there)")
    p.add_argument("--build-max", type=int, default=2_000_000, help="above this many vectors, only load from --cache")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the result")
    args = p.parse_args(argv)

    import faiss
    import torch

    from mmrec.index.exact import recall_at
    from mmrec.index.select import default_nlist
    from mmrec.index.tune import tune

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    x, q, truth = (np.load(args.data / f"{name}.npy", mmap_mode="r" if name == "x" else None) for name in ("x", "q", "truth"))
    cache = None if args.cache is None else args.cache / args.data.name
    nlist = default_nlist(len(x))
    ivf = load_or_build(x, f"faiss:IVF{nlist},Flat", cache and cache / "ivf", build_max=args.build_max)
    indexes = {ivf.info["factory"]: ivf}
    for b in map(int, args.branchings.split(",")):
        indexes[f"tree b{b}"] = load_or_build(x, "tree", cache and cache / f"tree{b}", build_max=args.build_max, branching=b, balanced=False)
    del x
    result: dict[str, Any] = {"data": args.data.name, "threads": args.threads, "target": args.target, "reps": args.reps, "indexes": {}}
    for name, index in indexes.items():
        tuned = tune(index, q, truth, k=K, target=args.target)
        entry = result["indexes"][name] = {"knob": f"{tuned['param']} {tuned['value']}", "target_reached": tuned["target_reached"], "qps": []}
        if name.startswith("tree"):
            index.lists()
            _, rows, scored = index.search_with_count(q, K)
            entry["scored_pct"] = round(100 * scored / index.n, 3)
            entry["qps_torch"] = []
        else:
            _, rows = index.search(q, K)
        entry["recall@100"] = round(recall_at(rows, truth, K), 4)
    for _ in range(args.reps):
        for name, index in indexes.items():
            start = time.perf_counter()
            index.search(q, K)
            result["indexes"][name]["qps"].append(round(len(q) / (time.perf_counter() - start), 1))
            if name.startswith("tree"):
                start = time.perf_counter()
                index.search_with_count(q, K, engine="torch")
                result["indexes"][name]["qps_torch"].append(round(len(q) / (time.perf_counter() - start), 1))
    ivf = float(np.median(result["indexes"][ivf.info["factory"]]["qps"]))
    for name, entry in result["indexes"].items():
        entry["median_qps"] = float(np.median(entry["qps"]))
        entry["vs_ivf"] = round(entry["median_qps"] / ivf, 3)
        if "qps_torch" in entry:
            entry["median_qps_torch"] = float(np.median(entry["qps_torch"]))
            entry["faiss_over_torch"] = round(entry["median_qps"] / entry["median_qps_torch"], 2)
        print(f"{name:18s} {entry['knob']:10s} recall {entry['recall@100']:.3f} median {entry['median_qps']:9,.0f} q/s  x{entry['vs_ivf']:.2f} IVF"
              + (f"  torch {entry['median_qps_torch']:,.0f} q/s  scored {entry['scored_pct']:.3f} %" if "qps_torch" in entry else ""), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
