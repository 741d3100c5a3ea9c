"""Item pairs for alignment, mined from a behaviour log (QARM step 1).

- User2Item (QARM [3P]): for each positive event of a user, the *trigger* is the item most similar
  to the target among that user's latest ``window`` (50 in the paper) earlier positives; similarity
  is the cosine of an existing embedding ([I] by default the content embeddings being aligned).
- Item2Item by Swing (Yang et al. 2020, "Large Scale Product Graph Construction for Recommendation
  in E-commerce", eq. 1): ``s(i, j) = sum_{u<v in U_i ∩ U_j} w_u w_v / (alpha + |I_u ∩ I_v|)`` with
  ``w_u = |I_u| ** -user_power`` ([I] 0.5); each item keeps its ``top_n`` partners. The scoring is
  :func:`mmrec.graphs.swing.swing_scores`, shared with MMBee's A2A graph.

Both read the log through the one log reader, :func:`mmrec.logs.iter_log` (schema-checked, in row
batches of ``batch_rows``), and never hold it whole; :func:`mine_pairs` streams the pairs of both as
row-index arrays (the ``mmrec align`` job, :mod:`mmrec.pipelines.align`, writes them to
``pairs.parquet``). Memory is bounded by parameters, not by the log size: User2Item keeps at most ``max_users``
histories of ``window`` items (least recently active users are forgotten first); Swing keeps each
user's ``max_items_per_user`` most recent positives, uses at most ``max_users_per_item`` users of an
item (a seeded sample) and keeps ``top_n`` partners per item. [I] The log is read in file order,
which is time order for a log written by time; a row is positive when any ``positive`` label is > 0;
the log's ``item_id`` maps to an embedding key through ``item_key`` (``"item-{:06d}"``: 42 ->
``item-000042``); events on items without an embedding are skipped and counted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmrec.config import build_config
from mmrec.errors import InputError, UsageError
from mmrec.graphs.swing import swing_scores
from mmrec.logs import iter_log

PAIR_SOURCES = ("user2item", "swing")
Log = str | Path | list | pa.Table  # what mmrec.logs.iter_log reads


@dataclass
class PairConfig:
    """How pairs are mined; the memory bounds are the ``max_*``, ``window`` and ``top_n`` fields."""

    sources: tuple[str, ...] = field(default=PAIR_SOURCES, metadata={"help": "pair sources: user2item, swing or both", "metavar": "NAMES"})
    positive: tuple[str, ...] = field(default=("click",), metadata={"help": "label columns that make a log row positive (any > 0)", "metavar": "LABELS"})
    item_key: str = field(default="item-{:06d}", metadata={"help": "format of an embedding key from the log's item_id", "metavar": "FORMAT"})
    batch_rows: int = field(default=65536, metadata={"help": "log rows read at a time"})
    window: int = field(default=50, metadata={"help": "User2Item: latest positives of the user searched for the trigger"})
    max_users: int = field(default=1_000_000, metadata={"help": "User2Item: user histories kept (least recently active forgotten first)"})
    max_items_per_user: int = field(default=100, metadata={"help": "Swing: most recent positives kept per user"})
    max_users_per_item: int = field(default=200, metadata={"help": "Swing: users of an item used (a seeded sample)"})
    top_n: int = field(default=10, metadata={"help": "Swing: partners kept per item"})
    alpha: float = field(default=1.0, metadata={"help": "Swing: smoothing alpha of 1 / (alpha + |I_u & I_v|)"})
    user_power: float = field(default=0.5, metadata={"help": "Swing: user weight |I_u| ** -user_power"})
    seed: int = field(default=0, metadata={"help": "seed of Swing's user sample"})

    def __post_init__(self) -> None:
        self.sources, self.positive = tuple(self.sources), tuple(self.positive)
        unknown = set(self.sources) - set(PAIR_SOURCES)
        if unknown or not self.sources:
            raise UsageError(f"pair sources must be among {PAIR_SOURCES}, got {self.sources}")
        for name in ("batch_rows", "window", "max_users", "max_items_per_user", "max_users_per_item", "top_n"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.positive:
            raise UsageError("positive must name at least one label column")


def _item_rows(item_ids: np.ndarray, rows: dict[str, int], item_key: str) -> np.ndarray:
    """Log item ids (integers or strings) -> embedding rows, -1 where no embedding has the key."""
    unique, inverse = np.unique(item_ids, return_inverse=True)
    try:
        mapped = np.array([rows.get(item_key.format(v), -1) for v in unique.tolist()], dtype=np.int64)
    except (ValueError, IndexError, KeyError) as err:
        raise UsageError(f"item_key {item_key!r} cannot format item id {unique[0]!r} ({err}); "
                         "for string ids use '{}'") from None
    return mapped[inverse.reshape(-1)]


def positive_events(log: Log, rows: dict[str, int], config: PairConfig, stats: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(user_ids, item_rows)`` of the log's positive events, batch by batch.

    ``log`` is anything :func:`mmrec.logs.iter_log` reads (a Parquet file, a list of them, a table; a
    folder means its ``behaviour.parquet``); user and item ids may be integers or strings, a null
    label counts as negative. ``rows`` maps embedding keys to row numbers; events on other items are
    counted in ``stats``.
    """
    columns = ["user_id", "item_id", *config.positive]
    for batch in iter_log(log, columns, batch_rows=config.batch_rows, nullable=config.positive,
                          folder_file="behaviour.parquet"):
        positive = np.zeros(len(batch["user_id"]), dtype=bool)
        for label in config.positive:
            positive |= batch[label] > 0  # NaN (null) compares False
        mapped = _item_rows(batch["item_id"][positive], rows, config.item_key)
        stats["events"] = stats.get("events", 0) + len(positive)
        stats["positives"] = stats.get("positives", 0) + len(mapped)
        stats["unknown_items"] = stats.get("unknown_items", 0) + int((mapped < 0).sum())
        known = mapped >= 0
        yield batch["user_id"][positive][known], mapped[known]


def user2item_pairs(
    log: Log, rows: dict[str, int], vectors: np.ndarray, config: PairConfig, stats: dict
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(trigger_rows, target_rows, cosine)`` per log batch; ``vectors`` are L2-normalised."""
    histories: OrderedDict = OrderedDict()
    dim = vectors.shape[1]
    chunk = max(1, 2**24 // (config.window * dim))  # gathered (chunk, window, dim) floats stay ~64 MB
    for users, items in positive_events(log, rows, config, stats):
        windows = np.full((len(items), config.window), -1, dtype=np.int64)
        for e, (user, item) in enumerate(zip(users.tolist(), items.tolist())):
            history = histories.get(user)
            if history is None:
                history = histories[user] = deque(maxlen=config.window)
                if len(histories) > config.max_users:
                    histories.popitem(last=False)
            else:
                histories.move_to_end(user)
            windows[e, : len(history)] = history
            history.append(item)
        for start in range(0, len(items), chunk):
            w, t = windows[start : start + chunk], items[start : start + chunk]
            sims = np.einsum("mwd,md->mw", vectors[np.maximum(w, 0)], vectors[t])  # (m, window)
            sims[(w < 0) | (w == t[:, None])] = -np.inf  # padding, and the target itself
            best = sims.argmax(axis=1)
            score = sims[np.arange(len(t)), best]
            ok = np.isfinite(score)
            yield w[ok, best[ok]], t[ok], score[ok].astype(np.float32)


def swing_pairs(
    log: Log, rows: dict[str, int], n_items: int, config: PairConfig, stats: dict, *, progress: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(item_rows, partner_rows, swing score)`` per item, ``top_n`` partners each."""
    user_items: dict[int, dict[int, None]] = {}  # insertion-ordered sets, most recent last
    for users, items in positive_events(log, rows, config, stats):
        for user, item in zip(users.tolist(), items.tolist()):
            recent = user_items.setdefault(user, {})
            recent.pop(item, None)
            recent[item] = None
            if len(recent) > config.max_items_per_user:
                del recent[next(iter(recent))]
    baskets = [np.fromiter(recent, dtype=np.int64) for recent in user_items.values()]
    del user_items
    yield from swing_scores(
        baskets, n_items, alpha=config.alpha, user_power=config.user_power, top_n=config.top_n,
        max_users_per_item=config.max_users_per_item, seed=config.seed, progress=progress,
    )


def mine_pairs(
    log: Log, keys: list[str], vectors: np.ndarray, config: PairConfig | dict | None = None, *,
    counts: dict[str, Any] | None = None, progress: bool = False,
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream pairs mined from ``log`` for the items ``keys`` (rows of ``vectors``, ``(n, d)``).

    Yields ``(source, left_rows, right_rows, score)`` batches, source by source; ``counts`` (when
    given) gets ``{source: {"pairs": n, "events": ..., "positives": ..., "unknown_items": ...}}``.
    Raises :class:`InputError` at the end when no pair was mined.
    """
    config = build_config(PairConfig, config, "pairs")
    counts = {} if counts is None else counts
    rows = {k: r for r, k in enumerate(keys)}
    unit = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    for source in config.sources:
        stats: dict = {}
        if source == "user2item":
            batches = user2item_pairs(log, rows, unit, config, stats)
        else:
            batches = swing_pairs(log, rows, len(keys), config, stats, progress=progress)
        n = 0
        for left, right, score in batches:
            n += len(left)
            yield source, left, right, score
        counts[source] = {"pairs": n, **stats}
    if not any(c["pairs"] for c in counts.values()):
        raise InputError(f"no pairs mined from the behaviour log: {counts}; are there positives on known items?")
