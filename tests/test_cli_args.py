"""CLI options generated from config dataclasses (mmrec.cli._args): one default, in the dataclass."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from mmrec.cli._args import Options, add_command, add_config_arguments, add_group, config_from_args, emit
from mmrec.errors import UsageError


@dataclass
class _Toy:
    epochs: int = field(default=3, metadata={"help": "passes"})
    lr: float = 0.01
    name: str | None = field(default=None, metadata={"help": "a name"})
    fanouts: tuple[int, ...] = (10, 5)
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    fast: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_config_arguments(parser, _Toy, exclude=("lr",))
    return parser


def test_defaults_and_help_come_from_the_dataclass():
    args = _parser().parse_args([])
    assert config_from_args(args, _Toy) == _Toy()
    text = _parser().format_help()
    assert "passes (default 3)" in text and "a name (default none)" in text and "(default 10,5)" in text
    assert "--lr" not in text and "--fast, --no-fast" in text


def test_values_parse_by_annotation_and_are_checked_by_the_config():
    args = _parser().parse_args(["--epochs", "7", "--name", "x", "--fanouts", "4,2,1", "--mode", "b", "--fast"])
    assert config_from_args(args, _Toy, lr=0.5) == _Toy(epochs=7, lr=0.5, name="x", fanouts=(4, 2, 1), mode="b", fast=True)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "c"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["--fanouts", "4,x"])
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        config_from_args(_parser().parse_args(["--epochs", "0"]), _Toy)


def test_every_command_has_help():
    from mmrec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert command.format_help().strip(), name


@dataclass
class _Rate:
    lr: float = 0.1


def test_add_command_declares_arguments_configs_json_and_the_handler(capsys):
    parser = argparse.ArgumentParser(prog="toy")
    group = add_group(parser.add_subparsers(dest="command", required=True), "toy", help="h", description="d")

    def run(args: argparse.Namespace) -> int:
        return emit(args, {"epochs": config_from_args(args, _Toy, exclude=("lr",)).epochs}, f"epochs {args.epochs}")

    p = add_command(group, "fit", run, help="fit it", description="Fit the toy.",
                    arguments={"--out": "output folder", "--tag": dict(default="t", help="a tag")},
                    configs=(Options(_Toy, "toy options", exclude=("lr",), required=("epochs",)),
                             Options(_Rate, dest_prefix="x_")))
    assert "toy options" in p.format_help() and "--json" in p.format_help()
    with pytest.raises(SystemExit):  # --out and --epochs are required
        parser.parse_args(["toy", "fit", "--out", "o"])
    args = parser.parse_args(["toy", "fit", "--out", "o", "--epochs", "4", "--lr", "0.5"])
    assert (args.toy_command, args.out, args.tag, args.epochs, args.x_lr) == ("fit", "o", "t", 4, 0.5)
    assert args._run(args) == 0 and capsys.readouterr().out == "epochs 4\n"
    args = parser.parse_args(["toy", "fit", "--out", "o", "--epochs", "4", "--json"])
    assert args._run(args) == 0 and capsys.readouterr().out == '{\n  "epochs": 4\n}\n'

    bare = add_command(group, "show", run, help="show it", description="Show the toy.", json_help=None)
    assert "--json" not in bare.format_help()


def test_emit_prints_json_or_the_text_or_nothing(capsys):
    assert emit(argparse.Namespace(json=True), {"path": object}, "text", default=lambda x: "?") == 0
    assert capsys.readouterr().out == '{\n  "path": "?"\n}\n'
    emit(argparse.Namespace(json=False), {}, "line 1\nline 2")
    assert capsys.readouterr().out == "line 1\nline 2\n"
    emit(argparse.Namespace(json=False), {}, None)
    assert capsys.readouterr().out == ""


def test_a_run_imports_only_the_module_of_its_command():
    """`mmrec --help` lists every command from the modules' sources without importing torch; a command
    imports its own module only; the listed help is the help the full parser has."""
    import subprocess
    import sys

    from mmrec.cli import GROUPS, _declared, build_parser

    code = ("import sys; from mmrec.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', 'torch' in sys.modules, 'mmrec.cli.rank' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sample-data" in out and "retrieve" in out
    assert out.strip().endswith("IMPORTED False False")

    full = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {name: help for group in GROUPS for name, help in _declared(group).items()}
    assert listed == {c.dest: c.help for c in full._choices_actions}
    only_rank = next(a for a in build_parser("rank")._actions if isinstance(a, argparse._SubParsersAction))
    assert "train" in only_rank.choices["rank"]._subparsers._group_actions[0].choices
    assert only_rank.choices["index"]._subparsers is None  # listed, not built
