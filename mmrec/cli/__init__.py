"""The ``mmrec`` command line: thin argument parsing over the public Python functions.

One module per command group (``mmrec/cli/<group>.py``), each with ``register(sub)`` that adds its
parser(s) and binds the handler; every handler calls the same function a Python user calls. Options
that a job config dataclass holds are generated from its fields (:mod:`mmrec.cli._args`), so no default
is written twice. User-facing failures print one ``mmrec: error: ...`` line and exit with 2 (usage) or
1 (data).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence

from mmrec.errors import MMRecError

# command groups in --help order: module names under mmrec.cli
GROUPS = ("data", "extract", "quantize", "index", "rank", "graph", "live", "cdr", "seq", "retrieve", "demo")


def build_parser() -> argparse.ArgumentParser:
    from mmrec import __version__

    parser = argparse.ArgumentParser(
        prog="mmrec",
        description="Multimodal and cross-domain representations for recommendation: "
        "encoders, embeddings, codes, indexes and rankers.",
    )
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"mmrec.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmrec`` command; returns the exit code."""
    # torch-geometric scripts a helper with torch.jit.script when imported, and torch 2.14 warns about
    # that on every `cdr` / `graph` / `live` run; nothing a user of the command can act on.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except MMRecError as err:
        print(f"mmrec: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
