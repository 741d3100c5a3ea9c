"""The ``mmrec align`` job: its config (one default, in the dataclasses) and its errors."""

from __future__ import annotations

import dataclasses

import pytest

from mmrec.cli import build_parser, main
from mmrec.cli._args import _show
from mmrec.cli.quantize import align_job
from mmrec.encoders.base import TrainableConfig
from mmrec.errors import UsageError
from mmrec.pipelines.align import AlignJob, align, align_encoders, run_align
from mmrec.quantization.align import AlignConfig
from mmrec.quantization.pairs import PairConfig

SECTIONS = [(AlignJob, ("weights", "trainable", "train", "pairs")), (AlignConfig, ()), (PairConfig, ("seed",)),
            (TrainableConfig, ())]


def test_align_help_shows_every_config_default(capsys):
    with pytest.raises(SystemExit):
        main(["align", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrap argparse's lines
    for cls, exclude in SECTIONS:
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = ("on" if default else "off") if isinstance(default, bool) else _show(default)
            assert f"--{f.name.replace('_', '-')}" in text
            assert f"{f.metadata['help']} (default {shown})" in text, f"{cls.__name__}.{f.name}"


def test_align_cli_defaults_are_the_dataclass_defaults():
    args = build_parser().parse_args(["align", "--log", "l.parquet", "--emb", "e", "--out", "o"])
    assert align_job(args) == AlignJob()
    args = build_parser().parse_args(["align", "--log", "l", "--input", "s", "--out", "o", "--text", "hf-text:tiny",
                                      "--epochs", "3", "--no-learn-temperature", "--sources", "swing", "--lora-rank", "2",
                                      "--seed", "7"])
    job = align_job(args)
    assert job.text == "hf-text:tiny" and job.trainable == TrainableConfig(lora_rank=2)
    assert job.train == AlignConfig(epochs=3, learn_temperature=False, seed=7)
    assert job.pairs == PairConfig(sources=("swing",), seed=7)  # one --seed seeds the whole job


@pytest.mark.parametrize("config, message", [
    ({"train": {"epochz": 3}}, "align.train: unknown field 'epochz'; known: head, out_dim"),
    ({"pairs": {"windows": 3}}, "align.pairs: unknown field 'windows'; known: sources, positive"),
    ({"colum": "fused"}, "align: unknown field 'colum'; known: column, image"),
    ({"train": {"epochs": "many"}}, "align.train.epochs: expected an integer, got 'many'"),
])
@pytest.mark.parametrize("job", [align, align_encoders])
def test_unknown_or_wrong_config_key_is_one_usage_error(tmp_path, job, config, message):
    with pytest.raises(UsageError) as err:  # before any file is read
        job(tmp_path / "no-log.parquet", tmp_path / "nothing", tmp_path / "out", config, progress=False)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_yaml_config_and_overrides(tmp_path):
    (tmp_path / "align.yaml").write_text("train:\n  epochs: 2\n  head: mlp\npairs:\n  window: 5\n  lr: 1\n")
    with pytest.raises(UsageError, match="align.pairs: unknown field 'lr'"):
        run_align("l", "o", emb="e", config=tmp_path / "align.yaml")
    with pytest.raises(UsageError, match="unknown alignment head 'gru'"):
        align("l", "e", "o", train={"head": "gru"})


def test_cli_unknown_and_conflicting_options_are_one_line(tmp_path, capsys):
    assert main(["align", "--log", "l", "--emb", "e", "--out", str(tmp_path / "o"), "--text", "hf-text:tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "encoder specs (text) are for --input" in err[0]
    assert main(["align", "--log", "l", "--emb", "e", "--out", str(tmp_path / "o"), "--sources", "cooc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pair sources must be among" in err[0]
