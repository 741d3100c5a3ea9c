"""`mmrec align` and `mmrec quantize`: QARM item alignment and codes."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import positive_int as _positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="align item embeddings with behaviour: pairs from a log, contrastive fine-tuning (QARM)",
        description="Mine item pairs from a behaviour log (User2Item triggers among each user's latest "
        "positives, Item2Item Swing), then fine-tune with symmetric in-batch InfoNCE: a head over cached "
        "embeddings (--emb, fast) or trainable encoders over raw shards (--input with --text/--image/--audio, "
        "slow). Writes aligned emb-*.parquet in the layout of `mmrec extract`, pairs.parquet, align.json.",
    )
    p.add_argument("--log", required=True, help="behaviour log (Parquet: user_id, item_id, labels)")
    p.add_argument("--emb", default=None, help="embeddings folder from `mmrec extract` (fast path)")
    p.add_argument("--input", default=None, help="item shards, to align through trainable encoders (slow path)")
    for modality in ("image", "text", "audio"):
        p.add_argument(f"--{modality}", default=None, metavar="SPEC", help=f"{modality} encoder spec for --input")
    p.add_argument("--lora-rank", type=_positive_int, default=0, help="LoRA rank on the encoders for --input (default 0: head only)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--column", default="fused", help="vector column to align and write (default fused)")
    p.add_argument("--head", default="linear", help="head over cached embeddings: linear or mlp (default linear)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training pairs (default 20)")
    p.add_argument("--batch-size", type=int, default=256, help="pairs per step (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--temperature", type=float, default=None, help="fixed InfoNCE temperature (default: learnable, from 0.2)")
    p.add_argument("--pairs", default="user2item,swing", help="pair sources (default user2item,swing)")
    p.add_argument("--positive", default="click", help="label columns that make a row positive (default click)")
    p.add_argument("--window", type=int, default=50, help="User2Item: latest positives searched for the trigger (default 50)")
    p.add_argument("--top-n", type=int, default=10, help="Swing: partners kept per item (default 10)")
    p.add_argument("--holdout", type=float, default=0.1, help="share of pairs held out to measure alignment (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p.set_defaults(_run=_align)
    p = sub.add_parser(
        "quantize",
        help="quantize item embeddings into codes: RQ-Kmeans, balanced, VQ or RQ-VAE (QARM, OneRec)",
        description="Fit a quantizer on one vector column of an embeddings folder and write "
        "codebook.safetensors, codes.parquet (key, c1..cL), report.json (per-level usage and entropy, "
        "%% unique ids, collision rate, relative reconstruction error) and usage.png.",
    )
    p.add_argument("--emb", required=True, help="embeddings folder (`mmrec extract` or `mmrec align` output)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="rq-kmeans", help="rq-kmeans, balanced, vq or rq-vae (default rq-kmeans)")
    p.add_argument("--levels", type=int, default=None, help="code levels (default 3; for vq: K nearest items, default 25)")
    p.add_argument("--codebook-size", type=int, default=None, help="codes per level (default 256; for vq: bank size, default all items)")
    p.add_argument("--column", default="fused", help="vector column (default fused)")
    p.add_argument("--dedup", default=None, choices=("suffix", "level"), help="resolve collisions: a counter column or a collision-aware extra level")
    p.add_argument("--niter", type=int, default=None, help="k-means iterations per level (rq-kmeans, balanced; default 20)")
    p.add_argument("--epochs", type=int, default=None, help="RQ-VAE training epochs (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p.set_defaults(_run=_quantize)


def _align(args: argparse.Namespace) -> int:
    from mmrec.errors import UsageError
    from mmrec.quantization import align, align_encoders

    if (args.emb is None) == (args.input is None):
        raise UsageError("give exactly one of --emb (cached embeddings) or --input (shards, through encoders)")
    config = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, holdout=args.holdout,
                  seed=args.seed, device=args.device)
    if args.temperature is not None:
        config.update(temperature=args.temperature, learn_temperature=False)
    pairs = dict(sources=tuple(s.strip() for s in args.pairs.split(",") if s.strip()),
                 positive=tuple(s.strip() for s in args.positive.split(",") if s.strip()),
                 window=args.window, top_n=args.top_n, seed=args.seed)
    if args.emb is not None:
        report = align(args.log, args.emb, args.out, column=args.column, config=dict(config, head=args.head),
                       pairs=pairs, progress=not args.json)
    else:
        report = align_encoders(args.log, args.input, args.out, image=args.image, text=args.text, audio=args.audio,
                                trainable={"lora_rank": args.lora_rank}, column=args.column, config=config,
                                pairs=pairs, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        before, after = report["before"], report["after"]
        print(f"aligned {report['items']} items on {report['train_pairs']} pairs -> {args.out}; held-out pairs "
              f"({report['heldout_pairs']}): cosine {before.get('pair_cosine', 0):.3f} -> {after.get('pair_cosine', 0):.3f}, "
              f"gap over random pairs {before.get('gap', 0):.3f} -> {after.get('gap', 0):.3f}, "
              f"AUC {before.get('auc', 0):.3f} -> {after.get('auc', 0):.3f}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from mmrec.quantization import quantize

    options = {k: v for k, v in (("niter", args.niter), ("epochs", args.epochs)) if v is not None}
    report = quantize(args.emb, args.out, method=args.method, levels=args.levels, codebook_size=args.codebook_size,
                      column=args.column, dedup=args.dedup, seed=args.seed, progress=not args.json, **options)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        usage = "/".join(f"{100 * level['usage']:.0f}" for level in report["levels"])
        print(f"{args.method}: {report['items']} items, {len(report['levels'])} levels -> {args.out}; unique ids "
              f"{report['unique_id_pct']:.1f} %, collision rate {100 * report['collision_rate']:.1f} %, codebook usage "
              f"per level {usage} %, relative reconstruction error {report['relative_reconstruction_error']:.3f}")
    return 0
