"""`mmrec graph build|expand|train|export`: MMBee GIE graphs."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser(
        "graph",
        help="MMBee GIE: gifting graphs, metapath expansion, GraphCL node embeddings",
        description="Build the U2A gifting / watching and A2A Swing graphs from a live behaviour log, expand "
        "users and authors along metapaths into a Parquet store, pre-train node embeddings with GraphCL "
        "over a sampled GraphSAGE encoder, and export them.",
    )
    gsub = graph.add_subparsers(dest="graph_command", metavar="ACTION", required=True)
    p = gsub.add_parser("build", help="graphs from behaviour log(s) into a folder (safetensors + graph.json)",
                        description="Stream live behaviour log(s) (user_id, author_id, watch, gift, gift_value) into "
                        "the U2A gifts / watches graphs and the A2A Swing graph; writes graph.safetensors and graph.json.")
    p.add_argument("--logs", required=True, nargs="+", help="Parquet log file(s), or a folder with live-behaviour.parquet")
    p.add_argument("--out", required=True, help="output graph folder")
    p.add_argument("--users", default=None, help="users.parquet: ids outside it are errors")
    p.add_argument("--authors", default=None, help="authors.parquet: author ids absent from it are errors")
    p.add_argument("--gift-weight", default="count", choices=("count", "value"), help="U2A edge weight (default count)")
    p.add_argument("--domains", nargs="+", default=None, help="count only these domains (default all)")
    p.add_argument("--swing-top-n", type=int, default=50, help="Swing partners kept per author (default 50)")
    p.add_argument("--batch-rows", type=int, default=1 << 20, help="log rows read at a time (default 1048576)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("expand", help="top-k metapath neighbours of every user / author into Parquet",
                        description="Expand every source node along metapaths (e.g. user>author>author, "
                        "author>user>author, user-watches>author>author) and keep the top-k by path-weight product.")
    p.add_argument("--graph", required=True, help="graph folder from mmrec graph build")
    p.add_argument("--metapath", action="append", default=None, help="metapath, repeatable (default user>author>author and author>user>author)")
    p.add_argument("--k", type=int, default=20, help="neighbours kept per source (default 20)")
    p.add_argument("--out", required=True, help="output Parquet (src_type, src_id, metapath, dst_ids, scores)")
    p.add_argument("--chunk-nnz", type=int, default=1 << 23, help="bound on the entries of one chunk's product: the memory knob (default 8388608)")
    p.add_argument("--raw", action="store_true", help="multiply raw edge weights instead of row-normalised ones")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("train", help="GraphCL pre-training of node embeddings on a graph folder",
                        description="Pre-train a GraphSAGE-style encoder with GraphCL (edge dropping, attribute masking, "
                        "NT-Xent) on mini-batches of sampled neighbourhoods; writes model.safetensors, "
                        "embeddings.safetensors and train.json.")
    p.add_argument("--graph", required=True, help="graph folder from mmrec graph build")
    p.add_argument("--out", required=True, help="output run folder")
    p.add_argument("--author-emb", default=None, help="author attributes: Parquet keyed by author_id, or mmrec extract output (needs --logs)")
    p.add_argument("--emb-column", default=None, help="vector column of --author-emb (default fused, or the only one)")
    p.add_argument("--logs", nargs="+", default=None, help="live log mapping segment keys to authors, for segment-keyed --author-emb")
    p.add_argument("--dim", type=int, default=64, help="embedding width (default 64)")
    p.add_argument("--fanouts", default="10,5", help="neighbours sampled per hop, comma-separated (default 10,5)")
    p.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on batches per epoch")
    p.add_argument("--batch-size", type=int, default=512, help="seed nodes per batch (default 512)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("export", help="a training run's node embeddings as Parquet",
                        description="Write node_type, node_id, vector rows for every node of a mmrec graph train run.")
    p.add_argument("--run", required=True, help="run folder from mmrec graph train")
    p.add_argument("--out", required=True, help="output Parquet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    graph.set_defaults(_run=_graph)


def _graph(args: argparse.Namespace) -> int:
    from mmrec.errors import UsageError
    from mmrec.graphs import graph_build, graph_expand, graph_export, graph_train

    if args.graph_command == "build":
        config = {"gift_weight": args.gift_weight, "domains": args.domains, "users": args.users, "authors": args.authors,
                  "swing_top_n": args.swing_top_n, "batch_rows": args.batch_rows, "progress": not args.json}
        summary = graph_build(args.logs, args.out, config=config)
        text = (f"graph of {summary['nodes']['user']} users and {summary['nodes']['author']} authors from "
                f"{summary['log_rows']} log rows in {summary['seconds']:.1f} s -> {args.out}; edges: "
                + ", ".join(f"{k.replace('__', ' ')} {v}" for k, v in summary["edges"].items()))
    elif args.graph_command == "expand":
        summary = graph_expand(args.graph, args.out, metapaths=args.metapath or ("user>author>author", "author>user>author"),
                               k=args.k, chunk_nnz=args.chunk_nnz, normalize=not args.raw, progress=not args.json)
        text = (f"expanded in {summary['seconds']:.1f} s -> {args.out}: "
                + "; ".join(f"{m}: {v['sources']} sources, {v['mean_neighbours']} neighbours each" for m, v in summary["metapaths"].items()))
    elif args.graph_command == "train":
        try:
            fanouts = tuple(int(f) for f in args.fanouts.split(","))
        except ValueError:
            raise UsageError(f"--fanouts must be comma-separated integers, got {args.fanouts!r}") from None
        config = {"dim": args.dim, "fanouts": fanouts, "epochs": args.epochs, "max_steps": args.max_steps,
                  "batch_size": args.batch_size, "lr": args.lr, "device": args.device, "seed": args.seed, "progress": not args.json}
        summary = graph_train(args.graph, args.out, author_emb=args.author_emb, emb_column=args.emb_column, logs=args.logs, config=config)
        report = summary["report"]
        text = (f"GraphCL: {report['steps']} steps in {report['seconds']:.1f} s, loss per epoch "
                + " ".join(f"{x:.3f}" for x in report["epoch_loss"]) + f"; embeddings ({summary['dim']}-d) -> {args.out}")
    else:
        summary = graph_export(args.run, args.out)
        text = f"exported {', '.join(f'{n} {t}' for t, n in summary['nodes'].items())} embeddings ({summary['dim']}-d) -> {args.out}"
    print(json.dumps(summary, indent=2) if args.json else text)
    return 0
