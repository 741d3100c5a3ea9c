"""Item pairs for alignment, mined from a behaviour log (QARM step 1).

- User2Item (QARM [3P]): for each positive event of a user, the *trigger* is the item most similar
  to the target among that user's latest ``window`` (50 in the paper) earlier positives; similarity
  is the cosine of an existing embedding ([I] by default the content embeddings being aligned).
- Item2Item by Swing (Yang et al. 2020, "Large Scale Product Graph Construction for Recommendation
  in E-commerce", eq. 1): ``s(i, j) = sum_{u<v in U_i ∩ U_j} w_u w_v / (alpha + |I_u ∩ I_v|)`` with
  ``w_u = |I_u| ** -user_power`` ([I] 0.5); each item keeps its ``top_n`` partners. The scoring is
  :func:`mmrec.graphs.swing.swing_scores`, shared with MMBee's A2A graph.

Both read the log (Parquet, DESIGN.md columns) in row batches (``batch_rows``) and never hold it
whole. Memory is bounded by parameters, not by the log size: User2Item keeps at most ``max_users``
histories of ``window`` items (least recently active users are forgotten first); Swing keeps each
user's ``max_items_per_user`` most recent positives, uses at most ``max_users_per_item`` users of an
item (a seeded sample) and keeps ``top_n`` partners per item. [I] The log is read in file order,
which is time order for a log written by time; a row is positive when any ``positive`` label is > 0;
the log's ``item_id`` maps to an embedding key through ``item_key`` (``"item-{:06d}"``: 42 ->
``item-000042``); events on items without an embedding are skipped and counted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import InputError, UsageError
from mmrec.graphs.swing import swing_scores
from mmrec.io import atomic_path, open_parquet

PAIR_SOURCES = ("user2item", "swing")


@dataclass
class PairConfig:
    """How pairs are mined; the memory bounds are the ``max_*``, ``window`` and ``top_n`` fields."""

    sources: tuple[str, ...] = PAIR_SOURCES
    positive: tuple[str, ...] = ("click",)
    item_key: str = "item-{:06d}"
    batch_rows: int = 65536
    window: int = 50
    max_users: int = 1_000_000
    max_items_per_user: int = 100
    max_users_per_item: int = 200
    top_n: int = 10
    alpha: float = 1.0
    user_power: float = 0.5
    seed: int = 0

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


def _open_log(log: str | Path, config: PairConfig) -> pq.ParquetFile:
    path = Path(log)
    file = open_parquet(path, "behaviour log")
    missing = [c for c in ("user_id", "item_id", *config.positive) if c not in file.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; have {file.schema_arrow.names}")
    return file


def positive_events(log: str | Path, rows: dict[str, int], config: PairConfig, stats: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(user_ids, item_rows)`` of the log's positive events, batch by batch.

    ``rows`` maps embedding keys to row numbers; events on other items are counted in ``stats``.
    """
    file = _open_log(log, config)
    columns = ["user_id", "item_id", *config.positive]
    for batch in file.iter_batches(batch_size=config.batch_rows, columns=columns):
        positive = np.zeros(batch.num_rows, dtype=bool)
        for label in config.positive:
            positive |= batch.column(label).fill_null(0).to_numpy(zero_copy_only=False) > 0
        users = batch.column("user_id").to_numpy(zero_copy_only=False)[positive]
        items = batch.column("item_id").to_pylist()
        mapped = np.array([rows.get(config.item_key.format(items[i]), -1) for i in np.flatnonzero(positive)], dtype=np.int64)
        stats["events"] = stats.get("events", 0) + batch.num_rows
        stats["positives"] = stats.get("positives", 0) + len(mapped)
        stats["unknown_items"] = stats.get("unknown_items", 0) + int((mapped < 0).sum())
        known = mapped >= 0
        yield users[known], mapped[known]


def user2item_pairs(
    log: str | Path, rows: dict[str, int], vectors: np.ndarray, config: PairConfig, stats: dict
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
    log: str | Path, rows: dict[str, int], n_items: int, config: PairConfig, stats: dict, *, progress: bool = False
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


_PAIR_SCHEMA = pa.schema([
    pa.field("left", pa.string(), nullable=False), pa.field("right", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False), pa.field("score", pa.float32(), nullable=False),
])


def mine_pairs(
    log: str | Path, keys: list[str], vectors: np.ndarray, out: str | Path,
    config: PairConfig | None = None, *, progress: bool = False,
) -> dict:
    """Mine pairs from ``log`` for the items ``keys`` (rows of ``vectors``) into ``out`` (Parquet).

    ``out`` gets columns ``left, right, source, score``, written batch by batch. Returns counts.
    """
    config = config or PairConfig()
    rows = {k: r for r, k in enumerate(keys)}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    counts: dict = {}
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, _PAIR_SCHEMA) as writer:
        for source in config.sources:
            stats: dict = {}
            if source == "user2item":
                batches = user2item_pairs(log, rows, unit.astype(np.float32), config, stats)
            else:
                batches = swing_pairs(log, rows, len(keys), config, stats, progress=progress)
            n = 0
            for left, right, score in batches:
                n += len(left)
                writer.write_table(pa.table({
                    "left": pa.array([keys[r] for r in left.tolist()], pa.string()),
                    "right": pa.array([keys[r] for r in right.tolist()], pa.string()),
                    "source": pa.array([source] * len(left), pa.string()), "score": pa.array(score, pa.float32()),
                }, schema=_PAIR_SCHEMA))
            counts[source] = {"pairs": n, **stats}
    if not any(c["pairs"] for c in counts.values()):
        raise InputError(f"no pairs mined from {log}: {counts}; are there positives on known items?")
    return counts


def read_pairs(path: str | Path, rows: dict[str, int]) -> np.ndarray:
    """Pairs file -> ``(P, 2)`` int64 rows into the embeddings; pairs on unknown keys are dropped."""
    table = pq.read_table(path, columns=["left", "right"])
    left = np.array([rows.get(k, -1) for k in table.column("left").to_pylist()], dtype=np.int64)
    right = np.array([rows.get(k, -1) for k in table.column("right").to_pylist()], dtype=np.int64)
    keep = (left >= 0) & (right >= 0)
    return np.stack([left[keep], right[keep]], axis=1)
