"""build, add to, search, evaluate and serve FAISS / MISS-tree indexes; train the tree's scorer

Indexes over the Parquet embeddings of mmrec extract / mmrec align: FAISS with an automatic choice under memory
and latency budgets, tuned to a recall target, or the MISS index tree.
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, Options, config_from_args, config_values, emit
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


cli = Commands("index", __doc__)


@cli.command(
    "build",
    configs=(
        Options(BuildConfig, exclude=("faiss", "tree"), required=("emb", "out")),
        Options(FaissConfig, "FAISS (and shared) options", exclude=("factory",)),
        Options(TreeConfig, "tree options (--kind tree)", exclude=_SHARED),
    ),
    json_help="print index.json",
)
def _build(args: argparse.Namespace) -> int:
    """build an index folder (index file, ids.parquet, index.json with measured recall and QPS)

    Build an index over embeddings, streaming them; auto picks Flat, HNSW, IVF-Flat, IVF-SQ8 or OPQ-IVF-PQ from
    N, dim, --max-memory and --max-query-ms, then tunes nprobe/efSearch to --target-recall. --kind tree builds
    the MISS tree (--branching, --niter); train its scorer with mmrec index train-tree.
    """
    from mmrec.pipelines.index import build

    config = config_from_args(args, BuildConfig, exclude=("faiss", "tree"), what="index build",
                              faiss=config_values(args, FaissConfig, exclude=("factory",)), tree=config_values(args, TreeConfig))
    info = build(config, progress=not args.json)
    measured = info["measured"]
    what = info.get("factory") or f"tree ({info['nodes']} nodes, depth {info['depth']})"
    tuned = info["tuning"]
    knob = f", {tuned['param']}={tuned['value']}" + ("" if tuned["target_reached"] else " (target NOT reached)") if tuned["param"] else ""
    return emit(args, info, (
        f"built {info['kind']} index {what} over {info['n']} vectors (dim {info['dim']}) -> {config.out}: "
        f"recall@{measured['k']} {measured['recall'][str(measured['k'])]:.3f} (target {info['config']['target_recall']}{knob}), "
        f"{measured['qps']:.0f} QPS, {measured['ms_per_query']:.2f} ms/query, built in {info['times']['build_s']:.1f} s"
    ), default=str)


@cli.command(
    "add", configs=(Options(AddConfig, required=("index", "emb")),), json_help="print the add event as JSON"
)
def _add(args: argparse.Namespace) -> int:
    """add new embedding shards to a FAISS index in place

    Add new emb-*.parquet shards to a saved FAISS index (same column and dim; keys must stay unique).
    """
    from mmrec.pipelines.index import add

    config = config_from_args(args, AddConfig, what="index add")
    event = add(config, progress=not args.json)
    return emit(args, event, f"added {event['rows']} vectors in {event['add_s']:.1f} s -> {config.index} now holds {event['n']}",
                default=str)


@cli.command(
    "search",
    arguments={"--key": dict(dest="keys", action="append", help="key of an indexed item (repeatable)")},
    configs=(Options(SearchConfig, exclude=("keys",), required=("index",)),),
    json_help="print the hits as JSON",
)
def _search(args: argparse.Namespace) -> int:
    """nearest neighbours of indexed keys or of query vectors

    Search an index by the keys of indexed items or by vectors from a .npy file.
    """
    from mmrec.pipelines.index import search

    config = config_from_args(args, SearchConfig, what="index search", keys=tuple(args.keys or ()))
    report = search(config)
    lines = [f"k {report['k_asked']} capped at {report['k']}: the index holds {report['n']} items"] if report["capped"] else []
    for i, hits in enumerate(report["results"]):
        lines.append(f"query {config.keys[i] if config.keys else i}:")
        lines.extend(f"  {hit['score']:10.4f}  {hit['key']}" for hit in hits)
    return emit(args, report, "\n".join(lines) if lines else None, default=str)


@cli.command("eval", configs=(Options(EvalConfig, required=("index",)),))
def _eval(args: argparse.Namespace) -> int:
    """recall@1/10/100 vs exact search, QPS, and a recall-vs-QPS PNG

    Evaluate an index against exact search over the embeddings it was built from.
    """
    from mmrec.pipelines.index import evaluate

    report = evaluate(config_from_args(args, EvalConfig, what="index eval"))
    recalls = "  ".join(f"recall@{k} {v:.3f}" for k, v in report["recall"].items())
    return emit(args, report, f"{report['factory'] or report['kind']} over {report['n']} vectors, {report['queries']} queries "
                f"({report['queries_from']}), {report['search_params']}:\n"
                f"  {recalls}  {report['qps']:.0f} QPS  {report['ms_per_query']:.2f} ms/query  -> {report['png']}", default=str)


@cli.command("serve", arguments={"--index": "index folder"}, configs=(ServerConfig,), json_help=None)
def _serve(args: argparse.Namespace) -> int:
    """HTTP search API over an index (loopback by default; needs mmrec[serve])

    Serve POST /search ({'vectors': [[...]], 'k': 10} or {'keys': [...]}), GET /health, GET /metrics
    (Prometheus) and OpenAPI docs at /docs, with FastAPI on uvicorn (pip install 'mmrec[serve]').
    """
    from mmrec.index.server import serve_index

    serve_index(args.index, config_from_args(args, ServerConfig, what="index serve"))
    return 0


@cli.command(
    "train-tree",
    configs=(
        Options(TrainTreeConfig, exclude=("scorer", "loop"), required=("index", "log")),
        Options(ScorerConfig, "node scorer"),
        Options(LoopConfig, "training loop", exclude=_LOOP_EXCLUDE),
    ),
    json_help="print the report",
)
def _train_tree(args: argparse.Namespace) -> int:
    """train the MISS tree's node scorer (Co-GSU + MM-GSU) from a behaviour log

    Train the node scorer of a tree built by 'mmrec index build --kind tree' on the positives of a behaviour log
    (user histories through Co-GSU and MM-GSU; user vectors from --user-emb or the mean of the history), save it
    with the tree and report recall@k of held-out positives against exhaustive scoring and baselines.
    """
    from mmrec.pipelines.index import train_tree

    config = config_from_args(args, TrainTreeConfig, exclude=("scorer", "loop"), what="index train-tree",
                              scorer=config_values(args, ScorerConfig),
                              loop={**config_values(args, LoopConfig, exclude=_LOOP_EXCLUDE), "progress": not args.json})
    report = train_tree(config)
    fit = report["fit"]
    lines = [f"trained the tree scorer of {config.index} on {report['pairs']} pairs of {report['users']} users "
             f"({fit['steps']} steps, {fit['seconds']:.1f} s, stopped: {fit['stopped']})"]
    if "recall" in report:
        figures = "  ".join(f"{name} {value:.3f}" for name, value in report["recall"].items())
        lines += [f"  recall@{report['k']} of held-out positives ({report['eval_users']} users, beam {report['beam']}): {figures}",
                  f"  beam search vs exhaustive scoring (recall vs exact): {report['recall_vs_exact']:.3f}"]
    return emit(args, report, "\n".join(lines), default=str)
