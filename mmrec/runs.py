"""One run folder format for every trained model, in the spirit of transformers' ``save_pretrained`` /
``from_pretrained`` (docs/file-contracts.md, "Run folders").

A run folder holds

- ``model.safetensors``: the weights, tensor name -> tensor;
- ``vocab.json`` (optional): the raw ids behind rows of the id tables;
- ``metrics.json`` (optional): what the job measured;
- ``config.json``: ``{"format": FORMAT, "kind": family, "model": model config, "job": job config}``,
  written last, so a folder with a ``config.json`` is complete.

Every file is written atomically (:mod:`mmrec.io`). A family may keep further files beside these
(GraphCL's node embeddings, GTR's MFQ fuser, a resumable ``checkpoint.pt``). A folder written by an
older mmrec (no ``config.json`` with a ``format``) fails with one line that says how to convert it:
``mmrec.runs.convert_run(folder)`` (or ``python -m mmrec.runs convert FOLDER``) rewrites the rank,
graph, GTR, retrieve and cdr run folders of the formats before this one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_open, atomic_path, read_safetensors, write_json

FORMAT = 1
CONFIG, WEIGHTS, VOCAB, METRICS = "config.json", "model.safetensors", "vocab.json", "metrics.json"


def save_run(folder: str | Path, model_config: dict[str, Any], job_config: dict[str, Any] | None, tensors: dict[str, torch.Tensor],
             vocab: Any = None, metrics: dict[str, Any] | None = None, *, kind: str) -> Path:
    """Write the run folder ``folder`` of a model of family ``kind`` (``rank``, ``graph``, ``gtr``, ``retrieve``, ``cdr``);
    ``config.json`` last. Returns ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"mmrec": json.dumps({"kind": kind, "format": FORMAT})})
    for name, value in ((VOCAB, vocab), (METRICS, metrics)):
        if value is not None:
            write_json(folder / name, value)
        else:
            (folder / name).unlink(missing_ok=True)
    # key order kept: a config's dicts (an input schema's fields) can fix the order of a model's parts
    with atomic_open(folder / CONFIG, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "kind": kind, "model": model_config, "job": job_config}, f, indent=2)
        f.write("\n")
    return folder


def read_config(folder: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """``config.json`` of a run folder, checked: its format version and, given ``kind``, its family."""
    folder = Path(folder)
    path = folder / CONFIG
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder")
    config = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(config, dict) or "format" not in config:
        raise InputError(f"{folder}: a run folder of an older mmrec (no {CONFIG} with a format version); "
                         f"convert it with `python -m mmrec.runs convert {folder}`, or train it again")
    if config["format"] > FORMAT:
        raise InputError(f"{path}: run format {config['format']} is newer than this mmrec's ({FORMAT}); upgrade mmrec")
    if kind is not None and config.get("kind") != kind:
        raise InputError(f"{path}: a {config.get('kind')!r} run, not a {kind!r} run")
    return config


def load_run(folder: str | Path, *, kind: str | None = None,
             device: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor], Any, dict[str, Any] | None]:
    """``(config, tensors, vocab, metrics)`` of a run folder written by :func:`save_run`; ``vocab`` and
    ``metrics`` are None when the run has none. ``config`` has ``format``, ``kind``, ``model`` and ``job``."""
    folder = Path(folder)
    config = read_config(folder, kind=kind)
    tensors, _ = read_safetensors(folder / WEIGHTS, f"{config['kind']} run weights")
    vocab = json.loads((folder / VOCAB).read_text()) if (folder / VOCAB).is_file() else None
    metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else None
    return config, {k: v.to(device) for k, v in tensors.items()}, vocab, metrics


def convert_run(folder: str | Path) -> str:
    """Rewrite an older rank, graph, GTR, retrieve or cdr run folder in this format, in place; returns its kind."""
    folder = Path(folder)
    if (folder / CONFIG).is_file() and "format" in json.loads((folder / CONFIG).read_text()):
        return read_config(folder)["kind"]
    metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else None
    vocab = json.loads((folder / VOCAB).read_text()) if (folder / VOCAB).is_file() else None
    if (folder / "gtr.safetensors").is_file():  # GTR before format 1: weights + config in one file
        tensors, meta = read_safetensors(folder / "gtr.safetensors", "GTR checkpoint")
        save_run(folder, meta["config"], None, tensors, metrics=metrics, kind="gtr")
        (folder / "gtr.safetensors").unlink()
        return "gtr"
    if (folder / "train.json").is_file() and (folder / "embeddings.safetensors").is_file():  # graph: train.json held it all
        tensors, _ = read_safetensors(folder / WEIGHTS, "GraphCL weights")
        summary = json.loads((folder / "train.json").read_text())
        # the sizes train.json kept; a model rebuilt from them needs edge_types and feature_dims, which it did not keep
        sizes = {"num_nodes": summary.get("nodes"), "dim": summary.get("dim"), "converted_from": "train.json"}
        save_run(folder, sizes, {"graph": summary.get("graph"), "config": summary.get("config")}, tensors, metrics=summary, kind="graph")
        (folder / "train.json").unlink()
        return "graph"
    old = json.loads((folder / CONFIG).read_text()) if (folder / CONFIG).is_file() else None
    if isinstance(old, dict) and "job" in old and "data" in old:  # retrieve: the job, model, max_len and data side by side
        tensors, _ = read_safetensors(folder / WEIGHTS, "retriever weights")
        model = old["model"] if old["model"] is not None else {"n_items": int(tensors["counts"].shape[0]), "max_len": old["max_len"]}
        job = {**old["job"], "data": old["data"], **{k: old[k] for k in ("align", "aligned_from") if k in old}}
        save_run(folder, model, job, tensors, vocab, metrics, kind="retrieve")
        return "retrieve"
    if isinstance(old, dict) and (folder / "data.json").is_file():  # cdr: the CDRConfig, data.json beside it
        info = json.loads((folder / "data.json").read_text())
        ids = {"users": info.pop("user_vocab"), "items": [d.pop("item_vocab") for d in info["domains"]]}
        save_run(folder, old, {"pair": info.pop("pair"), "data": info}, read_safetensors(folder / WEIGHTS, "cdr run weights")[0],
                 ids, metrics, kind="cdr")
        (folder / "data.json").unlink()
        return "cdr"
    if (folder / WEIGHTS).is_file() and metrics is not None and "config" in metrics:  # rank: config in the weights' metadata
        tensors, meta = read_safetensors(folder / WEIGHTS, "ranker checkpoint")
        save_run(folder, {"ranker": meta["model"], "schema": meta["schema"]}, metrics["config"], tensors, vocab, metrics, kind="rank")
        return "rank"
    raise InputError(f"{folder}: not a run folder mmrec knows how to convert (rank, graph, GTR, retrieve or cdr)")


def main(argv: list[str] | None = None) -> int:
    """``python -m mmrec.runs convert FOLDER...``"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "convert":
        print("usage: python -m mmrec.runs convert FOLDER [FOLDER ...]", file=sys.stderr)
        return 2
    for folder in args[1:]:
        print(f"{folder}: {convert_run(folder)} run, format {FORMAT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
