"""`mmrec demo`: the whole chain on SYNTHETIC sample data."""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, config_from_args, emit
from mmrec.pipelines.demo import DemoConfig

cli = Commands()


@cli.command(
    "demo",
    arguments={"--out": dict(default="demo-out", help="working folder (default demo-out)")},
    configs=(DemoConfig,),
)
def _demo(args: argparse.Namespace) -> int:
    """run the whole chain on bundled SYNTHETIC sample data and print one table

    sample data -> extract -> align -> quantize -> FAISS index and MISS tree -> cross-domain user vectors ->
    rankers with and without the codes, cross features and the user vector; one table: stage, output folder, its
    key figure beside a baseline, time.
    """
    from mmrec.pipelines.demo import format_report, run_demo

    report = run_demo(args.out, config_from_args(args, DemoConfig, what="demo"), progress=not args.json)
    return emit(args, report, format_report(report))
