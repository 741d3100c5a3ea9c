"""Command-line options generated from config dataclasses, so a default lives in one place.

:func:`add_config_arguments` adds one ``--flag`` per field of a config dataclass: the type from the
annotation (``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``, ``tuple[...]`` comma-separated,
``X | None``), ``help``, ``choices``, ``metavar``, ``aliases`` (more flags) and ``default_text`` (how to print a default such as
``""``) from the field's ``metadata``, and the default from the field itself, printed in the help.
:func:`config_from_args` reads the values back into the dataclass
(through :func:`mmrec.config.build_config`, so ``__post_init__`` checks them).

Every command is declared the same way, by decorating its handler with :meth:`Commands.command`: the
handler's docstring is the command's help (first paragraph, one line in ``mmrec GROUP --help``) and
description (the rest, in ``mmrec GROUP ACTION --help``); the decorator names the plain options and the
config dataclasses (:class:`Options`) whose fields become options, and ``--json``. A group's help and
description are its module's docstring. :meth:`Commands.register` builds the parsers with
:func:`add_group` and :func:`add_command`; a handler ends with :func:`emit`, the report as JSON or its
text line(s).

:class:`Parser` is the parser class of every command: a command-line mistake is one line (the bad
option or command, the closest valid one, where ``--help`` is) and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from mmrec.config import build_config

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit code 2:
    ``mmrec extract: error: unknown option --inptu; did you mean --input? (mmrec extract --help)``.

    An unknown option is named even when a required option is missing too (argparse would only
    report the missing one), and a command refuses unknown options itself, so the line names that
    command's closest option rather than the top level's."""

    _argv: Sequence[str] = ()

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        self._argv = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a command: its extras are its own unknown options
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def _unknown_option(self) -> str | None:
        """The first option string in the arguments that no option of this parser takes (abbreviations
        argparse accepts count as known), or None."""
        known = list(self._option_string_actions)
        for token in self._argv:
            if token == "--" or (self._subparsers is not None and not token.startswith("-")):
                break  # after a command name the arguments are that command's
            if not token.startswith("-") or token == "-" or self._negative_number_matcher.match(token):
                continue
            flag = token.split("=", 1)[0]
            if flag in known or (self.allow_abbrev and flag.startswith("--") and any(k.startswith(flag) for k in known)):
                continue
            return flag
        return None

    def _suggest(self, word: str, choices: Iterable[str]) -> str:
        close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
        return f"; did you mean {close[0]}?" if close else ""

    def error(self, message: str) -> NoReturn:
        unknown = self._unknown_option()
        invalid = re.search(r"invalid choice: '([^']*)'", message)
        if unknown is not None:
            message = f"unknown option {unknown}" + self._suggest(unknown, [k for k in self._option_string_actions if k.startswith("--")])
        elif invalid and self._subparsers is not None and message.startswith(f"argument {self._subparsers_name()}"):
            message = f"unknown command {invalid.group(1)!r}" + self._suggest(invalid.group(1), self._commands())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _commands(self) -> list[str]:
        return [name for action in self._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices]

    def _subparsers_name(self) -> str:
        (action,) = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return argparse._get_action_name(action) or ""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _base(hint: Any) -> tuple[Any, bool]:
    """``(type without None, optional)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return hint, False


def _sequence(item: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, got {text!r}") from None

    parse.__name__ = f"comma-separated {item.__name__}"
    return parse


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                         exclude: Iterable[str] = (), required: Iterable[str] = (), prefix: str = "",
                         dest_prefix: str = "") -> None:
    """One option per init field of dataclass ``cls`` (``--batch-size`` for ``batch_size``); fields
    in ``exclude`` are left to the caller; ``required`` have no default on the command line."""
    exclude, required = set(exclude), set(required)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in exclude:
            continue
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        dest = f"{dest_prefix}{f.name}"
        hint, optional = _base(hints[f.name])
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        text = meta.get("help", f.name.replace("_", " "))
        shown = meta.get("default_text", "unset" if default is None and hint is bool else
                         "on" if default is True else "off" if default is False else _show(default))
        kwargs: dict[str, Any] = {"dest": dest}
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            text += f" (default {shown})"
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if hint is bool:
            parser.add_argument(flag, *meta.get("aliases", ()), action=argparse.BooleanOptionalAction, help=text.replace("%", "%%"), **kwargs)
            continue
        origin = typing.get_origin(hint)
        if origin in (tuple, list):
            item = (typing.get_args(hint) or (str,))[0]
            kwargs["type"] = _sequence(item if item in (int, float, str) else str)
        elif hint in (int, float, str):
            kwargs["type"] = hint
            if hint is not str:
                kwargs.setdefault("metavar", "N" if hint is int else "X")
        parser.add_argument(flag, *meta.get("aliases", ()), help=text.replace("%", "%%"), **kwargs)


def config_values(args: argparse.Namespace, cls: type, *, exclude: Iterable[str] = (), dest_prefix: str = "") -> dict[str, Any]:
    """The values of ``cls``'s fields that :func:`add_config_arguments` put on ``args``."""
    exclude = set(exclude)
    return {f.name: getattr(args, f"{dest_prefix}{f.name}") for f in dataclasses.fields(cls)
            if f.init and f.name not in exclude and hasattr(args, f"{dest_prefix}{f.name}")}


def config_from_args(args: argparse.Namespace, cls: type[T], *, exclude: Iterable[str] = (), dest_prefix: str = "",
                     what: str = "", **extra: Any) -> T:
    """``cls`` built from the options on ``args`` (plus ``extra`` fields), checked like any config."""
    return build_config(cls, {**config_values(args, cls, exclude=exclude, dest_prefix=dest_prefix), **extra}, what)


def overlay_given(base: T, given: T, what: str = "") -> T:
    """``base`` (a ``--config`` file's config) with the fields of ``given`` (built from the command line)
    that differ from their defaults, nested configs field by field: the file, then the options given."""
    from mmrec.config import replace_config

    default = type(given)()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(given):
        value = getattr(given, f.name)
        if not f.init:
            continue
        if dataclasses.is_dataclass(value):
            changes[f.name] = overlay_given(getattr(base, f.name), value, f"{what}.{f.name}" if what else f.name)
        elif value != getattr(default, f.name):
            changes[f.name] = value
    return replace_config(base, what, **changes)


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of config dataclass ``cls`` on a command (the keywords of :func:`add_config_arguments`);
    under the heading ``title`` when given."""

    cls: type
    title: str | None = None
    exclude: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    dest_prefix: str = ""
    prefix: str = ""  # of the flags (``--gen-dim``), where two configs of one command share field names


def add_group(sub: argparse._SubParsersAction, name: str, *, help: str, description: str) -> argparse._SubParsersAction:
    """The parser of command group ``mmrec NAME ACTION``; returns its subparsers (``args.NAME_command``)."""
    group = sub.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_command(sub: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int], *, help: str,
                description: str, arguments: Mapping[str, str | dict[str, Any]] | None = None, configs: Iterable[type | Options] = (),
                json_help: str | None = "print the report as JSON") -> argparse.ArgumentParser:
    """The parser of command ``NAME`` bound to handler ``run``: first ``arguments`` (flag -> help of a
    required option, or flag -> ``add_argument`` keywords), then the options of ``configs`` (dataclasses or
    :class:`Options`), then ``--json`` unless ``json_help`` is None. Returns the parser, for more options."""
    parser = sub.add_parser(name, help=help, description=description)
    for flag, spec in (arguments or {}).items():
        parser.add_argument(flag, **({"required": True, "help": spec} if isinstance(spec, str) else spec))
    for options in configs:
        options = options if isinstance(options, Options) else Options(options)
        add_config_arguments(parser.add_argument_group(options.title) if options.title else parser, options.cls,
                             exclude=options.exclude, required=options.required, prefix=options.prefix,
                             dest_prefix=options.dest_prefix)
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)
    parser.set_defaults(_run=run)
    return parser


def doc_parts(doc: str | None) -> tuple[str, str]:
    """``(help, description)`` of a docstring: its first paragraph on one line, and the other paragraphs
    (the first one again when there are none)."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n") if p.strip()] or [""]
    return paragraphs[0], " ".join(paragraphs[1:]) or paragraphs[0]


class Commands:
    """The commands one CLI module declares by decorating their handlers with :meth:`command`; under
    ``mmrec GROUP ACTION`` when ``group`` is given (its help and description from ``doc``, the module's
    docstring), else top-level commands."""

    def __init__(self, group: str | None = None, doc: str | None = None) -> None:
        self.group, self.doc = group, doc
        self._commands: list[tuple[str, Callable[[argparse.Namespace], int], dict[str, Any]]] = []

    def command(self, name: str, *, arguments: Mapping[str, str | dict[str, Any]] | None = None,
                configs: Iterable[type | Options] = (), json_help: str | None = "print the report as JSON"):
        """Decorator: the handler becomes command ``NAME`` (the keywords of :func:`add_command`; help and
        description from the handler's docstring, :func:`doc_parts`)."""
        def decorator(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
            self._commands.append((name, run, dict(arguments=arguments, configs=tuple(configs), json_help=json_help)))
            return run
        return decorator

    def register(self, sub: argparse._SubParsersAction) -> None:
        """Add this module's parsers (its group, then each command) to ``sub``."""
        if self.group is not None:
            help, description = doc_parts(self.doc)
            sub = add_group(sub, self.group, help=help, description=description)
        for name, run, keywords in self._commands:
            help, description = doc_parts(run.__doc__)
            add_command(sub, name, run, help=help, description=description, **keywords)


def emit(args: argparse.Namespace, report: Any, text: str | None, *, default: Callable[[Any], Any] | None = None) -> int:
    """Print ``report`` as JSON under ``--json`` (``default`` for what JSON cannot hold), else ``text``
    (nothing when None); the exit code 0. Under torchrun only rank 0 prints."""
    if os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:
        print(json.dumps(report, indent=2, default=default))
    elif text is not None:
        print(text)
    return 0
