"""Reading webdataset shards for batch jobs: shard lists, per-rank splits and preprocessed batches.

:class:`ShardBatches` is an ``IterableDataset`` for a ``DataLoader``: each worker takes whole shards
(webdataset's ``split_by_worker``), decodes and preprocesses their samples with the encoders'
``preprocess`` (CPU work, in parallel across workers), collates per-shard batches and ends every
shard with a marker carrying the shard's errors. A sample is one item (``jpg|png|webp``, ``txt``,
``wav|flac|mp3``) or one live segment (``frame<i>.jpg``, ``comments.json``, ``speech.wav``), as in
DESIGN.md. Several inputs of one modality (a segment's frames or comments) are pooled later by
their ``owner`` row.

A sample's ``json`` (its metadata) is parsed too, though no vector depends on it: [I] metadata that is
not UTF-8, not strict JSON (``NaN``/``Infinity`` are refused) or not an object drops the sample with an
error (field ``json``), as any other field that fails to decode does, so every written row has usable
metadata to join on.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset

from mmrec.encoders import Encoder
from mmrec.errors import InputError, UsageError

_ITEM_FIELDS = {"image": ("jpg", "png", "webp"), "text": ("txt",), "audio": ("wav", "flac", "mp3")}
_FRAME = re.compile(r"frame(\d+)\.(jpg|png|webp)$")


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """A brace pattern, glob, folder (its ``*.tar``) or list of paths -> sorted existing tar paths."""
    from braceexpand import braceexpand

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths: list[str] = []
    for s in map(str, specs):
        if os.path.isdir(s):
            paths += sorted(glob.glob(os.path.join(s, "*.tar")))
            continue
        for p in braceexpand(s):
            paths += sorted(glob.glob(p)) if glob.has_magic(p) else [p]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"input shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not paths:
        raise UsageError(f"no input shards match {spec!r}")
    return sorted(dict.fromkeys(paths))


def shard_name(path: str) -> str:
    """``DIR/items-000123.tar`` -> ``items-000123`` (output files are named after it)."""
    return Path(path).name.removesuffix(".tar")


def raw_inputs(sample: dict[str, Any], modality: str) -> list[Any] | None:
    """The raw inputs of ``modality`` in one sample: one for an item, several for a segment, None if absent."""
    if modality == "image":
        frames = sorted((int(m.group(1)), k) for k in sample if (m := _FRAME.match(k)))
        if frames:
            return [sample[k] for _, k in frames]
    if modality == "text" and "comments.json" in sample:
        comments = json.loads(sample["comments.json"])
        if not isinstance(comments, list):
            raise InputError("comments.json is not a list of strings")
        return [c for c in comments if isinstance(c, str) and c.strip()]  # blank comments carry nothing
    if modality == "audio" and "speech.wav" in sample:
        return [sample["speech.wav"]]
    for ext in _ITEM_FIELDS[modality]:
        if ext in sample:
            return [sample[ext]]
    return None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_metadata(raw: bytes | str) -> dict[str, Any]:
    """A sample's ``json`` field -> its object; InputError (field ``json``) naming what is wrong."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        value = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise InputError(f"metadata is not UTF-8: {err.reason} at byte {err.start}", field="json") from None
    except json.JSONDecodeError as err:
        raise InputError(f"metadata is not valid JSON: {err}", field="json") from None
    except (ValueError, RecursionError) as err:
        raise InputError(f"metadata is not valid JSON: {type(err).__name__}: {err}", field="json") from None
    if not isinstance(value, dict):
        raise InputError(f"metadata must be a JSON object, got {type(value).__name__}", field="json")
    return value


@dataclass
class Batch:
    """Preprocessed inputs of up to ``batch_size`` samples of one shard."""

    shard: str
    keys: list[str]
    inputs: dict[str, Any] = field(default_factory=dict)  # modality -> collated batch
    owners: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (n_inputs,) row index


@dataclass
class ShardEnd:
    """Marks the end of one shard: its errors, one dict per failed sample or unreadable tar."""

    shard: str
    errors: list[dict[str, Any]]


class ShardBatches(IterableDataset):
    """Yields :class:`Batch` es and one :class:`ShardEnd` per shard, whole shards per worker."""

    def __init__(self, shards: Sequence[str], encoders: dict[str, Encoder], batch_size: int) -> None:
        self.shards = list(shards)
        self.encoders = encoders
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Batch | ShardEnd]:
        import webdataset as wds

        for path in wds.split_by_worker(self.shards):
            yield from self._shard(path)

    def _shard(self, path: str) -> Iterator[Batch | ShardEnd]:
        import webdataset as wds

        name, errors, pending = shard_name(path), [], []
        samples = wds.WebDataset(path, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None)
        try:
            for sample in samples:
                try:
                    pending.append((sample["__key__"], self._prepare(sample)))
                except InputError as err:
                    errors.append({"key": sample["__key__"], "field": err.field, "reason": str(err)})
                if len(pending) == self.batch_size:
                    yield self._collate(name, pending)
                    pending = []
        except Exception as err:  # a truncated or corrupt tar: keep what was read, record the rest
            errors.append({"key": None, "field": "tar", "reason": f"{type(err).__name__}: {err}"})
        if pending:
            yield self._collate(name, pending)
        yield ShardEnd(name, errors)

    def _prepare(self, sample: dict[str, Any]) -> dict[str, list[Any]]:
        if "json" in sample:
            check_metadata(sample["json"])
        prepared = {}
        for modality, encoder in self.encoders.items():
            try:
                raws = raw_inputs(sample, modality)
                if raws is not None:
                    if not raws:
                        raise InputError(f"no {modality} inputs")
                    prepared[modality] = [encoder.preprocess(r) for r in raws]
            except InputError as err:
                raise InputError(str(err), field=modality) from err
            except Exception as err:  # anything a decoder throws on hostile bytes
                raise InputError(f"{type(err).__name__}: {err}", field=modality) from err
        return prepared

    def _collate(self, name: str, pending: list[tuple[str, dict[str, list[Any]]]]) -> Batch:
        batch = Batch(name, [key for key, _ in pending])
        for modality, encoder in self.encoders.items():
            flat, owners = [], []
            for row, (_, prepared) in enumerate(pending):
                for x in prepared.get(modality, ()):
                    flat.append(x)
                    owners.append(row)
            if flat:
                batch.inputs[modality] = encoder.collate(flat)
                batch.owners[modality] = torch.tensor(owners)
        return batch

