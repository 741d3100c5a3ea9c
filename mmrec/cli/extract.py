"""`mmrec extract`: batch embedding extraction over webdataset shards."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="embed every sample of webdataset shards into Parquet, resumable",
        description="Embed every item / live segment of webdataset shards with image, text and speech "
        "encoders; one emb-NAME.parquet per shard, errors-NAME.jsonl for failed samples, manifest.json. "
        "Complete shards are skipped on rerun. Under torchrun each rank takes its own shards.",
    )
    p.add_argument("--input", required=True, help="shards: 'DIR/items-{000000..000099}.tar', a glob or a folder")
    p.add_argument("--out", required=True, help="output folder")
    from mmrec.pipelines.extract import ExtractConfig

    add_config_arguments(p, ExtractConfig, exclude=("weights",))
    for modality in ("image", "text", "audio"):
        p.add_argument(f"--{modality}-weights", default=None, metavar="PATH", help=f"local checkpoint for the {modality} encoder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p.set_defaults(_run=_extract)


def _extract(args: argparse.Namespace) -> int:
    from mmrec.pipelines.extract import ExtractConfig, extract

    for m in ("image", "text", "audio"):
        if isinstance(getattr(args, m), str) and getattr(args, m).lower() == "none":
            setattr(args, m, None)
    weights = {m: w for m in ("image", "text", "audio") if (w := getattr(args, f"{m}_weights"))}
    config = config_from_args(args, ExtractConfig, exclude=("weights",), weights=weights, what="extract config")
    manifest = extract(args.input, args.out, config, progress=not args.json)
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
