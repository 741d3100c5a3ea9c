"""MMBee GIE: gifting graphs, metapath expansion, GraphCL node embeddings

Build the U2A gifting / watching and A2A Swing graphs from a live behaviour log, expand users and authors along
metapaths into a Parquet store, pre-train node embeddings with GraphCL over a sampled GraphSAGE encoder, and
export them.
"""

from __future__ import annotations

import argparse
import dataclasses

from mmrec.cli._args import Commands, Options, config_from_args, emit
from mmrec.graphs.build import GraphConfig
from mmrec.graphs.graphcl import GraphCLConfig
from mmrec.pipelines.graph import GraphExpandConfig
from mmrec.threads import THREADS_HELP

_JSON_HELP = "print the summary as JSON"


def _metapath_default() -> str:
    (f,) = [f for f in dataclasses.fields(GraphExpandConfig) if f.name == "metapaths"]
    return " and ".join(f.default)


cli = Commands("graph", __doc__)


@cli.command(
    "build",
    arguments={
        "--logs": dict(
            required=True, nargs="+", help="Parquet log file(s), or a folder with live-behaviour.parquet"
        ),
        "--out": "output graph folder",
    },
    configs=(Options(GraphConfig, exclude=("progress",)),),
    json_help=_JSON_HELP,
)
def _build(args: argparse.Namespace) -> int:
    """graphs from behaviour log(s) into a folder (safetensors + graph.json)

    Stream live behaviour log(s) (user_id, author_id, watch, gift, gift_value) into the U2A gifts / watches
    graphs and the A2A Swing graph; writes graph.safetensors and graph.json.
    """
    from mmrec.pipelines.graph import graph_build

    config = config_from_args(args, GraphConfig, exclude=("progress",), what="graph config", progress=not args.json)
    summary = graph_build(args.logs, args.out, config=config)
    return emit(args, summary, f"graph of {summary['nodes']['user']} users and {summary['nodes']['author']} authors from "
                f"{summary['log_rows']} log rows in {summary['seconds']:.1f} s -> {args.out}; edges: "
                + ", ".join(f"{k.replace('__', ' ')} {v}" for k, v in summary["edges"].items()))


@cli.command(
    "expand",
    arguments={
        "--graph": "graph folder from mmrec graph build",
        "--out": "output Parquet (src_type, src_id, metapath, dst_ids, scores)",
        "--metapath": dict(
            dest="metapaths",
            action="append",
            default=None,
            help=f"metapath, repeatable (default {_metapath_default()})",
        ),
    },
    configs=(Options(GraphExpandConfig, exclude=("metapaths", "progress")),),
    json_help=_JSON_HELP,
)
def _expand(args: argparse.Namespace) -> int:
    """top-k metapath neighbours of every user / author into Parquet

    Expand every source node along metapaths (e.g. user>author>author, author>user>author, user-
    watches>author>author) and keep the top-k by path-weight product.
    """
    from mmrec.pipelines.graph import graph_expand

    extra = {"metapaths": tuple(args.metapaths)} if args.metapaths else {}
    config = config_from_args(args, GraphExpandConfig, exclude=("metapaths", "progress"), what="graph expand config",
                              progress=not args.json, **extra)
    summary = graph_expand(args.graph, args.out, config=config)
    return emit(args, summary, f"expanded in {summary['seconds']:.1f} s -> {args.out}: " + "; ".join(
        f"{m}: {v['sources']} sources, {v['mean_neighbours']} neighbours each" for m, v in summary["metapaths"].items()))


@cli.command(
    "train",
    arguments={
        "--graph": "graph folder from mmrec graph build",
        "--out": "output run folder",
        "--author-emb": dict(
            default=None,
            nargs="+",
            metavar="PATH",
            help="author attributes: Parquet keyed by author_id, or mmrec extract output (a folder of "
            "emb-*.parquet, files or a glob; segment-keyed, needs --logs)",
        ),
        "--emb-column": dict(default=None, help="vector column of --author-emb (default fused, or the only one)"),
        "--logs": dict(
            nargs="+",
            default=None,
            metavar="PATH",
            help="maps segment keys to authors for segment-keyed --author-emb: the live log (or its folder) "
            "or segments.parquet",
        ),
        "--threads": dict(type=int, default=None, metavar="N", help=THREADS_HELP),
    },
    configs=(Options(GraphCLConfig, exclude=("edge_types", "progress")),),
    json_help=_JSON_HELP,
)
def _train(args: argparse.Namespace) -> int:
    """GraphCL pre-training of node embeddings on a graph folder

    Pre-train a GraphSAGE-style encoder with GraphCL (edge dropping, attribute masking, NT-Xent) on mini-batches
    of sampled neighbourhoods; writes a run folder: model.safetensors, config.json, metrics.json and embeddings.safetensors.
    """
    from mmrec.pipelines.graph import graph_train

    config = config_from_args(args, GraphCLConfig, exclude=("edge_types", "progress"), what="GraphCL config",
                              progress=not args.json)
    author_emb = args.author_emb[0] if args.author_emb and len(args.author_emb) == 1 else args.author_emb
    summary = graph_train(args.graph, args.out, author_emb=author_emb, emb_column=args.emb_column, logs=args.logs,
                          config=config, threads=args.threads)
    report = summary["report"]
    return emit(args, summary, f"GraphCL: {report['steps']} steps in {report['seconds']:.1f} s, loss per epoch "
                + " ".join(f"{x:.3f}" for x in report["epoch_loss"]) + f"; embeddings ({summary['dim']}-d) -> {args.out}")


@cli.command(
    "export",
    arguments={"--run": "run folder from mmrec graph train", "--out": "output Parquet"},
    json_help=_JSON_HELP,
)
def _export(args: argparse.Namespace) -> int:
    """a training run's node embeddings as Parquet

    Write node_type, node_id, vector rows for every node of a mmrec graph train run.
    """
    from mmrec.pipelines.graph import graph_export

    summary = graph_export(args.run, args.out)
    return emit(args, summary, f"exported {', '.join(f'{n} {t}' for t, n in summary['nodes'].items())} embeddings "
                f"({summary['dim']}-d) -> {args.out}")
