"""Reading the inputs of batch jobs: shard lists, per-rank splits and preprocessed batches.

A shard is a webdataset tar or [I] a plain folder of files, as clip-retrieval's ``files`` input reads
them: files with the same path without their extension form one sample (``a/cat.jpg``, ``a/cat.txt``,
``a/cat.json`` -> key ``a/cat`` with fields ``jpg``, ``txt``, ``json``; ``.jpeg`` counts as ``jpg``),
searched through sub-folders. A folder holding ``*.tar`` files means those tars; any other folder is one
shard named after it (split a large collection into sub-folders, one shard each, to resume at a finer
grain). Paths are local or remote through fsspec (``s3://``, ``gs://``, ``https://``, ``memory://`` ...;
``s3fs`` / ``gcsfs`` installed for those); a remote shard's fingerprint is its URL and size.

:class:`ShardBatches` is an ``IterableDataset`` for a ``DataLoader``: each worker takes whole shards
(webdataset's ``split_by_worker``), decodes and preprocesses their samples with the encoders'
``preprocess`` (CPU work, in parallel across workers), collates per-shard batches and ends every
shard with a marker carrying the shard's errors. A sample is one item (``jpg|png|webp``, ``txt``,
``wav|flac|mp3``) or one live segment (``frame<i>.jpg``, ``comments.json``, ``speech.wav``), as in
docs/file-contracts.md. Several inputs of one modality (a segment's frames or comments) are pooled later by
their ``owner`` row.

A sample's ``json`` (its metadata) is parsed too and carried to the output (:attr:`Batch.metadata`),
though no vector depends on it: [I] metadata that is not UTF-8, not strict JSON (``NaN``/``Infinity``
are refused) or not an object drops the sample with an error (field ``json``), as any other field that
fails to decode does, so every written row has usable metadata to join on.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from mmrec.encoders import Encoder
from mmrec.errors import InputError, UsageError

_ITEM_FIELDS = {"image": ("jpg", "png", "webp"), "text": ("txt",), "audio": ("wav", "flac", "mp3")}
_FRAME = re.compile(r"frame(\d+)\.(jpg|png|webp)$")
_FILE_FIELDS = {"jpeg": "jpg", **{ext: ext for exts in _ITEM_FIELDS.values() for ext in exts}, "json": "json"}


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL read through fsspec (``s3://``, ``memory://``, ``file://`` ...) rather than a local path."""
    return "://" in path


def _fs(path: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(path)


def _remote_shards(spec: str) -> list[str]:
    fs, root = _fs(spec)
    if glob.has_magic(root):
        found = sorted(fs.glob(root))
    elif fs.isdir(root):
        tars = sorted(fs.glob(root.rstrip("/") + "/*.tar"))
        return [fs.unstrip_protocol(p) for p in tars] if tars else [spec.rstrip("/")]
    elif fs.isfile(root):
        found = [root]
    else:
        raise UsageError(f"input shard not found: {spec}")
    return [fs.unstrip_protocol(p) for p in found]


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """A brace pattern, glob, folder or list of paths, local or remote -> sorted existing shards: tar
    files, and folders of plain files (a folder holding tars means its ``*.tar``)."""
    from braceexpand import braceexpand

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths: list[str] = []
    for s in map(str, specs):
        for p in braceexpand(s):
            if is_remote(p):
                paths += _remote_shards(p)
            elif os.path.isdir(p):
                paths += sorted(glob.glob(os.path.join(p, "*.tar"))) or [p.rstrip("/") or "/"]
            else:
                paths += sorted(glob.glob(p)) if glob.has_magic(p) else [p]
    missing = [p for p in paths if not is_remote(p) and not os.path.exists(p)]
    if missing:
        raise UsageError(f"input shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not paths:
        raise UsageError(f"no input shards match {spec!r}")
    return sorted(dict.fromkeys(paths))


def shard_name(path: str) -> str:
    """``DIR/items-000123.tar`` -> ``items-000123``, ``DIR/photos`` -> ``photos`` (output files are named after it)."""
    return Path(path.rstrip("/")).name.removesuffix(".tar")


def _folder_files(path: str) -> tuple[Any, str, list[str]]:
    """``(fs, root, files)`` of a folder shard: every file below it whose extension is a sample field."""
    fs, root = _fs(path)
    if not fs.isdir(root):
        raise UsageError(f"input shard {path} is neither a tar file nor a folder")
    files = sorted(f for f in fs.find(root) if f.rsplit(".", 1)[-1].lower() in _FILE_FIELDS and "." in f.rsplit("/", 1)[-1])
    return fs, root.rstrip("/"), files


def shard_identity(path: str) -> tuple[str, int]:
    """``(where, bytes)`` of a shard for its fingerprint: the resolved local path (or the URL) and its
    size (a folder's: the total of its sample files)."""
    if path.endswith(".tar"):
        if not is_remote(path):
            return str(Path(path).resolve()), os.path.getsize(path)
        fs, root = _fs(path)
        return path, int(fs.size(root))
    fs, _, files = _folder_files(path)
    return (path if is_remote(path) else str(Path(path).resolve())), int(sum(fs.size(f) for f in files))


def read_samples(path: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard as webdataset dicts (``__key__`` and one entry of bytes per field).

    A tar that breaks while read raises once the samples before the break are out."""
    if not path.endswith(".tar"):
        yield from _folder_samples(path)
        return
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with fsspec.open(path, "rb") as stream:
        yield from group_by_keys(tar_file_expander([{"url": path, "stream": stream}]))


def _folder_samples(path: str) -> Iterator[dict[str, Any]]:
    fs, root, files = _folder_files(path)
    by_key: dict[str, dict[str, str]] = {}
    for file in files:
        stem, ext = file[len(root) + 1 :].rsplit(".", 1)
        by_key.setdefault(stem, {})[_FILE_FIELDS[ext.lower()]] = file
    for key in sorted(by_key):  # bytes are read one sample at a time
        yield {"__key__": key, **{name: fs.cat_file(file) for name, file in by_key[key].items()}}


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
    metadata: list[str | None] = field(default_factory=list)  # each sample's json field, compact
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
        name, errors, pending = shard_name(path), [], []
        try:
            for sample in read_samples(path):
                try:
                    pending.append((sample["__key__"], *self._prepare(sample)))
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

    def _prepare(self, sample: dict[str, Any]) -> tuple[dict[str, list[Any]], str | None]:
        """The sample's preprocessed inputs by modality, and its metadata as compact JSON (None without)."""
        metadata = None
        if "json" in sample:
            metadata = json.dumps(check_metadata(sample["json"]), ensure_ascii=False, separators=(",", ":"))
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
        return prepared, metadata

    def _collate(self, name: str, pending: list[tuple[str, dict[str, list[Any]], str | None]]) -> Batch:
        batch = Batch(name, [key for key, _, _ in pending], metadata=[meta for _, _, meta in pending])
        for modality, encoder in self.encoders.items():
            flat, owners = [], []
            for row, (_, prepared, _) in enumerate(pending):
                for x in prepared.get(modality, ()):
                    flat.append(x)
                    owners.append(row)
            if flat:
                batch.inputs[modality] = encoder.collate(flat)
                batch.owners[modality] = torch.tensor(owners)
        return batch

