"""SYNTHETIC live-streaming world and the MMBee gift ranker (GTR with MFQ and GIE)

Write a SYNTHETIC live-streaming world (users, authors, drifting live segments, watch / like / comment / gift
and short-video logs with planted structure) and train MMBee's GTR on it.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mmrec.cli._args import (
    Commands,
    Options,
    config_from_args,
    config_values,
    emit,
    positive_int,
)
from mmrec.pipelines.live import LiveTrainConfig
from mmrec.rankers.gtr_data import GTRDataConfig
from mmrec.synthetic.live_sim import LiveSimConfig

_TRAIN_EXCLUDED = ("mfq_options", "model", "samples")  # dicts and the nested data config: YAML (--config) only


cli = Commands("live", __doc__)


def _given(args: argparse.Namespace, parser_defaults: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The values among ``names`` that differ from the option defaults (so a --config file keeps the rest)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) != parser_defaults.get(n)}


@cli.command(
    "simulate",
    arguments={
        "--out": "output folder",
        "--shards": dict(
            dest="shard_segments",
            type=positive_int,
            default=argparse.SUPPRESS,
            metavar="N",
            help="same as --shard-segments",
        ),
    },
    configs=(LiveSimConfig,),
    json_help="print the summary as JSON",
)
def _simulate(args: argparse.Namespace) -> int:
    """write a SYNTHETIC live behaviour log, segment tokens and (optionally) segment shards

    Write live-behaviour.parquet, users/authors/segments.parquet, segment-tokens.safetensors and live.json
    (SYNTHETIC; see mmrec.synthetic.live_sim), plus --shards segments as webdataset shards for mmrec extract.
    """
    from mmrec.synthetic.live_sim import simulate_live

    summary = simulate_live(args.out, config_from_args(args, LiveSimConfig, what="live simulator"))
    return emit(args, summary, f"wrote a SYNTHETIC live world to {args.out}: {summary['live_rows']} live rows "
                f"({summary['live_watches']} watches, {summary['gifts']} gifts = {100 * summary['gift_rate']:.2f} %), "
                f"{summary['video_rows']} short-video rows, {summary['segments']} segments"
                + (f", {len(summary['files']['shards'])} shard(s)" if summary["files"]["shards"] else ""))


@cli.command(
    "train",
    arguments={
        "--data": "folder written by mmrec live simulate",
        "--out": "output folder",
        "--config": dict(
            default=None, metavar="YAML", help="LiveTrainConfig fields; options given here override it"
        ),
    },
    configs=(Options(LiveTrainConfig, exclude=_TRAIN_EXCLUDED), Options(GTRDataConfig, "time split and sequences")),
)
def _train(args: argparse.Namespace) -> int:
    """train GTR (SIM + DIN; --mfq segment fusion, --gie graph expansion) on a simulator folder

    Train MMBee's GTR on a mmrec live simulate folder: by default the first half of the time span feeds the GIE
    graphs, 50-80 % trains, 80-100 % tests (--train-start, --train-end). Writes the run folder (model.safetensors,
    config.json, metrics.json) and mfq.safetensors (with --mfq; what mmrec extract --fuse mfq --fusion-weights reads).
    """
    from mmrec.config import build_config, replace_config
    from mmrec.pipelines.live import train_live

    if args.config is None:
        config = config_from_args(args, LiveTrainConfig, exclude=_TRAIN_EXCLUDED, what="live train",
                                  samples=config_values(args, GTRDataConfig))
    else:  # the file, then the options given on the command line
        base = build_config(LiveTrainConfig, args.config, "live train")
        defaults = {f.name: f.default for f in dataclasses.fields(LiveTrainConfig) if f.name not in _TRAIN_EXCLUDED}
        samples = {f.name: f.default for f in dataclasses.fields(GTRDataConfig)}
        config = replace_config(base, "live train", **_given(args, defaults, list(defaults)), samples=replace_config(
            base.samples, "live train.samples", **_given(args, samples, list(samples))))
    report = train_live(args.data, args.out, config, progress=not args.json)
    lines = [f"GTR{' +MFQ' if config.mfq else ''}{' +GIE' if config.gie else ''}: {report['parameters']:,} parameters, "
             f"{report['train_rows']} training rows in {report['train_s']:.1f} s on {report['device']} -> {args.out}",
             f"{'users':<8} {'AUC':>7} {'UAUC':>7} {'GAUC':>7} {'gifts':>6}"]
    for name, m in [("all", report["test"]), *report.get("by_group", {}).items()]:
        lines.append(f"{name:<8} {m['auc']:7.4f} {m['uauc']:7.4f} {m['gauc']:7.4f} {m['positives']:6d}")
    return emit(args, report, "\n".join(lines), default=lambda x: None)
