"""`mmrec align` and `mmrec quantize`: QARM item alignment and codes.

Every option but the paths comes from the job config dataclasses (:class:`~mmrec.pipelines.align.AlignJob`
and the configs it holds, :class:`~mmrec.pipelines.quantize.QuantizeJob`), help text and defaults included.
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, Options, config_from_args, config_values, emit
from mmrec.encoders.base import TrainableConfig
from mmrec.pipelines.align import AlignJob
from mmrec.pipelines.quantize import QuantizeJob
from mmrec.quantization.align import AlignConfig
from mmrec.quantization.pairs import PairConfig

_ALIGN_NESTED = ("weights", "trainable", "train", "pairs")


cli = Commands()


def align_job(args: argparse.Namespace):
    """The :class:`~mmrec.pipelines.align.AlignJob` that the parsed ``mmrec align`` options ask for."""
    train = config_from_args(args, AlignConfig, what="align.train")
    return config_from_args(
        args, AlignJob, exclude=_ALIGN_NESTED, what="align", train=train,
        pairs=config_from_args(args, PairConfig, exclude=("seed",), seed=train.seed, what="align.pairs"),
        trainable=config_values(args, TrainableConfig, dest_prefix="trainable_"),
    )


@cli.command(
    "align",
    arguments={
        "--log": "behaviour log (Parquet: user_id, item_id, labels)",
        "--emb": dict(default=None, help="embeddings folder from `mmrec extract` (fast path)"),
        "--input": dict(default=None, help="item shards, to align through trainable encoders (slow path)"),
        "--out": "output folder",
    },
    configs=(
        Options(AlignJob, exclude=_ALIGN_NESTED),
        Options(AlignConfig, "training (AlignConfig)"),
        Options(PairConfig, "pair mining (PairConfig; seeded by --seed)", exclude=("seed",)),
        Options(
            TrainableConfig,
            "slow path (--input): what of the encoders learns (TrainableConfig)",
            dest_prefix="trainable_",
        ),
    ),
)
def _align(args: argparse.Namespace) -> int:
    """align item embeddings with behaviour: pairs from a log, contrastive fine-tuning (QARM)

    Mine item pairs from a behaviour log (User2Item triggers among each user's latest positives, Item2Item
    Swing), then fine-tune with symmetric in-batch InfoNCE: a head over cached embeddings (--emb, fast) or
    trainable encoders over raw shards (--input with --text/--image/--audio, slow). Writes aligned emb-*.parquet
    in the layout of `mmrec extract`, pairs.parquet, align.json.
    """
    from mmrec.pipelines.align import run_align

    report = run_align(args.log, args.out, emb=args.emb, input=args.input, config=align_job(args), progress=not args.json)
    before, after = report["before"], report["after"]
    return emit(args, report, f"aligned {report['items']} items on {report['train_pairs']} pairs -> {args.out}; held-out pairs "
                f"({report['heldout_pairs']}): cosine {before.get('pair_cosine', 0):.3f} -> {after.get('pair_cosine', 0):.3f}, "
                f"gap over random pairs {before.get('gap', 0):.3f} -> {after.get('gap', 0):.3f}, "
                f"AUC {before.get('auc', 0):.3f} -> {after.get('auc', 0):.3f}")


def _option(text: str) -> tuple[str, object]:
    import yaml

    from mmrec.errors import UsageError

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--option takes KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def quantize_job(args: argparse.Namespace):
    """The :class:`~mmrec.pipelines.quantize.QuantizeJob` that the parsed ``mmrec quantize`` options ask for."""

    options = dict(_option(text) for text in args.option)
    options.update({k: v for k, v in (("niter", args.niter), ("epochs", args.epochs)) if v is not None})
    return config_from_args(args, QuantizeJob, exclude=("options",), options=options, what="quantize")


@cli.command(
    "quantize",
    arguments={
        "--emb": "embeddings folder (`mmrec extract` or `mmrec align` output)",
        "--out": "output folder",
        "--niter": dict(
            type=int,
            default=None,
            metavar="N",
            help="k-means iterations per level (rq-kmeans, balanced; default: the method's)",
        ),
        "--epochs": dict(
            type=int, default=None, metavar="N", help="RQ-VAE training epochs (default: the method's)"
        ),
        "--option": dict(
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any other field of the method's config (repeatable), e.g. --option latent_dim=16",
        ),
    },
    configs=(Options(QuantizeJob, exclude=("options",)),),
)
def _quantize(args: argparse.Namespace) -> int:
    """quantize item embeddings into codes: RQ-Kmeans, balanced, VQ or RQ-VAE (QARM, OneRec)

    Fit a quantizer on one vector column of an embeddings folder and write codebook.safetensors, codes.parquet
    (key, c1..cL), report.json (per-level usage and entropy, % unique ids, collision rate, relative
    reconstruction error) and usage.png.
    """
    from mmrec.pipelines.quantize import quantize

    job = quantize_job(args)
    report = quantize(args.emb, args.out, job, progress=not args.json)
    usage = "/".join(f"{100 * level['usage']:.0f}" for level in report["levels"])
    return emit(args, report, f"{job.method}: {report['items']} items, {len(report['levels'])} levels -> {args.out}; unique ids "
                f"{report['unique_id_pct']:.1f} %, collision rate {100 * report['collision_rate']:.1f} %, codebook usage "
                f"per level {usage} %, relative reconstruction error {report['relative_reconstruction_error']:.3f}")
