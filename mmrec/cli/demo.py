"""`mmrec demo`: the whole chain on SYNTHETIC sample data."""

from __future__ import annotations

import argparse
import json

from mmrec.cli._args import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from mmrec.pipelines.demo import DemoConfig

    p = sub.add_parser(
        "demo",
        help="run the whole chain on bundled SYNTHETIC sample data and print one table",
        description="sample data -> extract -> align -> quantize -> FAISS index and MISS tree -> cross-domain "
        "user vectors -> rankers with and without the codes, cross features and the user vector; one table: "
        "stage, output folder, its key figure beside a baseline, time.",
    )
    p.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    add_config_arguments(p, DemoConfig)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(_run=_demo)


def _demo(args: argparse.Namespace) -> int:
    from mmrec.pipelines.demo import DemoConfig, format_report, run_demo

    report = run_demo(args.out, config_from_args(args, DemoConfig, what="demo"), progress=not args.json)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
