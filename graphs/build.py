"""MMBee GIE graphs from a live behaviour log: U2A gifting, U2A watching, A2A Swing (docs/papers.md, "MMBee").

MMBee (arXiv 2407.00056, sec. "Graph-guided Interest Expansion") builds a user-to-author (U2A) graph
from gifting history and an author-to-author (A2A) graph weighted by Swing similarity; :func:`build_graphs`
returns both as one torch-geometric ``HeteroData``:

- node types ``user`` and ``author``: ``node_id`` (the log's int64 ids; row ``i`` is id ``i``),
  ``num_nodes`` and ``gift_count`` (gift rows per node);
- ``(user, gifts, author)``: one edge per (user, author) with a gift; ``edge_weight`` is the gift
  count or the summed gift value (``GraphConfig.gift_weight``), ``edge_count`` / ``edge_value`` both;
  ``(author, gifted_by, user)`` is its reverse;
- ``(user, watches, author)``: one edge per (user, author) with a watch, ``edge_weight`` = watch count;
  ``(author, watched_by, user)`` its reverse ([I] added so that message passing reaches users);
- ``(author, swing, author)``: edge ``a -> b`` for each of ``a``'s ``swing_top_n`` Swing partners
  (:func:`mmrec.graphs.swing.swing_scores` over co-gifting users), ``edge_weight`` = Swing score.

[I] The paper does not say how gift counts become weights or which domains count: both are
``GraphConfig`` fields (count by default; all domains). The log is streamed in ``batch_rows`` row
batches; per batch, edge keys ``user << 32 | author`` are reduced with ``np.unique`` and the partial
sums merged once ``merge_rows`` keys are pending, so memory grows with the number of distinct edges,
not with the log. Swing baskets are each user's ``swing_max_items_per_user`` most gifted authors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from mmrec.config import build_config
from mmrec.errors import InputError, UsageError
from mmrec.graphs.swing import swing_scores
from mmrec.logs import count_rows, iter_log, read_id_table

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

GIFT_WEIGHTS = ("count", "value")
_MAX_ID = 2**31


@dataclass
class GraphConfig:
    """How the graphs are built from the log; ``batch_rows`` and ``merge_rows`` bound the memory."""

    gift_weight: str = field(default="count", metadata={"help": "U2A gift edge weight: gift count or summed gift value", "choices": GIFT_WEIGHTS})
    domains: tuple[str, ...] | None = field(default=None, metadata={"help": "count only these domains, comma-separated (none: all)"})
    n_users: int | None = field(default=None, metadata={"help": "number of user nodes (none: from users or the largest id + 1)"})
    n_authors: int | None = field(default=None, metadata={"help": "number of author nodes (none: from authors or the largest id + 1)"})
    users: str | None = field(default=None, metadata={"help": "users.parquet: user ids outside it are errors", "metavar": "PATH"})
    authors: str | None = field(default=None, metadata={"help": "authors.parquet: author ids absent from it are errors", "metavar": "PATH"})
    batch_rows: int = field(default=1 << 20, metadata={"help": "log rows read at a time"})
    merge_rows: int = field(default=1 << 24, metadata={"help": "pending edge keys before partial sums are merged (memory knob)"})
    swing_top_n: int = field(default=50, metadata={"help": "Swing partners kept per author"})
    swing_alpha: float = field(default=1.0, metadata={"help": "Swing smoothing alpha"})
    swing_user_power: float = field(default=0.5, metadata={"help": "Swing user-weight exponent"})
    swing_max_users_per_item: int = field(default=200, metadata={"help": "co-gifting users sampled per author for Swing"})
    swing_max_items_per_user: int = field(default=100, metadata={"help": "most gifted authors per user in a Swing basket"})
    seed: int = field(default=0, metadata={"help": "random seed (Swing user sampling)"})
    progress: bool = field(default=False, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if self.gift_weight not in GIFT_WEIGHTS:
            raise UsageError(f"gift_weight must be one of {GIFT_WEIGHTS}, got {self.gift_weight!r}")
        if self.domains is not None:
            self.domains = (self.domains,) if isinstance(self.domains, str) else tuple(self.domains)
            if not self.domains:
                raise UsageError("domains must name at least one domain, or be None for all")
        for name in ("batch_rows", "merge_rows", "swing_top_n", "swing_max_users_per_item", "swing_max_items_per_user"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_users", "n_authors"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= _MAX_ID:
                raise UsageError(f"{name} must be in 1..{_MAX_ID}, got {value}")
        if self.swing_alpha < 0:
            raise UsageError(f"swing_alpha must be >= 0, got {self.swing_alpha}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["domains"] = list(self.domains) if self.domains is not None else None
        return out


class _EdgeSums:
    """Per-key sums of a few weight columns, merged from per-batch partial sums."""

    def __init__(self, n_weights: int, merge_rows: int) -> None:
        self.keys = np.zeros(0, np.int64)
        self.sums = np.zeros((0, n_weights))
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_pending = 0
        self.merge_rows = merge_rows

    @staticmethod
    def _reduce(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, inverse = np.unique(keys, return_inverse=True)
        sums = np.stack([np.bincount(inverse, weights=w, minlength=len(unique)) for w in weights.T], axis=1)
        return unique, sums

    def add(self, keys: np.ndarray, weights: np.ndarray) -> None:
        if len(keys):
            self.pending.append(self._reduce(keys, weights))
            self.n_pending += len(self.pending[-1][0])
            if self.n_pending >= self.merge_rows:
                self._merge()

    def _merge(self) -> None:
        if self.pending:
            keys = np.concatenate([self.keys, *(k for k, _ in self.pending)])
            sums = np.concatenate([self.sums, *(s for _, s in self.pending)])
            self.keys, self.sums = self._reduce(keys, sums)
            self.pending, self.n_pending = [], 0

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, authors, sums)`` sorted by user then author."""
        self._merge()
        return self.keys >> 32, self.keys & (2**32 - 1), self.sums


def _id_bounds(config: GraphConfig) -> tuple[int | None, int | None, np.ndarray | None]:
    n_users, n_authors, known_authors = config.n_users, config.n_authors, None
    if config.users is not None:
        _, n_table = read_id_table(config.users, "user_id")
        n_users = n_users or n_table
    if config.authors is not None:
        known_authors, n_table = read_id_table(config.authors, "author_id")
        n_authors = n_authors or n_table
    return n_users, n_authors, known_authors


def _aggregate(logs, config: GraphConfig) -> dict[str, Any]:
    n_users, n_authors, known_authors = _id_bounds(config)
    columns = ["user_id", "author_id", "watch", "gift", "gift_value"] + (["domain"] if config.domains else [])
    gifts, watches = _EdgeSums(2, config.merge_rows), _EdgeSums(1, config.merge_rows)
    rows = max_user = max_author = 0
    bar = tqdm(total=count_rows(logs), desc="graph build", unit="row", unit_scale=True, disable=not config.progress)
    for batch in iter_log(logs, columns, batch_rows=config.batch_rows, kinds={"user_id": "integer", "author_id": "integer"},
                          n_users=n_users or _MAX_ID,
                          n_authors=n_authors or _MAX_ID, known_authors=known_authors):
        users, authors = batch["user_id"], batch["author_id"]
        rows += len(users)
        bar.update(len(users))
        if len(users):
            max_user, max_author = max(max_user, int(users.max()) + 1), max(max_author, int(authors.max()) + 1)
        keep = np.isin(batch["domain"], config.domains) if config.domains else np.ones(len(users), bool)
        keys = (users << 32) | authors
        gift = keep & (batch["gift"] > 0)
        gifts.add(keys[gift], np.stack([np.ones(int(gift.sum())), batch["gift_value"][gift].astype(np.float64)], 1))
        watch = keep & (batch["watch"] > 0)
        watches.add(keys[watch], np.ones((int(watch.sum()), 1)))
    bar.close()
    if rows == 0:
        raise InputError("the behaviour log has no rows")
    return {"rows": rows, "n_users": n_users or max_user, "n_authors": n_authors or max_author,
            "gifts": gifts.finish(), "watches": watches.finish()}


def _swing_edges(users: np.ndarray, authors: np.ndarray, counts: np.ndarray, n_authors: int, config: GraphConfig):
    order = np.lexsort((authors, -counts, users))  # per user, most gifted authors first
    users, authors = users[order], authors[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    keep = rank < config.swing_max_items_per_user
    users, authors = users[keep], authors[keep]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])[1:] if len(users) else []
    baskets = np.split(authors, bounds) if len(users) else []
    parts = list(swing_scores(
        baskets, n_authors, alpha=config.swing_alpha, user_power=config.swing_user_power, top_n=config.swing_top_n,
        max_users_per_item=config.swing_max_users_per_item, seed=config.seed, progress=config.progress,
    ))
    if not parts:
        return np.zeros((2, 0), np.int64), np.zeros(0, np.float32)
    src, dst, score = (np.concatenate(p) for p in zip(*parts))
    return np.stack([src, dst]), score.astype(np.float32)


def _edges(data: HeteroData, edge_type: tuple[str, str, str], src: np.ndarray, dst: np.ndarray, **attrs: np.ndarray) -> None:
    store = data[edge_type]
    store.edge_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    for name, value in attrs.items():
        store[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def build_graphs(
    logs: str | Path | Sequence[str | Path] | pa.Table, *, config: GraphConfig | dict | None = None
) -> HeteroData:
    """Build the U2A gifting / watching graphs and the A2A Swing graph from behaviour log(s).

    ``logs``: a Parquet path, a folder holding ``live-behaviour.parquet``, a list of paths or a
    ``pyarrow.Table``. Raises :class:`InputError` naming the file, column and an example row on
    malformed logs. Returns the ``HeteroData`` described in the module docstring.
    """
    from torch_geometric.data import HeteroData

    config = build_config(GraphConfig, config, "graph config")
    agg = _aggregate(logs, config)
    n_users, n_authors = agg["n_users"], agg["n_authors"]
    data = HeteroData()
    g_users, g_authors, g_sums = agg["gifts"]
    for node_type, n, ids in (("user", n_users, g_users), ("author", n_authors, g_authors)):
        data[node_type].node_id = torch.arange(n, dtype=torch.int64)
        data[node_type].num_nodes = n
        data[node_type].gift_count = torch.from_numpy(np.bincount(ids, weights=g_sums[:, 0], minlength=n).astype(np.int64))
    gift_weight = g_sums[:, 0] if config.gift_weight == "count" else g_sums[:, 1]
    gift_attrs = {"edge_weight": gift_weight, "edge_count": g_sums[:, 0], "edge_value": g_sums[:, 1]}
    _edges(data, ("user", "gifts", "author"), g_users, g_authors, **gift_attrs)
    back = np.lexsort((g_users, g_authors))
    _edges(data, ("author", "gifted_by", "user"), g_authors[back], g_users[back], **{k: v[back] for k, v in gift_attrs.items()})
    w_users, w_authors, w_sums = agg["watches"]
    _edges(data, ("user", "watches", "author"), w_users, w_authors, edge_weight=w_sums[:, 0])
    back = np.lexsort((w_users, w_authors))
    _edges(data, ("author", "watched_by", "user"), w_authors[back], w_users[back], edge_weight=w_sums[back, 0])
    swing_index, swing_score = _swing_edges(g_users, g_authors, g_sums[:, 0], n_authors, config)
    _edges(data, ("author", "swing", "author"), swing_index[0], swing_index[1], edge_weight=swing_score)
    data.log_rows = agg["rows"]
    return data
