"""MISS-tree serving sweep over one retrieval run: branching x upper beam x beam x (interests apart | joint).

    OMP_NUM_THREADS=1 python bench/seq_tree.py --run bench-out/seq/runs/Beauty/kuaiformer-s0 \
        --branching 32,110 --beams 4,8,16,32,64 --upper-beams 0,8,16 --balanced 1,0 --ivf-lists 128

For the first ``--users`` validation users of the run: their interest vectors, exact top-``k`` over the
run's item vectors (max over interests), then for every tree setting recall@k against that exact
answer, the items scored per query as a share of all items (a query = one interest when apart, one
user when joint: :func:`mmrec.pipelines.retrieve.serve_run`'s ``joint``), dot products per user and
users/s. One tree is built per branching and ``--balanced`` value (balanced or plain k-means splits,
:class:`mmrec.index.tree.IndexTree`), over
the items lifted to one norm (:func:`mmrec.retrieval.serving.mips_lift`, as ``retrieve serve`` does;
``--no-mips``: the raw vectors). ``--upper-beams``: the beam above the last inner level (0: the beam).
``--ivf-lists`` / ``--nprobes``: the same sweep for FAISS ``IVF<n>,Flat`` (built as ``retrieve serve``
builds it) over the same lifted vectors, a partition index that is not a tree (items scored = centroids
+ the probed lists' items).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--branching", default="16,32,64,110")
    p.add_argument("--beams", default="4,8,16,32,64")
    p.add_argument("--upper-beams", default="0", help="beams above the last inner level; 0 = the same as --beams")
    p.add_argument("--mips", action=argparse.BooleanOptionalAction, default=True, help="tree over MIPS-lifted items")
    p.add_argument("--ivf-lists", default="", help="FAISS IVF list counts to sweep beside the tree (empty: none)")
    p.add_argument("--nprobes", default="4,8,16,32,64")
    p.add_argument("--balanced", default="0", help="tree splits: 1 = balanced k-means, 0 = plain k-means; both: 1,0")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--joint", action=argparse.BooleanOptionalAction, default=False, help="also serve the interests jointly")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from mmrec.index.exact import faiss_module
    from mmrec.index.tree import IndexTree
    from mmrec.pipelines.index import build_index
    from mmrec.pipelines.retrieve import load_run
    from mmrec.retrieval.data import ITEM_KEY, read_sequences
    from mmrec.retrieval.serving import exact_top as _exact_top
    from mmrec.retrieval.serving import interest_vectors as _interests
    from mmrec.retrieval.serving import merge_interests as _merge
    from mmrec.retrieval.serving import mips_lift
    from mmrec.retrieval.serving import recall_vs as _recall_vs
    from mmrec.retrieval.serving import tree_search as _tree_search

    torch.set_num_threads(args.threads)
    model, config = load_run(args.run)
    history, _ = read_sequences(config["job"]["data"])[0].split_last()
    users = np.arange(min(args.users, len(history)))
    interests = _interests(model, history, users, config["model"]["max_len"])  # (U, k, D)
    with torch.no_grad():
        items = np.ascontiguousarray(model.item_vectors().numpy(), dtype=np.float32)
    n_int = interests.shape[1]
    queries = np.ascontiguousarray(interests.reshape(-1, items.shape[1]), dtype=np.float32)
    start = time.perf_counter()
    truth = _exact_top(queries, items, n_int, args.k)
    rows = [{"setting": "exact", "recall": 1.0, "scored_pct": 100.0, "dots_per_user": n_int * len(items),
             "users_per_s": round(len(users) / (time.perf_counter() - start), 1)}]
    print(json.dumps(rows[-1]), flush=True)
    tree_items, tree_queries = mips_lift(items, queries) if args.mips else (items, queries)
    keys = [ITEM_KEY.format(i) for i in range(len(items))]
    for branching, balanced in itertools.product(map(int, args.branching.split(",")), map(int, args.balanced.split(","))):
        index = IndexTree.build(tree_items, None, {"branching": branching, "balanced": bool(balanced), "metric": "ip", "k": 10},
                                keys=keys, progress=False)
        settings = itertools.product(map(int, args.upper_beams.split(",")), map(int, args.beams.split(",")),
                                     (False, True) if n_int > 1 and args.joint else (False,))
        for upper, beam, joint in settings:
            if upper and upper >= beam:
                continue
            start = time.perf_counter()
            found, scored = _tree_search(index, tree_queries, n_int, args.k, beam, joint, upper or None)
            seconds = time.perf_counter() - start
            label = f"{'balanced' if balanced else 'k-means'} {branching}, {f'upper beam {upper}, ' if upper else ''}beam {beam}{', joint' if joint else ''}"
            rows.append({"setting": label,
                         "recall": round(_recall_vs(found, truth, args.k), 4),
                         "scored_pct": round(100 * scored / len(items), 2), "dots_per_user": round(scored * n_int),
                         "users_per_s": round(len(users) / seconds, 1), "levels": index.node_counts()})
            print(json.dumps(rows[-1]), flush=True)
    for nlist in [int(x) for x in args.ivf_lists.split(",") if x]:  # the same FAISS index retrieve serve builds
        ivf = build_index(tree_items, None, f"faiss:IVF{nlist},Flat", keys=keys, progress=False, metric="ip", k=10)
        stats = faiss_module().cvar.indexIVF_stats
        for nprobe in (p for p in map(int, args.nprobes.split(",")) if p < nlist):
            ivf.set_param(nprobe)
            stats.reset()
            start = time.perf_counter()
            scores, found = ivf.search(tree_queries, args.k)
            seconds = time.perf_counter() - start
            scored = stats.ndis / len(tree_queries) + nlist
            rows.append({"setting": f"FAISS IVF{nlist}, nprobe {nprobe}",
                         "recall": round(_recall_vs(_merge(scores, found, n_int, args.k), truth, args.k), 4),
                         "scored_pct": round(100 * scored / len(items), 2), "dots_per_user": round(scored * n_int),
                         "users_per_s": round(len(users) / seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(users)} users x {n_int} interests, {len(items):,} items, recall@{args.k} vs exact")
    print(f"{'setting':<52}{'recall':>8}{'% scored/query':>16}{'dots/user':>11}{'users/s':>9}")
    for r in rows:
        print(f"{r['setting']:<52}{r['recall']:>8.4f}{r['scored_pct']:>16.2f}{r['dots_per_user']:>11}{r['users_per_s']:>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
