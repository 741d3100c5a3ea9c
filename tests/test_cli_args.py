"""CLI options generated from config dataclasses (mmrec.cli._args): one default, in the dataclass."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from mmrec.cli._args import add_config_arguments, config_from_args
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
