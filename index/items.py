"""What ``mmrec index serve`` shows about indexed items besides their keys: metadata and codes, by index row.

- Metadata (``--metadata``): a Parquet file with a ``key`` column (every other column is a field;
  ``caption`` / ``title`` / ``text`` give the caption, ``url`` the link, and a binary ``image`` column
  a thumbnail served at ``/items/{row}/image``), or a JSON object ``{key: {field: value}}``. An LC-Rec
  ``<DS>.item.json`` (``{"12": {"title", ...}}``) names its items by index: item ``n`` is
  ``item_key.format(n)``, the key ``mmrec seq import`` gives it, when the index has no key ``"12"``.
- Codes (``--codes``): ``codes.parquet`` or LC-Rec's ``.index.json``
  (:func:`mmrec.quantization.files.load_codes`).

Keys of the files that the index does not hold are ignored; the count of matched items is reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.errors import InputError, UsageError
from mmrec.index.base import BaseIndex

CAPTION_FIELDS = ("caption", "title", "text")
_IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


def image_type(data: bytes) -> str:
    """The media type of encoded image bytes (PNG, JPEG, GIF, WebP), ``application/octet-stream`` otherwise."""
    return next((kind for magic, kind in _IMAGE_TYPES.items() if data.startswith(magic)), "application/octet-stream")


def _plain(value: Any) -> Any:
    """A JSON value for a metadata cell (NaN and infinities become None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, dict, str, int, float, bool)) or value is None:
        return value
    return str(value)


def _read_metadata(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise UsageError(f"metadata file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "key" not in table.column_names:
            raise InputError(f"{path}: no 'key' column (columns {table.column_names})")
        keys = table.column("key").to_pylist()
        columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "key"}
        return {str(k): {name: values[i] for name, values in columns.items()} for i, k in enumerate(keys)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{path}: expected a JSON object {{key: {{field: value}}}}")
    return data


class ItemInfo:
    """Metadata fields, thumbnail bytes and codes of an index's rows (module docstring)."""

    def __init__(self, index: BaseIndex, *, metadata: str | Path | None = None, codes: str | Path | None = None,
                 item_key: str = "item-{:06d}") -> None:
        self.n = index.n
        row_of = {key: row for row, key in enumerate(index.keys.to_pylist())}
        self.fields: dict[int, dict[str, Any]] = {}
        self.images: dict[int, bytes] = {}
        self.codes: np.ndarray | None = None
        self.matched = {"metadata": 0, "codes": 0}
        if metadata is not None:
            for key, fields in _read_metadata(Path(metadata)).items():
                row = row_of.get(key)
                if row is None and key.isdigit():
                    row = row_of.get(item_key.format(int(key)))
                if row is None:
                    continue
                image = fields.get("image")
                if isinstance(image, (bytes, bytearray)):
                    self.images[row] = bytes(image)
                self.fields[row] = {k: _plain(v) for k, v in fields.items() if v is not None and not isinstance(v, (bytes, bytearray))}
            self.matched["metadata"] = len(self.fields)
        if codes is not None:
            from mmrec.quantization.files import load_codes

            keys, values, _ = load_codes(codes, item_key=item_key)
            self.codes = np.full((index.n, values.shape[1]), -1, np.int64)
            found = [(row_of[k], j) for j, k in enumerate(keys) if k in row_of]
            if found:
                rows, at = map(np.array, zip(*found))
                self.codes[rows] = values[at]
            self.matched["codes"] = len(found)

    def caption(self, row: int) -> str | None:
        fields = self.fields.get(row, {})
        return next((str(fields[f]) for f in CAPTION_FIELDS if fields.get(f) not in (None, "")), None)

    def code_of(self, row: int) -> list[int] | None:
        if self.codes is None or self.codes[row, 0] < 0:
            return None
        return self.codes[row].tolist()

    def describe(self, row: int) -> dict[str, Any]:
        """``{fields..., "caption", "codes", "image"}`` of one row: what ``/metadata`` answers and the page shows."""
        out = dict(self.fields.get(row, {}))
        caption = self.caption(row)
        if caption is not None:
            out["caption"] = caption
        codes = self.code_of(row)
        if codes is not None:
            out["codes"] = codes
        if row in self.images:
            out["image"] = f"/items/{row}/image"
        return out
