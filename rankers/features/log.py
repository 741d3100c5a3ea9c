"""Behaviour logs as ranking samples: the columns, id vocabularies, time split and histories.

A log is Parquet with ``user_id, item_id, author_id, domain, ts`` and one 0/1 column per task
(docs/file-contracts.md). :func:`read_log` reads it through the one log reader,
:mod:`mmrec.logs` (an error names the file and the column), puts the rows in time order and turns task labels into ``labels`` plus ``label_mask``: a
null label (the task is not observed there, e.g. ``follow`` outside live streams) is masked out of
the loss and the metrics. :class:`Vocab` maps raw ids to ``1..n`` with ``0`` for ids it was not fit
on. :func:`histories` gives each row the items of the same user's latest earlier positive rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from mmrec.errors import UsageError
from mmrec.logs import read_log_columns


@dataclass
class BehaviourLog:
    """Columns of a behaviour log as arrays, rows in time order; ``author`` is None without authors."""

    user: np.ndarray  # (N,)
    item: np.ndarray  # (N,)
    domain: np.ndarray  # (N,) raw domain values
    ts: np.ndarray  # (N,)
    labels: np.ndarray  # (N, K) float32, 0 where masked
    label_mask: np.ndarray  # (N, K) bool, True where the label is observed
    tasks: tuple[str, ...]
    author: np.ndarray | None = None  # (N,)
    sparse: dict[str, np.ndarray] = field(default_factory=dict)  # further categorical columns

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> BehaviourLog:
        """The log restricted to ``rows`` (an index array), in that order."""
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v[rows]
            elif isinstance(v, dict):
                v = {k: a[rows] for k, a in v.items()}
            values[f.name] = v
        return BehaviourLog(**values)


def read_log(path: str | Path, *, tasks: Sequence[str], user: str = "user_id", item: str = "item_id",
             author: str | None = "author_id", domain: str = "domain", ts: str = "ts",
             sparse: Sequence[str] = ()) -> BehaviourLog:
    """Read the log at ``path`` (one Parquet file) into a :class:`BehaviourLog` in time order.

    Read through :func:`mmrec.logs.read_log_columns`, so the schema and every value are checked
    there (one line naming the file, the column and a row): ids (user, item, author, ``sparse``)
    integer or string, ``domain`` integer or string, ``ts`` numeric, task labels 0/1 or null.
    """
    if not tasks:
        raise UsageError("give at least one task (a label column of the log)")
    kinds = {user: "id", item: "id", domain: "id", ts: "time", **({author: "id"} if author else {}),
             **{name: "id" for name in sparse}, **{task: "label" for task in tasks}}
    wanted = list(dict.fromkeys([user, item, domain, ts, *tasks, *([author] if author else []), *sparse]))
    columns = read_log_columns(path, wanted, kinds=kinds, nullable=tasks)
    order = np.argsort(columns[ts], kind="stable")

    def col(name: str) -> np.ndarray:
        return columns[name][order]

    raw = np.stack([columns[task].astype(np.float32) for task in tasks], axis=1)[order] if len(order) else \
        np.zeros((0, len(tasks)), np.float32)
    mask = ~np.isnan(raw)
    return BehaviourLog(
        user=col(user), item=col(item), domain=col(domain), ts=col(ts), labels=np.where(mask, raw, 0).astype(np.float32),
        label_mask=mask, tasks=tuple(tasks), author=col(author) if author else None,
        sparse={name: col(name) for name in sparse},
    )


class Vocab:
    """Raw ids -> ``1..len(values)`` in sorted order, ``0`` for any id not among ``values``."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.unique(np.asarray(values))

    def __len__(self) -> int:
        """Embedding rows needed: the ids plus the out-of-vocabulary row 0."""
        return len(self.values) + 1

    def encode(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if not len(self.values):
            return np.zeros(len(raw), np.int64)
        pos = np.searchsorted(self.values, raw).clip(max=len(self.values) - 1)
        return np.where(self.values[pos] == raw, pos + 1, 0).astype(np.int64)


def time_split(n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``0..n`` (in time order) -> ``(train rows, test rows)``, the test rows the latest ones."""
    cut = n - int(round(n * test_fraction))
    return np.arange(cut), np.arange(cut, n)


def histories(user: np.ndarray, item_row: np.ndarray, positive: np.ndarray, length: int, pad: int) -> np.ndarray:
    """``(N, length)`` item rows: per row, the same user's latest ``length`` positive rows *before* it.

    Rows must be in time order. Position 0 is the most recent; missing positions hold ``pad``.
    """
    n = len(user)
    out = np.full((n, length), pad, np.int64)
    if n == 0 or length == 0:
        return out
    order = np.lexsort((np.arange(n), user))  # by user, then time
    u, it, pos = user[order], item_row[order], positive[order].astype(bool)
    starts = np.r_[True, u[1:] != u[:-1]]
    group = np.cumsum(starts) - 1
    seen = np.cumsum(pos) - pos  # positives before each row, over all users
    first_pos = seen[starts][group]  # where the row's user starts in pos_items
    before = seen - first_pos  # the user's own positives before the row
    pos_items = it[pos]  # all positive items, by user then time
    k = np.arange(length)
    idx = first_pos[:, None] + before[:, None] - 1 - k  # (N, length): latest first
    valid = k[None, :] < before[:, None]
    hist = np.where(valid, pos_items[np.clip(idx, 0, max(len(pos_items) - 1, 0))] if len(pos_items) else pad, pad)
    out[order] = hist
    return out
