"""`mmrec extract`: batch embedding extraction over webdataset shards."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import positive_int as _positive_int


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
    for modality, default in (("image", "open_clip:ViT-B-32"), ("text", "hf-text:all-MiniLM-L6-v2"), ("audio", "none")):
        p.add_argument(f"--{modality}", default=default, metavar="SPEC", help=f"{modality} encoder spec, or none (default {default})")
        p.add_argument(f"--{modality}-weights", default=None, metavar="PATH", help=f"local checkpoint for the {modality} encoder")
    p.add_argument("--fuse", default="concat", help="fusion of the modality vectors: concat, mean, mfq or none (default concat)")
    p.add_argument("--fusion-weights", default=None, metavar="PATH", help="trained fuser weights (a safetensors file from MFQ training; --fuse mfq)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--num-workers", type=_positive_int, default=2, help="DataLoader workers decoding shards (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto = autocast on CUDA, float32 on CPU; bf16 on CPU = bfloat16 weights (faster on "
                   "CPUs with AVX512-BF16/AMX; vectors agree to cosine ~0.9999); fp16 = CUDA only (default auto)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoders: a one-off compile of tens of seconds, then faster batches (long jobs)")
    p.add_argument("--shard-id", type=int, default=None, help="this process's part, without a launcher")
    p.add_argument("--num-shards", type=int, default=None, help="number of parts, without a launcher")
    p.add_argument("--overwrite", action="store_true", help="redo shards whose output exists")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p.set_defaults(_run=_extract)


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
        fusion_weights=args.fusion_weights,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
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
