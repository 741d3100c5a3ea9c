"""The one behaviour-log reader: Parquet logs streamed in row batches, checked while they are read.

A behaviour log (docs/file-contracts.md) is Parquet with ``user_id, item_id, author_id, domain,
ts`` and one column per task label. Every stage that reads a log (pair mining, graphs, rankers,
cross-domain, live streaming, retrieval) reads it through :func:`iter_log` (streamed) or
:func:`read_log_columns` (all rows), naming the columns it needs. Each column has a kind, by default
from its name (:data:`KINDS`; a caller may override it):

- ``id`` (``user_id``, ``item_id``, ``author_id``): integer (int64, never negative, below ``n_users``
  / ``n_authors`` when given) or string; ``integer`` accepts integers only;
- ``label`` (any other column): integer, boolean or float holding 0/1, returned as int8, or as
  float32 with NaN where a column listed in ``nullable`` is null (a task not observed on that row);
- ``value`` (``gift_value``): numeric, finite and >= 0, float32; ``time`` (``ts``): numeric;
- ``string`` (``domain``): strings, returned as numpy objects.

Every check names the file, the column and an example row: missing columns and wrong types are
caught from the Parquet schema before any row is read; nulls, bad ids, labels outside 0/1 and bad
values batch by batch. Memory is ``batch_rows``, not the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError

KINDS = {"user_id": "id", "item_id": "id", "author_id": "id", "domain": "string", "ts": "time",
         "gift_value": "value"}
_EXPECTED = {"id": "integer or string", "integer": "integer", "label": "0/1 (integer, boolean or float)",
             "value": "numeric", "time": "numeric", "string": "string"}


def kind_of(column: str, kinds: Mapping[str, str] | None = None) -> str:
    """The kind of ``column``: ``kinds`` first, then :data:`KINDS`, else ``label``."""
    return (kinds or {}).get(column) or KINDS.get(column, "label")


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_dictionary(type_)


def _type_ok(kind: str, type_: pa.DataType) -> bool:
    if kind == "id":
        return pa.types.is_integer(type_) or _is_string(type_)
    if kind == "integer":
        return pa.types.is_integer(type_)
    if kind == "label":
        return pa.types.is_integer(type_) or pa.types.is_boolean(type_) or pa.types.is_floating(type_)
    if kind in ("value", "time"):
        return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_timestamp(type_) and kind == "time"
    return _is_string(type_)


def log_sources(logs: str | Path | Sequence[str | Path] | pa.Table, *,
                folder_file: str = "live-behaviour.parquet") -> list[tuple[str, pq.ParquetFile | pa.Table]]:
    """``(name, ParquetFile or Table)`` per input; a folder means its ``folder_file``."""
    if isinstance(logs, pa.Table):
        return [("<table>", logs)]
    paths = [logs] if isinstance(logs, (str, Path)) else list(logs)
    if not paths:
        raise UsageError("no behaviour log given")
    sources = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / folder_file
        if not path.is_file():
            raise UsageError(f"behaviour log not found: {path}")
        try:
            sources.append((str(path), pq.ParquetFile(path)))
        except Exception as err:
            raise InputError(f"{path}: not a Parquet file ({err})") from None
    return sources


def count_rows(logs: str | Path | Sequence[str | Path] | pa.Table) -> int:
    """Rows of the log(s), from the Parquet footers (no data is read)."""
    return sum(len(source) if isinstance(source, pa.Table) else source.metadata.num_rows for _, source in log_sources(logs))


def check_schema(name: str, schema: pa.Schema, columns: Sequence[str], kinds: Mapping[str, str] | None = None) -> None:
    """Raise :class:`InputError` naming ``name`` when a needed column is missing or mistyped."""
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; have {schema.names}", field=missing[0])
    for column in columns:
        type_ = schema.field(column).type
        kind = kind_of(column, kinds)
        if not _type_ok(kind, type_):
            raise InputError(f"{name}: column {column!r} has type {type_}, expected {_EXPECTED[kind]}", field=column)


def _example(batch: pa.RecordBatch, mask: np.ndarray, offset: int) -> str:
    row = int(np.flatnonzero(mask)[0])
    return f"row {offset + row}: {batch.slice(row, 1).to_pylist()[0]}"


def _fail(name: str, column: str, problem: str, batch: pa.RecordBatch, mask: np.ndarray, offset: int) -> None:
    raise InputError(f"{name}: column {column!r} {problem} ({int(mask.sum())} rows; first at "
                     f"{_example(batch, mask, offset)})", field=column)


def iter_log(
    logs: str | Path | Sequence[str | Path] | pa.Table,
    columns: Sequence[str],
    *,
    batch_rows: int = 1 << 20,
    kinds: Mapping[str, str] | None = None,
    nullable: Sequence[str] = (),
    n_users: int | None = None,
    n_authors: int | None = None,
    known_authors: np.ndarray | None = None,
    folder_file: str = "live-behaviour.parquet",
) -> Iterator[dict[str, np.ndarray]]:
    """Stream checked columns of the log(s) as numpy arrays, ``batch_rows`` rows at a time.

    ``known_authors`` is a boolean mask over author ids (``True`` = listed in the authors table);
    ``nullable`` label columns may hold nulls (NaN in the output). A folder in ``logs`` means its
    ``folder_file``. Integer ids come back as int64, labels as int8 (float32 when nullable),
    values as float32, strings as numpy objects.
    """
    if batch_rows < 1:
        raise UsageError(f"batch_rows must be >= 1, got {batch_rows}")
    for name, source in log_sources(logs, folder_file=folder_file):
        schema = source.schema if isinstance(source, pa.Table) else source.schema_arrow
        check_schema(name, schema, columns, kinds)
        if isinstance(source, pa.Table):
            batches = source.select(list(columns)).to_batches(max_chunksize=batch_rows)
        else:
            batches = source.iter_batches(batch_size=batch_rows, columns=list(columns))
        offset = 0
        for batch in batches:
            yield _check_batch(name, batch, columns, offset, kinds, set(nullable), n_users, n_authors, known_authors)
            offset += batch.num_rows


def _check_batch(name, batch, columns, offset, kinds, nullable, n_users, n_authors, known_authors) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for column in columns:
        array = batch.column(column)
        kind = kind_of(column, kinds)
        if array.null_count and not (kind == "label" and column in nullable):
            _fail(name, column, "has nulls", batch, np.asarray(array.is_null()), offset)
        if kind == "string" or (kind == "id" and _is_string(array.type)):
            out[column] = np.asarray(array.cast(pa.string()).to_numpy(zero_copy_only=False))
            continue
        if kind == "time":
            out[column] = array.to_numpy(zero_copy_only=False)
            continue
        if kind in ("id", "integer"):
            values = array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if (values < 0).any():
                _fail(name, column, "has negative ids", batch, values < 0, offset)
            bound = n_users if column == "user_id" else n_authors if column == "author_id" else None
            if bound is not None and (values >= bound).any():
                _fail(name, column, f"has ids outside 0..{bound - 1}", batch, values >= bound, offset)
            if column == "author_id" and known_authors is not None:
                unknown = values >= len(known_authors)
                unknown[~unknown] = ~known_authors[values[~unknown]]
                if unknown.any():
                    _fail(name, column, "has author ids absent from the authors table", batch, unknown, offset)
        elif kind == "label":
            values = array.cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            observed = ~np.isnan(values)
            bad = observed & (values != 0) & (values != 1)
            if bad.any():
                _fail(name, column, "must hold 0/1 labels", batch, bad, offset)
            values = values if column in nullable else values.astype(np.int8)
        else:
            values = array.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                _fail(name, column, "has negative or non-finite values", batch, bad, offset)
        out[column] = values
    if "gift_value" in out and "gift" in out:
        stray = (out["gift_value"] > 0) & (out["gift"] == 0)
        if stray.any():
            _fail(name, "gift_value", "is > 0 on rows where gift == 0", batch, stray, offset)
    return out


def read_log_columns(logs: str | Path | Sequence[str | Path] | pa.Table, columns: Sequence[str], **options) -> dict[str, np.ndarray]:
    """All rows of :func:`iter_log` (same options) concatenated: ``{column: (N,) array}``."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in iter_log(logs, columns, **options):
        for c in columns:
            parts[c].append(batch[c])
    return {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}


def read_id_table(path: str | Path, column: str) -> tuple[np.ndarray, int]:
    """Ids listed in ``users.parquet`` / ``authors.parquet``: a boolean mask over ``0..max`` and n."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"id table not found: {path}")
    try:
        file = pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"{path}: not a Parquet file ({err})") from None
    check_schema(str(path), file.schema_arrow, [column], {column: "integer"})
    ids = np.asarray(pq.read_table(path, columns=[column]).column(column).to_numpy(zero_copy_only=False))
    if len(ids) == 0:
        raise InputError(f"{path}: no rows", field=column)
    if (ids < 0).any():
        raise InputError(f"{path}: column {column!r} has negative ids (e.g. {int(ids[ids < 0][0])})", field=column)
    mask = np.zeros(int(ids.max()) + 1, dtype=bool)
    mask[ids] = True
    return mask, len(mask)
