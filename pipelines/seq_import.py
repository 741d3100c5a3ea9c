"""``mmrec seq import``: a public sequential-recommendation data set -> mmrec's data contracts (a job).

Formats (:class:`ImportJob`, ``format``):

- ``lcrec`` (LC-Rec / LETTER / TIGER preprocessing): ``<DS>.inter.json`` ``{"user": [item, ...]}``
  with each user's items in time order, and optionally ``<DS>.item.json`` ``{"item": {"title",
  "description", "brand", "categories"}}``;
- ``recbole`` (RecBole atomic files): ``<DS>.inter``, tab-separated with a ``name:type`` header
  holding ``user_id`` and ``item_id`` (and ``timestamp``, which orders each user's rows; file order
  breaks ties and orders them when absent), and optionally ``<DS>.item`` with ``item_id`` and text
  columns (``title``, ``brand``, ``categories``, ``description``).

Writes into ``out``: ``behaviour.parquet`` (``user_id``, ``item_id`` as indices, ``ts`` = position
in the user's sequence, ``raw_user`` / ``raw_item`` the source's ids, ``click`` = 1 and ``train`` = 1
except on each user's last item, the validation target, so ``mmrec align --positive train`` mines
pairs from the training part only), ``users.parquet`` and ``items.parquet`` (index <-> raw id; item
``key`` = ``item-{index:06d}``), ``seq.json`` (counts, skips) and, when item text exists, webdataset
shards ``items-NNNNNN.tar`` (``txt``: title, brand, categories and the first ``description_chars``
characters of the description; ``json``: the ids) for ``mmrec extract --image none --audio none``.

Item indices follow the raw ids' numeric order when every raw item id is an integer (LC-Rec numbers
items from 0), else their first appearance. Users with fewer than ``min_length`` items have no
validation target: they are skipped and counted; an empty file is an error.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.config import build_config, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, write_json
from mmrec.retrieval.data import ITEM_KEY, ITEMS_FILE, LOG_FILE, MANIFEST_FILE

FORMATS = ("lcrec", "recbole")
_TEXT_FIELDS = ("title", "brand", "categories", "description")


@dataclass
class ImportJob:
    """Options of ``mmrec seq import``."""

    format: str = field(default="lcrec", metadata={"help": "source format: lcrec (<DS>.inter.json) or recbole (<DS>.inter)",
                                                   "choices": FORMATS})
    min_length: int = field(default=2, metadata={"help": "users with fewer items are skipped and counted"})
    description_chars: int = field(default=500, metadata={"help": "characters of the description kept in an item's txt"})
    shard_size: int = field(default=1000, metadata={"help": "items per webdataset shard"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.min_length < 2:
            raise UsageError(f"min_length must be >= 2 (one item for validation, one to predict it from), got {self.min_length}")
        if self.description_chars < 0 or self.shard_size < 1:
            raise UsageError("description_chars must be >= 0 and shard_size >= 1")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def _read_lcrec(data: Path, name: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    path = data / f"{name}.inter.json"
    if not path.is_file():
        raise UsageError(f"no {path.name} in {data}")
    inter = _load_json(path)
    if not isinstance(inter, dict):
        raise InputError(f"{path}: expected an object {{user: [item, ...]}}, got {type(inter).__name__}")
    sequences = {}
    for user, items in inter.items():
        if not isinstance(items, list):
            raise InputError(f"{path}: user {user!r} maps to {type(items).__name__}, expected a list of items")
        sequences[str(user)] = [str(i) for i in items]
    texts: dict[str, dict[str, str]] = {}
    item_path = data / f"{name}.item.json"
    if item_path.is_file():
        meta = _load_json(item_path)
        if not isinstance(meta, dict):
            raise InputError(f"{item_path}: expected an object {{item: {{title, ...}}}}")
        texts = {str(k): {f: str(v.get(f) or "") for f in _TEXT_FIELDS} for k, v in meta.items() if isinstance(v, dict)}
    return sequences, texts


def _atomic_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty file")
        return [h.split(":")[0].strip() for h in header], [row for row in reader if row]


def _read_recbole(data: Path, name: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    path = data / f"{name}.inter"
    if not path.is_file():
        raise UsageError(f"no {path.name} in {data}")
    header, rows = _atomic_rows(path)
    for needed in ("user_id", "item_id"):
        if needed not in header:
            raise InputError(f"{path}: no {needed} column in the header {header}")
    u, i = header.index("user_id"), header.index("item_id")
    t = header.index("timestamp") if "timestamp" in header else None
    events: dict[str, list[tuple[float, int, str]]] = {}
    for n, row in enumerate(rows):
        if len(row) < len(header):
            raise InputError(f"{path}: line {n + 2} has {len(row)} fields, the header {len(header)}")
        try:
            ts = float(row[t]) if t is not None else 0.0
        except ValueError:
            raise InputError(f"{path}: line {n + 2}: timestamp {row[t]!r} is not a number") from None
        events.setdefault(row[u], []).append((ts, n, row[i]))
    sequences = {user: [item for _, _, item in sorted(ev)] for user, ev in events.items()}
    texts: dict[str, dict[str, str]] = {}
    item_path = data / f"{name}.item"
    if item_path.is_file():
        header, rows = _atomic_rows(item_path)
        if "item_id" in header:
            cols = {f: header.index(f) for f in _TEXT_FIELDS if f in header}
            key = header.index("item_id")
            texts = {row[key]: {f: (row[c] if c < len(row) else "") for f, c in cols.items()} for row in rows}
    return sequences, texts


def item_text(meta: dict[str, str], description_chars: int) -> str:
    """An item's ``txt``: title, brand, categories, then the first ``description_chars`` of the description."""
    def clean(text: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()

    parts = [clean(meta.get("title", ""))]
    if clean(meta.get("brand", "")):
        parts.append(f"Brand: {clean(meta['brand'])}")
    if clean(meta.get("categories", "")):
        parts.append(f"Categories: {clean(meta['categories'])}")
    description = clean(meta.get("description", ""))[:description_chars]
    if description:
        parts.append(description)
    return ". ".join(p for p in parts if p)


def item_order(raw: list[str]) -> list[str]:
    """Distinct raw item ids in index order: numeric when every id is an integer, else first appearance."""
    unique = list(dict.fromkeys(raw))
    if all(re.fullmatch(r"-?\d+", r) for r in unique):
        return sorted(unique, key=int)
    return unique


def import_sequences(data: str | Path, name: str, out: str | Path, config: ImportJob | dict | str | None = None,
                     **overrides: Any) -> dict[str, Any]:
    """Import data set ``name`` from folder ``data`` into ``out``; returns the report (``seq.json``)."""
    job = replace_config(build_config(ImportJob, config, "seq import"), "seq import", **overrides)
    start = time.perf_counter()
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    sequences, texts = (_read_lcrec if job.format == "lcrec" else _read_recbole)(data, name)
    if not sequences:
        raise InputError(f"{data}: {name} has no users")
    kept = {u: s for u, s in sequences.items() if len(s) >= job.min_length}
    skipped = len(sequences) - len(kept)
    if not kept:
        raise InputError(f"{data}: all {len(sequences)} users of {name} have fewer than {job.min_length} items; nothing to import")
    raw_items = item_order([i for s in kept.values() for i in s])
    index = {r: n for n, r in enumerate(raw_items)}
    raw_users = list(kept)
    lengths = np.array([len(kept[u]) for u in raw_users], dtype=np.int64)
    user_id = np.repeat(np.arange(len(raw_users), dtype=np.int64), lengths)
    item_id = np.array([index[i] for u in raw_users for i in kept[u]], dtype=np.int64)
    ts = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    train = np.ones(len(item_id), dtype=np.int8)
    train[np.cumsum(lengths) - 1] = 0
    out.mkdir(parents=True, exist_ok=True)
    log = pa.table({
        "user_id": user_id, "item_id": item_id, "ts": ts,
        "raw_user": pa.array([raw_users[u] for u in user_id], pa.string()),
        "raw_item": pa.array([raw_items[i] for i in item_id], pa.string()),
        "click": np.ones(len(item_id), dtype=np.int8), "train": train,
    }).replace_schema_metadata({"mmrec": json.dumps({"dataset": name, "format": job.format})})
    with atomic_path(out / LOG_FILE) as tmp:
        pq.write_table(log, tmp, row_group_size=1 << 16)
    with atomic_path(out / "users.parquet") as tmp:
        pq.write_table(pa.table({"user_id": np.arange(len(raw_users)), "raw_user": pa.array(raw_users, pa.string())}), tmp)
    keys = [ITEM_KEY.format(n) for n in range(len(raw_items))]
    with atomic_path(out / ITEMS_FILE) as tmp:
        pq.write_table(pa.table({"item_id": np.arange(len(raw_items)), "raw_item": pa.array(raw_items, pa.string()),
                                 "key": pa.array(keys, pa.string())}), tmp)
    shards = _write_item_shards(out, raw_items, keys, texts, job) if texts else []
    report = {
        "dataset": name, "format": job.format, "source": str(data), "users": len(raw_users), "items": len(raw_items),
        "interactions": int(len(item_id)), "skipped_users": skipped, "min_length": job.min_length,
        "mean_length": round(float(lengths.mean()), 3), "items_with_text": sum(r in texts for r in raw_items),
        "shards": [s.name for s in shards], "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(out / MANIFEST_FILE, report)
    return report


def _write_item_shards(out: Path, raw_items: list[str], keys: list[str], texts: dict[str, dict[str, str]],
                       job: ImportJob) -> list[Path]:
    import webdataset as wds

    for stale in out.glob("items-*.tar"):
        stale.unlink()
    paths = []
    for shard, first in enumerate(range(0, len(raw_items), job.shard_size)):
        target = out / f"items-{shard:06d}.tar"
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            writer = wds.TarWriter(f, user="mmrec", group="mmrec", encoder=False, mtime=0)
            for n in range(first, min(first + job.shard_size, len(raw_items))):
                raw = raw_items[n]
                sample = {"__key__": keys[n], "json": json.dumps({"item_id": n, "raw_item": raw, "key": keys[n]}).encode()}
                text = item_text(texts[raw], job.description_chars) if raw in texts else ""
                if text:
                    sample["txt"] = text.encode("utf-8")
                writer.write(sample)
            writer.close()
        paths.append(target)
    return paths
