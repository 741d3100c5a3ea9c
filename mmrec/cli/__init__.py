"""The ``mmrec`` command line: thin argument parsing over the public Python functions.

One module per command group (``mmrec/cli/<group>.py``), each with ``cli``, a
:class:`~mmrec.cli._args.Commands` that its decorated handlers join; a run imports only the module of
the command it names. Every handler calls the same function a Python user calls. Options
that a job config dataclass holds are generated from its fields (:mod:`mmrec.cli._args`), so no default
is written twice. User-facing failures print one ``mmrec: error: ...`` line and exit with 2 (usage) or
1 (data): command-line mistakes (:class:`mmrec.cli._args.Parser`), :class:`~mmrec.errors.MMRecError`,
and faults of the operating system (:class:`OSError`: a read-only or full output folder, a path that is
a file), which name the path and the cause; a path that does not exist or is of the wrong kind is a
usage error (2), any other OS fault a runtime one (1).
"""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from mmrec.cli._args import Parser, doc_parts
from mmrec.errors import MMRecError

# command groups in --help order: module names under mmrec.cli
GROUPS = ("data", "extract", "quantize", "codes", "index", "rank", "graph", "live", "cdr", "seq", "retrieve", "tune", "demo")


def _declared(module: str) -> dict[str, str]:
    """The top-level commands a CLI module declares, ``{name: help}``, read from its source without
    importing it (so ``mmrec --help`` and each command import only what they use): its group
    (``cli = Commands("GROUP", __doc__)``, help from the module docstring) or its ``@cli.command``
    handlers (help from their docstrings)."""
    tree = ast.parse(Path(importlib.util.find_spec(f"mmrec.cli.{module}").origin).read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "Commands" and node.value.args):
            return {node.value.args[0].value: doc_parts(ast.get_docstring(tree))[0]}
    return {d.args[0].value: doc_parts(ast.get_docstring(node))[0]
            for node in tree.body if isinstance(node, ast.FunctionDef)
            for d in node.decorator_list
            if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mmrec`` parser. With ``command`` (the first word of the command line) only the module that
    declares it is imported and gets its full parsers; the other commands are listed with their help
    only ("" imports none: ``mmrec --help``). Without it every module is imported (every parser complete)."""
    from mmrec import __version__

    parser = Parser(
        prog="mmrec",
        description="Multimodal and cross-domain representations for recommendation: "
        "encoders, embeddings, codes, indexes and rankers.",
    )
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        declared = _declared(group)
        if command is None or command in declared:
            importlib.import_module(f"mmrec.cli.{group}").cli.register(sub)
        else:
            for name, help in declared.items():
                sub.add_parser(name, help=help)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((word for word in argv if not word.startswith("-")), ""))
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
