"""`mmrec demo`: the whole chain on SYNTHETIC sample data."""

from __future__ import annotations

import argparse

from mmrec.cli._args import add_command, config_from_args, emit


def register(sub: argparse._SubParsersAction) -> None:
    from mmrec.pipelines.demo import DemoConfig

    add_command(
        sub, "demo", _demo,
        help="run the whole chain on bundled SYNTHETIC sample data and print one table",
        description="sample data -> extract -> align -> quantize -> FAISS index and MISS tree -> cross-domain "
        "user vectors -> rankers with and without the codes, cross features and the user vector; one table: "
        "stage, output folder, its key figure beside a baseline, time.",
        arguments={"--out": dict(default="demo-out", help="working folder (default demo-out)")},
        configs=(DemoConfig,),
    )


def _demo(args: argparse.Namespace) -> int:
    from mmrec.pipelines.demo import DemoConfig, format_report, run_demo

    report = run_demo(args.out, config_from_args(args, DemoConfig, what="demo"), progress=not args.json)
    return emit(args, report, format_report(report))
