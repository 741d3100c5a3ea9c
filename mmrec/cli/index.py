"""`mmrec index build|add|search|eval|serve`: FAISS and MISS-tree indexes."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser(
        "index",
        help="build, add to, search, evaluate and serve FAISS / MISS-tree indexes over embeddings",
        description="Indexes over the Parquet embeddings of mmrec extract / mmrec align: FAISS with an "
        "automatic choice under memory and latency budgets, tuned to a recall target, or the MISS index tree.",
    )
    isub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = isub.add_parser(
        "build",
        help="build an index folder (index file, ids.parquet, index.json with measured recall and QPS)",
        description="Build an index over embeddings, streaming them; auto picks Flat, HNSW, IVF-Flat, IVF-SQ8 or "
        "OPQ-IVF-PQ from N, dim, --max-memory and --max-query-ms, then tunes nprobe/efSearch to --target-recall.",
    )
    p.add_argument("--emb", required=True, help="embeddings: a folder of emb-*.parquet, a Parquet file or a glob")
    p.add_argument("--out", required=True, help="output index folder")
    p.add_argument("--kind", default="auto", help="auto, faiss:<factory> (e.g. faiss:IVF1024,Flat) or tree (default auto)")
    p.add_argument("--column", default="fused", help="vector column: fused, image, text, audio ... (default fused)")
    p.add_argument("--metric", default="ip", choices=["ip", "l2"], help="inner product or L2 (default ip)")
    p.add_argument("--max-memory", default="1G", help="memory budget of the index, e.g. 512M, 4G (default 1G; faiss)")
    p.add_argument("--max-query-ms", type=float, default=10.0, help="latency budget per query in ms (default 10; faiss)")
    p.add_argument("--target-recall", type=float, default=0.95, help="recall@k vs exact to tune for (default 0.95)")
    p.add_argument("--k", type=int, default=10, help="k of the recall target (default 10)")
    p.add_argument("--branching", type=int, default=16, help="children per node (default 16; tree)")
    p.add_argument("--gpu", default="auto", choices=["auto", "on", "off"], help="build on GPUs with faiss-gpu (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print index.json")
    p = isub.add_parser("add", help="add new embedding shards to a FAISS index in place", description="Add new emb-*.parquet shards to a saved FAISS index (same column and dim; keys must stay unique).")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--emb", required=True, help="new embeddings: a folder, Parquet file or glob")
    p.add_argument("--column", default=None, help="vector column (default: the index's)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("search", help="nearest neighbours of indexed keys or of query vectors", description="Search an index by the keys of indexed items or by vectors from a .npy file.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--key", action="append", default=None, help="key of an indexed item (repeatable)")
    p.add_argument("--vectors", default=None, help=".npy file of (q, dim) float query vectors")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("eval", help="recall@1/10/100 vs exact search, QPS, and a recall-vs-QPS PNG", description="Evaluate an index against exact search over the embeddings it was built from.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--emb", default=None, help="embeddings the index holds (default: the files recorded in index.json)")
    p.add_argument("--queries", default=None, help=".npy of query vectors (default: sampled index rows, leave-one-out)")
    p.add_argument("--n-queries", type=int, default=1000, help="sampled queries (default 1000)")
    p.add_argument("--png", default=None, help="curve image (default INDEX/recall-qps.png)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("serve", help="HTTP search API over an index (loopback by default)", description="Serve POST /search ({'vectors': [[...]], 'k': 10} or {'keys': [...]}) and GET /health.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--max-batch", type=int, default=256, help="most queries per request (default 256)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (default 4 MiB)")
    p.add_argument("--search-threads", type=int, default=1, help="FAISS threads per search; requests already run in parallel (default 1)")

    index.set_defaults(_run=_index)


def _index_build(args: argparse.Namespace) -> dict:
    from mmrec.index import build_index

    options = {"metric": args.metric, "target_recall": args.target_recall, "k": args.k, "seed": args.seed}
    if args.kind == "tree":
        options["branching"] = args.branching
    else:
        options.update(max_memory=args.max_memory, max_query_ms=args.max_query_ms, gpu={"auto": None, "on": True, "off": False}[args.gpu])
    index = build_index(args.emb, args.out, args.kind, column=args.column, progress=not args.json, **options)
    info, measured = index.info, index.info["measured"]
    if not args.json:
        what = info.get("factory") or f"tree ({info['nodes']} nodes, depth {info['depth']})"
        tuned = info["tuning"]
        knob = f", {tuned['param']}={tuned['value']}" + ("" if tuned["target_reached"] else " (target NOT reached)") if tuned["param"] else ""
        print(
            f"built {info['kind']} index {what} over {info['n']} vectors (dim {info['dim']}) -> {args.out}: "
            f"recall@{measured['k']} {measured['recall'][str(measured['k'])]:.3f} (target {args.target_recall}{knob}), "
            f"{measured['qps']:.0f} QPS, {measured['ms_per_query']:.2f} ms/query, built in {info['times']['build_s']:.1f} s"
        )
    return info


def _index_add(args: argparse.Namespace) -> dict:
    from mmrec.index import add_to_index

    event = add_to_index(args.index, args.emb, column=args.column, progress=not args.json)
    if not args.json:
        print(f"added {event['rows']} vectors in {event['add_s']:.1f} s -> {args.index} now holds {event['n']}")
    return event


def _index_search(args: argparse.Namespace) -> list:
    import numpy as np

    from mmrec.errors import UsageError
    from mmrec.index import search_index

    if (args.key is None) == (args.vectors is None):
        raise UsageError("give --key (repeatable) or --vectors FILE.npy")
    try:
        vectors = None if args.vectors is None else np.load(args.vectors)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read query vectors {args.vectors}: {err}") from None
    results = search_index(args.index, vectors, keys=args.key, k=args.k)
    if not args.json:
        for i, hits in enumerate(results):
            print(f"query {args.key[i] if args.key else i}:")
            for hit in hits:
                print(f"  {hit['score']:10.4f}  {hit['key']}")
    return results


def _index_eval(args: argparse.Namespace) -> dict:
    import numpy as np

    from mmrec.index.evaluate import evaluate_index

    queries = None if args.queries is None else np.load(args.queries)
    report = evaluate_index(args.index, args.emb, queries=queries, n_queries=args.n_queries, png=args.png)
    if not args.json:
        recalls = "  ".join(f"recall@{k} {v:.3f}" for k, v in report["recall"].items())
        print(f"{report['factory'] or report['kind']} over {report['n']} vectors, {report['queries']} queries ({report['queries_from']}), {report['search_params']}:")
        print(f"  {recalls}  {report['qps']:.0f} QPS  {report['ms_per_query']:.2f} ms/query  -> {report['png']}")
    return report


def _index_serve(args: argparse.Namespace) -> None:
    from mmrec.index.server import serve_index

    serve_index(args.index, host=args.host, port=args.port, max_batch=args.max_batch, max_body_bytes=args.max_body_bytes, search_threads=args.search_threads)


def _index(args: argparse.Namespace) -> int:
    actions = {"build": _index_build, "add": _index_add, "search": _index_search, "eval": _index_eval, "serve": _index_serve}
    result = actions[args.index_command](args)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=str))
    return 0
