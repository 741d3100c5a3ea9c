"""``mmrec codes export``: item codes in the formats of other projects (a job).

Formats (:class:`ExportJob`, ``format``):

- ``lcrec``: LC-Rec / LETTER / MiniOneRec's ``<DS>.index.json``, ``{"item index": ["<a_12>", "<b_3>",
  "<c_200>"]}``, with mmrec's id map ``<DS>.keys.json`` beside it
  (:func:`mmrec.quantization.files.save_index_json`);
- ``recbole``: a RecBole atomic item file, tab-separated, header ``item_id:token`` then ``c1:token ..
  cL:token`` (one token field per level);
- ``parquet``: mmrec's ``codes.parquet`` (``key, c1..cL``), e.g. from an ``.index.json``.

Item indexes: when ``data`` names a data set, they follow it: an LC-Rec ``<DS>.item.json`` (or the
folder holding one), whose item ids are written in the file's order, or the output of ``mmrec seq
import`` (``items.parquet``: ``raw_item`` per ``key``). A code key matches an ``.item.json`` item when
it is the raw id itself or ``item_key.format(n)``, ``n`` the item's index as ``mmrec seq import``
numbers it (numeric order of integer ids, else file order); every item of the data set must have codes
and every code an item. Without ``data`` the lcrec index is the row number in the codes file (the id
map holds the keys) and the recbole ``item_id`` is the key itself.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mmrec.config import build_config, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path
from mmrec.pipelines.seq_import import item_order
from mmrec.quantization.files import INDEX_SUFFIX, load_codes, save_codes, save_index_json
from mmrec.retrieval.data import ITEMS_FILE

FORMATS = ("lcrec", "recbole", "parquet")


@dataclass
class ExportJob:
    """Options of ``mmrec codes export``."""

    format: str = field(default="lcrec", metadata={"help": "lcrec (<DS>.index.json), recbole (atomic item file) or parquet (codes.parquet)",
                                                   "choices": FORMATS})
    data: str | None = field(default=None, metadata={
        "help": "data set whose item indexes the file follows: <DS>.item.json, its folder, or a `mmrec seq import` output folder"})
    item_key: str = field(default="item-{:06d}", metadata={"help": "code key of item index n (str.format pattern)", "metavar": "FORMAT"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")


def _item_json(data: Path) -> Path:
    if data.is_file():
        return data
    found = sorted(data.glob("*.item.json"))
    if len(found) != 1:
        raise UsageError(f"{data}: expected one <DS>.item.json or {ITEMS_FILE} (mmrec seq import), found "
                         f"{', '.join(p.name for p in found) or 'neither'}")
    return found[0]


def dataset_ids(data: str | Path, item_key: str = "item-{:06d}") -> tuple[list[str], dict[str, str]]:
    """``(item ids in the data set's order, {code key: item id})`` of a data set (module docstring)."""
    data = Path(data)
    if not data.exists():
        raise UsageError(f"data not found: {data}")
    if data.is_dir() and (data / ITEMS_FILE).is_file():
        table = pq.read_table(data / ITEMS_FILE, columns=["raw_item", "key"])
        ids = table.column("raw_item").to_pylist()
        return ids, dict(zip(table.column("key").to_pylist(), ids))
    path = _item_json(data)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(items, dict):
        raise InputError(f"{path}: expected an object {{item id: {{title, ...}}}}")
    ids = list(items)
    by_key = {item_key.format(n): raw for n, raw in enumerate(item_order(ids))}
    return ids, {**by_key, **{raw: raw for raw in ids}}


def export_codes(codes: str | Path, out: str | Path, config: ExportJob | dict | str | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the codes file ``codes`` (``codes.parquet`` or ``.index.json``) to ``out`` in ``format``; returns a report."""
    job = replace_config(build_config(ExportJob, config, "codes export"), "codes export", **overrides)
    out = Path(out)
    if job.format == "lcrec" and not out.name.endswith(INDEX_SUFFIX):
        raise UsageError(f"--out of format lcrec is named <DS>{INDEX_SUFFIX}, got {out.name}")
    keys, values, info = load_codes(codes, item_key=job.item_key)
    ids = [str(n) for n in range(len(keys))]
    if job.data is not None:
        order, id_of = dataset_ids(job.data, job.item_key)
        unknown = [k for k in keys if k not in id_of]
        if unknown:
            raise InputError(f"{len(unknown)} code key(s) match no item of {job.data}, e.g. {unknown[0]!r} "
                             f"(keys are the item id or {job.item_key.format(0)!r} ...)")
        row = {id_of[k]: n for n, k in enumerate(keys)}
        missing = [i for i in order if i not in row]
        if missing:
            raise InputError(f"{len(missing)} item(s) of {job.data} have no codes in {codes}, e.g. {missing[0]!r}")
        ids, keys, values = order, [keys[row[i]] for i in order], values[[row[i] for i in order]]
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [str(out)]
    if job.format == "lcrec":
        written.append(str(save_index_json(out, ids, keys, values, info=info)))
    elif job.format == "parquet":
        save_codes(out, keys, values, info=info)
    else:
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["item_id:token", *(f"c{j + 1}:token" for j in range(values.shape[1]))])
            writer.writerows([i, *row] for i, row in zip(ids if job.data else keys, values.tolist()))
    return {"format": job.format, "items": len(keys), "levels": int(values.shape[1]), "data": job.data, "files": written}
