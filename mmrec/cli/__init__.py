"""The ``mmrec`` command line: thin argument parsing over the public Python functions.

One module per command group (``mmrec/cli/<group>.py``), each with ``cli``, a :class:`~mmrec.cli._args.Commands` whose decorated handlers are its
parser(s) and binds the handler; every handler calls the same function a Python user calls. Options
that a job config dataclass holds are generated from its fields (:mod:`mmrec.cli._args`), so no default
is written twice. User-facing failures print one ``mmrec: error: ...`` line and exit with 2 (usage) or
1 (data): command-line mistakes (:class:`mmrec.cli._args.Parser`), :class:`~mmrec.errors.MMRecError`,
and faults of the operating system (:class:`OSError`: a read-only or full output folder, a path that is
a file), which name the path and the cause; a path that does not exist or is of the wrong kind is a
usage error (2), any other OS fault a runtime one (1).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings
from typing import Sequence

from mmrec.cli._args import Parser
from mmrec.errors import MMRecError

# command groups in --help order: module names under mmrec.cli
GROUPS = ("data", "extract", "quantize", "index", "rank", "graph", "live", "cdr", "seq", "retrieve", "demo")


def build_parser() -> argparse.ArgumentParser:
    from mmrec import __version__

    parser = Parser(
        prog="mmrec",
        description="Multimodal and cross-domain representations for recommendation: "
        "encoders, embeddings, codes, indexes and rankers.",
    )
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"mmrec.cli.{group}").cli.register(sub)
    return parser


# OS faults that mean the path given is wrong (exit 2); every other OSError is a runtime fault (exit 1)
_USAGE_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def os_error_line(err: OSError) -> tuple[str, int]:
    """``(one line naming the path and the cause, exit code)`` of an :class:`OSError`."""
    cause = " ".join((err.strerror or str(err) or type(err).__name__).split())  # Arrow's messages span lines
    line = f"{err.filename}: {cause}" if err.filename is not None else cause
    if err.filename2 is not None:
        line += f" (-> {err.filename2})"
    return line, 2 if err.errno in _USAGE_ERRNOS else 1


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
    except OSError as err:
        line, code = os_error_line(err)
        print(f"mmrec: error: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
