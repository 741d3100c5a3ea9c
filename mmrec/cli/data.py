"""`mmrec sample-data`: SYNTHETIC webdataset shards and a behaviour log."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import positive_int as _positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-data",
        help="write SYNTHETIC webdataset shards (items and live segments) with planted topics",
        description="Write SYNTHETIC webdataset shards of items (cover, title, audio, json) and live "
        "segments (frames, comments, speech, json) whose content follows planted latent topics, so "
        "later stages can be checked for recovering them.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--items", type=_positive_int, default=200, help="number of items (default 200)")
    p.add_argument("--segments", type=_positive_int, default=40, help="number of live segments (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    p.add_argument("--topics", type=int, default=8, help="number of planted topics (default 8)")
    p.add_argument("--shard-size", type=int, default=100, help="samples per tar shard (default 100)")
    p.add_argument("--users", type=_positive_int, default=100,
                   help="users in the SYNTHETIC behaviour log behaviour.parquet; 0 = no log (default 100)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p.set_defaults(_run=_sample_data)


def _sample_data(args: argparse.Namespace) -> int:
    from mmrec.sample_data import write_sample_data

    summary = write_sample_data(
        args.out,
        items=args.items,
        segments=args.segments,
        seed=args.seed,
        topics=args.topics,
        shard_size=args.shard_size,
        progress=not args.json,
        users=args.users if args.items else 0,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(
            f"wrote {summary['items']} items in {len(summary['item_shards'])} shard(s) and "
            f"{summary['segments']} segments in {len(summary['segment_shards'])} shard(s) to {args.out} "
            + (f"and a behaviour log of {summary['users']} users ({summary['behaviour_rows']} rows) " if summary.get("users") else "")
            + f"(SYNTHETIC, {summary['topics']} planted topics)"
        )
    return 0
