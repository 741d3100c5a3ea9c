"""The ``mmrec`` command line: thin argument parsing over the public Python functions.

Every command calls the same function a Python user calls, with the same arguments. User-facing
failures print one ``mmrec: error: ...`` line and exit with 2 (usage) or 1 (data).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from mmrec.errors import MMRecError

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def decorator(fn: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = fn
        return fn

    return decorator


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from mmrec import __version__

    parser = argparse.ArgumentParser(
        prog="mmrec",
        description="Multimodal and cross-domain representations for recommendation: "
        "encoders, embeddings, codes, indexes and rankers.",
    )
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser(
        "extract",
        help="embed every sample of webdataset shards into Parquet, resumable",
        description="Embed every item / live segment of webdataset shards with image, text and speech "
        "encoders; one emb-NAME.parquet per shard, errors-NAME.jsonl for failed samples, manifest.json. "
        "Complete shards are skipped on rerun. Under torchrun each rank takes its own shards.",
    )
    p.add_argument("--input", required=True, help="shards: 'DIR/items-{000000..000099}.tar', a glob or a folder")
    p.add_argument("--out", required=True, help="output folder")
    for modality, default in (("image", "open_clip:ViT-B-32"), ("text", "hf-text:all-MiniLM-L6-v2"), ("audio", "none")):
        p.add_argument(f"--{modality}", default=default, metavar="SPEC", help=f"{modality} encoder spec, or none (default {default})")
        p.add_argument(f"--{modality}-weights", default=None, metavar="PATH", help=f"local checkpoint for the {modality} encoder")
    p.add_argument("--fuse", default="concat", help="fusion of the modality vectors: concat, mean or none (default concat)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--num-workers", type=_positive_int, default=2, help="DataLoader workers decoding shards (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--shard-id", type=int, default=None, help="this process's part, without a launcher")
    p.add_argument("--num-shards", type=int, default=None, help="number of parts, without a launcher")
    p.add_argument("--overwrite", action="store_true", help="redo shards whose output exists")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p = sub.add_parser(
        "demo",
        help="run the chain on bundled SYNTHETIC sample data and report what each encoder recovers",
        description="Write sample data, embed every item with the image, text and speech encoders, and "
        "report how well each modality's embeddings and their fusion recover the planted topics "
        "(leave-one-out nearest-neighbour accuracy vs chance).",
    )
    p.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    p.add_argument("--items", type=_positive_int, default=240, help="number of sample items (default 240)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default="open_clip:tiny", help="image encoder spec (default open_clip:tiny, random weights)")
    p.add_argument("--image-weights", default=None, help="local checkpoint for the image encoder")
    p.add_argument("--text", default=None, help="text encoder spec (default hf-text:all-MiniLM-L6-v2, real weights)")
    p.add_argument("--audio", default="speech:tiny", help="speech encoder spec (default speech:tiny, random weights)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


@_command("sample-data")
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
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(
            f"wrote {summary['items']} items in {len(summary['item_shards'])} shard(s) and "
            f"{summary['segments']} segments in {len(summary['segment_shards'])} shard(s) to {args.out} "
            f"(SYNTHETIC, {summary['topics']} planted topics)"
        )
    return 0


@_command("extract")
def _extract(args: argparse.Namespace) -> int:
    from mmrec.pipelines.extract import extract

    specs = {m: (None if getattr(args, m).lower() == "none" else getattr(args, m)) for m in ("image", "text", "audio")}
    weights = {m: w for m in specs if (w := getattr(args, f"{m}_weights"))}
    manifest = extract(
        args.input,
        args.out,
        **specs,
        weights=weights,
        fuse=args.fuse,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        shard_id=args.shard_id,
        num_shards=args.num_shards,
        overwrite=args.overwrite,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
    elif "done" in manifest:
        run = manifest["runs"][0] if len(manifest["runs"]) == 1 else None
        print(
            f"{len(manifest['done'])}/{manifest['input_shards']} shards done, {manifest['samples']} samples, "
            f"{manifest['errors']} errors -> {args.out}"
            + (f"; this run: {run['samples']} samples in {run['elapsed_s']:.1f} s ({run['samples_per_s']:.1f}/s)" if run else "")
        )
    return 0


@_command("demo")
def _demo(args: argparse.Namespace) -> int:
    from mmrec.demo import format_report, run_demo

    report = run_demo(
        args.out,
        items=args.items,
        seed=args.seed,
        image=args.image,
        image_weights=args.image_weights,
        text=args.text,
        audio=args.audio,
        progress=not args.json,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmrec`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except MMRecError as err:
        print(f"mmrec: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
