"""User sequences for retrieval: each user's items in time order, held as one CSR array.

A behaviour log (docs/file-contracts.md) from ``mmrec seq import`` has ``user_id`` and ``item_id`` as indices
(``0..U-1``, ``0..I-1``), ``ts`` the position in the user's sequence, and the source's raw ids in
``raw_user`` / ``raw_item``. :func:`read_sequences` reads it through :func:`mmrec.logs.read_log_columns`
and orders each user's rows by ``ts``. Leave-one-out (TIGER, SASRec): the last item of a sequence is
its validation target, everything before it is training data (:meth:`Sequences.split_last`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrec.errors import InputError, UsageError
from mmrec.logs import read_log_columns

LOG_FILE = "behaviour.parquet"
ITEMS_FILE = "items.parquet"
MANIFEST_FILE = "seq.json"
ITEM_KEY = "item-{:06d}"  # the embedding / code key of item index i (mmrec align's default item_key)


@dataclass
class Sequences:
    """``items[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence, oldest first; ``n_items`` items."""

    offsets: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (N,) int64
    n_items: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, sequences: list, n_items: int | None = None) -> Sequences:
        """From a list of item-index lists."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if sequences else np.zeros(0, np.int64)
        n = int(items.max()) + 1 if n_items is None and len(items) else int(n_items or 0)
        return cls(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), items, n)

    def split_last(self) -> tuple[Sequences, np.ndarray]:
        """``(sequences without their last item, last items (U,))``; every sequence needs >= 2 items."""
        if (self.lengths < 2).any():
            raise UsageError(f"{int((self.lengths < 2).sum())} sequence(s) have fewer than 2 items; nothing to hold out")
        last = self.items[self.offsets[1:] - 1]
        keep = np.ones(len(self.items), dtype=bool)
        keep[self.offsets[1:] - 1] = False
        offsets = self.offsets - np.arange(len(self.offsets))
        return Sequences(offsets, self.items[keep], self.n_items), last

    def subset(self, users: np.ndarray) -> Sequences:
        """The sequences of ``users`` (in that order) as a new :class:`Sequences`, same ``n_items``."""
        users = np.asarray(users, dtype=np.int64)
        lengths = self.lengths[users]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.repeat(self.offsets[users] - offsets[:-1], lengths) + np.arange(offsets[-1])  # each kept item's index in items
        return Sequences(offsets, self.items[rows], self.n_items)

    def item_counts(self) -> np.ndarray:
        """Occurrences of each item, ``(n_items,)`` int64."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    def padded(self, users: np.ndarray, max_len: int) -> np.ndarray:
        """The last ``max_len`` items of each of ``users``, left-padded with -1: ``(len(users), L)`` int64,
        ``L`` = the longest of them (at most ``max_len``)."""
        lengths = np.minimum(self.lengths[users], max_len)
        out = np.full((len(users), max(int(lengths.max(initial=0)), 1)), -1, dtype=np.int64)
        for row, (u, n) in enumerate(zip(users, lengths)):
            if n:
                out[row, out.shape[1] - n :] = self.items[self.offsets[u + 1] - n : self.offsets[u + 1]]
        return out


def read_sequences(data: str | Path) -> tuple[Sequences, dict]:
    """The sequences of an imported data folder (``behaviour.parquet`` + ``seq.json``) and its manifest."""
    data = Path(data)
    manifest_path = data / MANIFEST_FILE
    if not manifest_path.is_file():
        raise UsageError(f"{data} is not a folder written by `mmrec seq import` (no {MANIFEST_FILE})")
    manifest = json.loads(manifest_path.read_text())
    cols = read_log_columns(data / LOG_FILE, ["user_id", "item_id", "ts"], kinds={"user_id": "integer", "item_id": "integer"})
    users, items, ts = cols["user_id"], cols["item_id"], cols["ts"]
    n_users, n_items = int(manifest["users"]), int(manifest["items"])
    if len(items) and (items.max() >= n_items or users.max() >= n_users):
        raise InputError(f"{data / LOG_FILE}: ids beyond the {n_users} users / {n_items} items of {MANIFEST_FILE}")
    order = np.lexsort((ts, users))
    counts = np.bincount(users, minlength=n_users)
    return Sequences(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[order].astype(np.int64), n_items), manifest
