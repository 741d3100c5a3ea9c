"""`mmrec sample-data`: SYNTHETIC webdataset shards and a behaviour log."""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, emit
from mmrec.cli._args import positive_int as _positive_int

cli = Commands()


@cli.command(
    "sample-data",
    arguments={
        "--out": "output folder",
        "--items": dict(type=_positive_int, default=200, help="number of items (default 200)"),
        "--segments": dict(type=_positive_int, default=40, help="number of live segments (default 40)"),
        "--seed": dict(type=int, default=0, help="random seed; same seed, same data (default 0)"),
        "--topics": dict(type=int, default=8, help="number of planted topics (default 8)"),
        "--shard-size": dict(type=int, default=100, help="samples per tar shard (default 100)"),
        "--users": dict(
            type=_positive_int,
            default=100,
            help="users in the SYNTHETIC behaviour log behaviour.parquet; 0 = no log (default 100)",
        ),
    },
    json_help="print the summary as JSON",
)
def _sample_data(args: argparse.Namespace) -> int:
    """write SYNTHETIC webdataset shards (items and live segments) with planted topics

    Write SYNTHETIC webdataset shards of items (cover, title, audio, json) and live segments (frames, comments,
    speech, json) whose content follows planted latent topics, so later stages can be checked for recovering
    them.
    """
    from mmrec.synthetic.sample_data import write_sample_data

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
    return emit(args, summary, (
        f"wrote {summary['items']} items in {len(summary['item_shards'])} shard(s) and "
        f"{summary['segments']} segments in {len(summary['segment_shards'])} shard(s) to {args.out} "
        + (f"and a behaviour log of {summary['users']} users ({summary['behaviour_rows']} rows) " if summary.get("users") else "")
        + f"(SYNTHETIC, {summary['topics']} planted topics)"
    ), default=str)
