"""`mmrec index build|add|search|eval|serve|train-tree`: FAISS and MISS-tree indexes.

Every option comes from a config dataclass (:mod:`mmrec.pipelines.index`, :mod:`mmrec.index`), so its
default and help are written once, there; each action calls the job function of the same name.
"""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import add_config_arguments, config_from_args, config_values
from mmrec.index.faiss_index import FaissConfig
from mmrec.index.server import ServerConfig
from mmrec.index.tree import ScorerConfig, TreeConfig
from mmrec.pipelines.index import (
    AddConfig,
    BuildConfig,
    EvalConfig,
    SearchConfig,
    TrainTreeConfig,
)
from mmrec.training import LoopConfig

_SHARED = ("metric", "target_recall", "k", "n_queries", "seed")  # FAISS and tree options of the same name
_LOOP_EXCLUDE = ("progress", "desc")


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser(
        "index",
        help="build, add to, search, evaluate and serve FAISS / MISS-tree indexes; train the tree's scorer",
        description="Indexes over the Parquet embeddings of mmrec extract / mmrec align: FAISS with an "
        "automatic choice under memory and latency budgets, tuned to a recall target, or the MISS index tree.",
    )
    isub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = isub.add_parser(
        "build",
        help="build an index folder (index file, ids.parquet, index.json with measured recall and QPS)",
        description="Build an index over embeddings, streaming them; auto picks Flat, HNSW, IVF-Flat, IVF-SQ8 or "
        "OPQ-IVF-PQ from N, dim, --max-memory and --max-query-ms, then tunes nprobe/efSearch to --target-recall. "
        "--kind tree builds the MISS tree (--branching, --niter); train its scorer with mmrec index train-tree.",
    )
    add_config_arguments(p, BuildConfig, exclude=("faiss", "tree"), required=("emb", "out"))
    add_config_arguments(p.add_argument_group("FAISS (and shared) options"), FaissConfig, exclude=("factory",))
    add_config_arguments(p.add_argument_group("tree options (--kind tree)"), TreeConfig, exclude=_SHARED)
    p.add_argument("--json", action="store_true", help="print index.json")

    p = isub.add_parser("add", help="add new embedding shards to a FAISS index in place", description="Add new emb-*.parquet shards to a saved FAISS index (same column and dim; keys must stay unique).")
    add_config_arguments(p, AddConfig, required=("index", "emb"))
    p.add_argument("--json", action="store_true")

    p = isub.add_parser("search", help="nearest neighbours of indexed keys or of query vectors", description="Search an index by the keys of indexed items or by vectors from a .npy file.")
    add_config_arguments(p, SearchConfig, exclude=("keys",), required=("index",))
    p.add_argument("--key", dest="keys", action="append", help="key of an indexed item (repeatable)")
    p.add_argument("--json", action="store_true")

    p = isub.add_parser("eval", help="recall@1/10/100 vs exact search, QPS, and a recall-vs-QPS PNG", description="Evaluate an index against exact search over the embeddings it was built from.")
    add_config_arguments(p, EvalConfig, required=("index",))
    p.add_argument("--json", action="store_true")

    p = isub.add_parser("serve", help="HTTP search API over an index (loopback by default)", description="Serve POST /search ({'vectors': [[...]], 'k': 10} or {'keys': [...]}) and GET /health.")
    p.add_argument("--index", required=True, help="index folder")
    add_config_arguments(p, ServerConfig)

    p = isub.add_parser(
        "train-tree",
        help="train the MISS tree's node scorer (Co-GSU + MM-GSU) from a behaviour log",
        description="Train the node scorer of a tree built by 'mmrec index build --kind tree' on the positives of a "
        "behaviour log (user histories through Co-GSU and MM-GSU; user vectors from --user-emb or the mean of the "
        "history), save it with the tree and report recall@k of held-out positives against exhaustive scoring and baselines.",
    )
    add_config_arguments(p, TrainTreeConfig, exclude=("scorer", "loop"), required=("index", "log"))
    add_config_arguments(p.add_argument_group("node scorer"), ScorerConfig)
    add_config_arguments(p.add_argument_group("training loop"), LoopConfig, exclude=_LOOP_EXCLUDE)
    p.add_argument("--json", action="store_true", help="print the report")

    index.set_defaults(_run=_index)


def _index_build(args: argparse.Namespace) -> dict:
    from mmrec.pipelines.index import build

    config = config_from_args(args, BuildConfig, exclude=("faiss", "tree"), what="index build",
                              faiss=config_values(args, FaissConfig, exclude=("factory",)), tree=config_values(args, TreeConfig))
    info = build(config, progress=not args.json)
    if not args.json:
        measured = info["measured"]
        what = info.get("factory") or f"tree ({info['nodes']} nodes, depth {info['depth']})"
        tuned = info["tuning"]
        knob = f", {tuned['param']}={tuned['value']}" + ("" if tuned["target_reached"] else " (target NOT reached)") if tuned["param"] else ""
        print(
            f"built {info['kind']} index {what} over {info['n']} vectors (dim {info['dim']}) -> {config.out}: "
            f"recall@{measured['k']} {measured['recall'][str(measured['k'])]:.3f} (target {info['config']['target_recall']}{knob}), "
            f"{measured['qps']:.0f} QPS, {measured['ms_per_query']:.2f} ms/query, built in {info['times']['build_s']:.1f} s"
        )
    return info


def _index_add(args: argparse.Namespace) -> dict:
    from mmrec.pipelines.index import add

    config = config_from_args(args, AddConfig, what="index add")
    event = add(config, progress=not args.json)
    if not args.json:
        print(f"added {event['rows']} vectors in {event['add_s']:.1f} s -> {config.index} now holds {event['n']}")
    return event


def _index_search(args: argparse.Namespace) -> list:
    from mmrec.pipelines.index import search

    config = config_from_args(args, SearchConfig, what="index search", keys=tuple(args.keys or ()))
    results = search(config)
    if not args.json:
        for i, hits in enumerate(results):
            print(f"query {config.keys[i] if config.keys else i}:")
            for hit in hits:
                print(f"  {hit['score']:10.4f}  {hit['key']}")
    return results


def _index_eval(args: argparse.Namespace) -> dict:
    from mmrec.pipelines.index import evaluate

    report = evaluate(config_from_args(args, EvalConfig, what="index eval"))
    if not args.json:
        recalls = "  ".join(f"recall@{k} {v:.3f}" for k, v in report["recall"].items())
        print(f"{report['factory'] or report['kind']} over {report['n']} vectors, {report['queries']} queries ({report['queries_from']}), {report['search_params']}:")
        print(f"  {recalls}  {report['qps']:.0f} QPS  {report['ms_per_query']:.2f} ms/query  -> {report['png']}")
    return report


def _index_serve(args: argparse.Namespace) -> None:
    from mmrec.index.server import serve_index

    serve_index(args.index, config_from_args(args, ServerConfig, what="index serve"))


def _index_train_tree(args: argparse.Namespace) -> dict:
    from mmrec.pipelines.index import train_tree

    config = config_from_args(args, TrainTreeConfig, exclude=("scorer", "loop"), what="index train-tree",
                              scorer=config_values(args, ScorerConfig),
                              loop={**config_values(args, LoopConfig, exclude=_LOOP_EXCLUDE), "progress": not args.json})
    report = train_tree(config)
    if not args.json:
        fit = report["fit"]
        print(f"trained the tree scorer of {config.index} on {report['pairs']} pairs of {report['users']} users "
              f"({fit['steps']} steps, {fit['seconds']:.1f} s, stopped: {fit['stopped']})")
        if "recall" in report:
            figures = "  ".join(f"{name} {value:.3f}" for name, value in report["recall"].items())
            print(f"  recall@{report['k']} of held-out positives ({report['eval_users']} users, beam {report['beam']}): {figures}")
            print(f"  beam search vs exhaustive scoring (recall vs exact): {report['recall_vs_exact']:.3f}")
    return report


def _index(args: argparse.Namespace) -> int:
    actions = {"build": _index_build, "add": _index_add, "search": _index_search, "eval": _index_eval,
               "serve": _index_serve, "train-tree": _index_train_tree}
    result = actions[args.index_command](args)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=str))
    return 0
