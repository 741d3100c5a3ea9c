"""`mmrec extract`: batch embedding extraction over webdataset shards."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

from mmrec.cli._args import Commands, Options, config_from_args, emit
from mmrec.pipelines.extract import ExtractConfig

_MODALITIES = ("image", "text", "audio")


cli = Commands()


@contextlib.contextmanager
def _one_line_weight_warnings() -> Iterator[None]:
    """Print RandomWeightsWarning as one ``mmrec: warning:`` line; other warnings as usual."""
    from mmrec.encoders import RandomWeightsWarning

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RandomWeightsWarning):
            print(f"mmrec: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", RandomWeightsWarning)
        warnings.showwarning = showwarning
        yield


@cli.command(
    "extract",
    arguments={
        "--input": "shards: 'DIR/items-{000000..000099}.tar', a glob or a folder",
        "--out": "output folder",
        **{
            f"--{m}-weights": dict(default=None, metavar="PATH", help=f"local checkpoint for the {m} encoder")
            for m in _MODALITIES
        },
    },
    configs=(Options(ExtractConfig, exclude=("weights",)),),
    json_help="print the manifest as JSON",
)
def _extract(args: argparse.Namespace) -> int:
    """embed every sample of webdataset shards into Parquet, resumable

    Embed every item / live segment of webdataset shards with image, text and speech encoders; one emb-
    NAME.parquet per shard, errors-NAME.jsonl for failed samples, manifest.json. Complete shards of the same job
    are skipped on rerun, shards that ended on a read error are redone, and a folder holding another job's
    outputs is refused. Each encoder's weight provenance is recorded; no image weights ship offline, so pass
    --image-weights FILE for meaningful image vectors. Under torchrun each rank takes its own shards.
    """
    from mmrec.pipelines.extract import extract

    for m in _MODALITIES:
        if isinstance(getattr(args, m), str) and getattr(args, m).lower() == "none":
            setattr(args, m, None)
    weights = {m: w for m in _MODALITIES if (w := getattr(args, f"{m}_weights"))}
    config = config_from_args(args, ExtractConfig, exclude=("weights",), weights=weights, what="extract config")
    with _one_line_weight_warnings():
        manifest = extract(args.input, args.out, config, progress=not args.json)
    run = manifest["runs"][0] if len(manifest.get("runs", ())) == 1 else None
    if "done" not in manifest:
        return emit(args, manifest, None)
    random = [m for m, e in manifest["encoders"].items() if e["weights"]["kind"] == "random"]
    failed = manifest["read_errors"]
    return emit(args, manifest, (
        f"{len(manifest['done'])}/{manifest['input_shards']} shards done, {manifest['samples']} samples, "
        f"{manifest['errors']} errors -> {args.out}"
        + (f"; this run: {run['samples']} samples in {run['elapsed_s']:.1f} s ({run['samples_per_s']:.1f}/s)" if run else "")
        + (f"; {len(failed)} shard(s) ended on a read error ({', '.join(failed[:3])}): a rerun redoes them" if failed else "")
        + (f"; random weights: {', '.join(random)}" if random else "")
    ))
