"""`mmrec live simulate|train`: the SYNTHETIC live world and GTR."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import positive_int as _positive_int


def register(sub: argparse._SubParsersAction) -> None:
    live = sub.add_parser(
        "live",
        help="SYNTHETIC live-streaming world and the MMBee gift ranker (GTR with MFQ and GIE)",
        description="Write a SYNTHETIC live-streaming world (users, authors, drifting live segments, watch / "
        "like / comment / gift and short-video logs with planted structure) and train MMBee's GTR on it.",
    )
    lsub = live.add_subparsers(dest="live_command", metavar="ACTION", required=True)
    p = lsub.add_parser(
        "simulate",
        help="write a SYNTHETIC live behaviour log, segment tokens and (optionally) segment shards",
        description="Write live-behaviour.parquet, users/authors/segments.parquet, segment-tokens.safetensors "
        "and live.json (SYNTHETIC; see mmrec.live_sim), plus --shards segments as webdataset shards for mmrec extract.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--users", type=int, default=4000, help="users (default 4000)")
    p.add_argument("--authors", type=int, default=200, help="authors (default 200)")
    p.add_argument("--topics", type=int, default=8, help="planted content topics (default 8)")
    p.add_argument("--communities", type=int, default=8, help="planted co-gifting communities (default 8)")
    p.add_argument("--days", type=int, default=14, help="days of log (default 14)")
    p.add_argument("--shards", type=_positive_int, default=0, help="segments written as webdataset shards (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = lsub.add_parser(
        "train",
        help="train GTR (SIM + DIN; --mfq segment fusion, --gie graph expansion) on a simulator folder",
        description="Train MMBee's GTR on a mmrec live simulate folder: the first half of the time span feeds "
        "the GIE graphs, 50-80 %% trains, 80-100 %% tests. Writes gtr.safetensors, mfq.safetensors (with --mfq; "
        "what mmrec extract --fuse mfq --fusion-weights reads) and metrics.json.",
    )
    p.add_argument("--data", required=True, help="folder written by mmrec live simulate")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mfq", action="store_true", help="MFQ segment vectors of the target segment")
    p.add_argument("--gie", action="store_true", help="GIE metapath expansions and GraphCL author embeddings")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    live.set_defaults(_run=_live)


def _live(args: argparse.Namespace) -> int:
    if args.live_command == "simulate":
        from mmrec.live_sim import simulate_live

        summary = simulate_live(args.out, users=args.users, authors=args.authors, topics=args.topics,
                                communities=args.communities, days=args.days, shard_segments=args.shards, seed=args.seed)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"wrote a SYNTHETIC live world to {args.out}: {summary['live_rows']} live rows "
                  f"({summary['live_watches']} watches, {summary['gifts']} gifts = {100 * summary['gift_rate']:.2f} %), "
                  f"{summary['video_rows']} short-video rows, {summary['segments']} segments"
                  + (f", {len(summary['files']['shards'])} shard(s)" if summary["files"]["shards"] else ""))
        return 0
    from mmrec.rankers.gtr_train import train_live

    report = train_live(args.data, args.out, mfq=args.mfq, gie=args.gie, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, threads=args.threads, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2, default=lambda x: None))
    else:
        lines = [f"GTR{' +MFQ' if args.mfq else ''}{' +GIE' if args.gie else ''}: {report['parameters']:,} parameters, "
                 f"{report['train_rows']} training rows in {report['train_s']:.1f} s -> {args.out}",
                 f"{'users':<8} {'AUC':>7} {'UAUC':>7} {'GAUC':>7} {'gifts':>6}"]
        for name, m in [("all", report["test"]), *report.get("by_group", {}).items()]:
            lines.append(f"{name:<8} {m['auc']:7.4f} {m['uauc']:7.4f} {m['gauc']:7.4f} {m['positives']:6d}")
        print("\n".join(lines))
    return 0
