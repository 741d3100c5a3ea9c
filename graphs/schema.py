"""The live behaviour log the graph builder reads, checked while it is streamed.

The log (written by ``mmrec sample-data --live`` or by a real pipeline) is Parquet with the columns
of DESIGN.md's behaviour logs; the graphs need ``user_id``, ``author_id`` (int64, ids ``0..n-1``),
``watch``, ``gift`` (0/1) and ``gift_value`` (float, >= 0, 0 when ``gift`` is 0), and ``domain``
when the graph is restricted to some domains. Every check names the file, the column and an
example row: missing columns and wrong types are caught from the Parquet schema before any row is
read; nulls, negative ids, ids outside ``0..n-1`` (when ``n`` is known) or absent from an authors
table, negative or NaN gift values and gift values on rows without a gift are caught batch by batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError

ID_COLUMNS = ("user_id", "author_id")
LABEL_COLUMNS = ("watch", "gift")
VALUE_COLUMN = "gift_value"


def _kind(column: str) -> str:
    if column in ID_COLUMNS:
        return "integer"
    if column in LABEL_COLUMNS:
        return "integer or boolean"
    if column == VALUE_COLUMN:
        return "numeric"
    return "string"


def _type_ok(column: str, type_: pa.DataType) -> bool:
    kind = _kind(column)
    if kind == "integer":
        return pa.types.is_integer(type_)
    if kind == "integer or boolean":
        return pa.types.is_integer(type_) or pa.types.is_boolean(type_)
    if kind == "numeric":
        return pa.types.is_integer(type_) or pa.types.is_floating(type_)
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_dictionary(type_)


def log_sources(logs: str | Path | Sequence[str | Path] | pa.Table) -> list[tuple[str, pq.ParquetFile | pa.Table]]:
    """``(name, ParquetFile or Table)`` per input; a folder means its ``live-behaviour.parquet``."""
    if isinstance(logs, pa.Table):
        return [("<table>", logs)]
    paths = [logs] if isinstance(logs, (str, Path)) else list(logs)
    if not paths:
        raise UsageError("no behaviour log given")
    sources = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "live-behaviour.parquet"
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


def check_schema(name: str, schema: pa.Schema, columns: Sequence[str]) -> None:
    """Raise :class:`InputError` naming ``name`` when a needed column is missing or mistyped."""
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; have {schema.names}", field=missing[0])
    for column in columns:
        type_ = schema.field(column).type
        if not _type_ok(column, type_):
            raise InputError(f"{name}: column {column!r} has type {type_}, expected {_kind(column)}", field=column)


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
    n_users: int | None = None,
    n_authors: int | None = None,
    known_authors: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Stream checked columns of the log(s) as numpy arrays, ``batch_rows`` rows at a time.

    ``known_authors`` is a boolean mask over author ids (``True`` = listed in the authors table).
    Ids come back as int64, labels as int8, ``gift_value`` as float32, strings as numpy objects.
    """
    for name, source in log_sources(logs):
        schema = source.schema if isinstance(source, pa.Table) else source.schema_arrow
        check_schema(name, schema, columns)
        if isinstance(source, pa.Table):
            batches = source.select(list(columns)).to_batches(max_chunksize=batch_rows)
        else:
            batches = source.iter_batches(batch_size=batch_rows, columns=list(columns))
        offset = 0
        for batch in batches:
            yield _check_batch(name, batch, columns, offset, n_users, n_authors, known_authors)
            offset += batch.num_rows


def _check_batch(name, batch, columns, offset, n_users, n_authors, known_authors) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for column in columns:
        array = batch.column(column)
        if array.null_count:
            _fail(name, column, "has nulls", batch, np.asarray(array.is_null()), offset)
        if _kind(column) == "string":
            out[column] = np.asarray(array.cast(pa.string()).to_numpy(zero_copy_only=False))
            continue
        values = array.to_numpy(zero_copy_only=False)
        if column in ID_COLUMNS:
            values = values.astype(np.int64, copy=False)
            if (values < 0).any():
                _fail(name, column, "has negative ids", batch, values < 0, offset)
            bound = n_users if column == "user_id" else n_authors
            if bound is not None and (values >= bound).any():
                _fail(name, column, f"has ids outside 0..{bound - 1}", batch, values >= bound, offset)
            if column == "author_id" and known_authors is not None:
                unknown = values >= len(known_authors)
                unknown[~unknown] = ~known_authors[values[~unknown]]
                if unknown.any():
                    _fail(name, column, "has author ids absent from the authors table", batch, unknown, offset)
        elif column in LABEL_COLUMNS:
            values = values.astype(np.int8, copy=False)
            if (values < 0).any():
                _fail(name, column, "has negative labels", batch, values < 0, offset)
        else:
            values = values.astype(np.float32, copy=False)
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                _fail(name, column, "has negative or non-finite values", batch, bad, offset)
        out[column] = values
    if VALUE_COLUMN in out and "gift" in out:
        stray = (out[VALUE_COLUMN] > 0) & (out["gift"] == 0)
        if stray.any():
            _fail(name, VALUE_COLUMN, "is > 0 on rows where gift == 0", batch, stray, offset)
    return out


def read_id_table(path: str | Path, column: str) -> tuple[np.ndarray, int]:
    """Ids listed in ``users.parquet`` / ``authors.parquet``: a boolean mask over ``0..max`` and n."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"id table not found: {path}")
    try:
        file = pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"{path}: not a Parquet file ({err})") from None
    check_schema(str(path), file.schema_arrow, [column])
    ids = np.asarray(pq.read_table(path, columns=[column]).column(column).to_numpy(zero_copy_only=False))
    if len(ids) == 0:
        raise InputError(f"{path}: no rows", field=column)
    if (ids < 0).any():
        raise InputError(f"{path}: column {column!r} has negative ids (e.g. {int(ids[ids < 0][0])})", field=column)
    mask = np.zeros(int(ids.max()) + 1, dtype=bool)
    mask[ids] = True
    return mask, len(mask)
