"""From a live behaviour log (:mod:`mmrec.synthetic.live_sim`'s contract) to GTR training and test rows.

:func:`prepare_gtr_data` takes a :class:`mmrec.synthetic.live_sim.LiveWorld` (the checked log, the authors'
categories and, for MFQ, the segment token tensors: what :func:`mmrec.synthetic.live_sim.read_live_world`
reads from a simulator folder) and returns :class:`GTRData`; how the rows are split and the
sequences cut is a :class:`GTRDataConfig`:

- samples: with ``tasks=("gift",)`` the live rows with ``watch == 1`` (a gift needs a watch);
  with ``("watch", "gift")`` every live impression, the gift label masked where nothing was watched; rows with
  ``ts`` in ``[train_start, train_end)`` train, ``[train_end, end]`` test (fractions of the log's
  time span). [I] ``train_start`` leaves the first part of the log to the offline graph store: GIE's
  graphs must be built from ``ts < train_start`` only (:meth:`GTRData.graph_rows`), so neither the
  expansions nor the GraphCL embeddings see a training or test label;
- behaviours: every watch (video or live; kind ``video`` / ``live``, or ``gift`` when it gifted);
  for each sample, earlier behaviours of the same user only (see ``sequences_at``):
  ``search`` = the latest ``search_length`` on authors of the target author's category (SIM hard
  search), ``recent`` = the latest ``recent_length``, ``gifts`` = the latest ``gift_length`` gifts.
  Found for all samples at once by ``searchsorted`` over ``(group, ts)`` keys, no Python loop.
  [I] ``sequences_at``: when the sequences are cut: ``split`` (default) at the start of the sample's
  split (training rows see behaviour before ``train_start``, test rows before ``train_end``: an
  offline store like GIE's), ``day`` at the start of the sample's day, ``event`` just before the
  sample. Cut per event, a user's gift count grows row by row, so within a user the rows *after* a
  gift look more gift-prone than the gift row itself: on the simulator the score "gifts so far" has
  AUC 0.75 but UAUC 0.27 (0.37 cut per day), and a model leaning on it ranks each user's segments
  by time rather than by content;
- expansions (optional): a GIE store table (``src_type == "user"`` rows), the top ``k`` per metapath.

:meth:`GTRData.batch` gathers one batch dict for :class:`mmrec.rankers.gtr.GTR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from mmrec.config import build_config, check_bounds, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.rankers.gtr import KINDS

if TYPE_CHECKING:
    from mmrec.synthetic.live_sim import LiveWorld

_SHIFT = np.int64(1) << np.int64(32)


def _last_before(event_group: np.ndarray, event_ts: np.ndarray, query_group: np.ndarray, query_ts: np.ndarray,
                 length: int) -> np.ndarray:
    """Indices ``(N, length)`` into the events (sorted by group, ts) of each query's latest ``length``
    events of its group with ``ts < query_ts``, oldest first, -1 padded on the left."""
    keys = event_group * _SHIFT + event_ts
    end = np.searchsorted(keys, query_group * _SHIFT + query_ts, side="left")
    start = np.searchsorted(keys, query_group * _SHIFT, side="left")
    idx = end[:, None] - length + np.arange(length)[None, :]  # (N, length)
    return np.where(idx >= start[:, None], idx, -1)


@dataclass
class GTRData:
    """Samples and behaviour tables for GTR, on the CPU (see the module docstring)."""

    user: np.ndarray  # (N,) int64
    author: np.ndarray  # (N,)
    segment: np.ndarray  # (N,) row in the token tensors, -1 when unknown
    tasks: tuple[str, ...]
    label: np.ndarray  # (N, K) float32
    label_mask: np.ndarray  # (N, K) bool: gift is observed on watched rows only
    ts: np.ndarray  # (N,)
    train: np.ndarray  # sample rows
    test: np.ndarray
    sequences: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (author, kind) each (N, T), author -1 = pad
    author_category: np.ndarray  # (A,)
    num_users: int
    num_authors: int
    graph_end_ts: int  # GIE graphs may use rows with ts < this (absolute)
    ts_origin: int = 0  # the log's first ts; ``ts`` above is relative to it
    cuts: tuple[int, int] = (0, 0)  # (train start, test start), relative: the sequences' cut times with "split"
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (S, L, d)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (S, L) bool
    expansion: tuple[np.ndarray, np.ndarray] | None = None  # (U, E) authors (-1 pad), kinds
    expansion_paths: int = 0

    def graph_rows(self, log: pa.Table) -> pa.Table:
        """The rows of ``log`` that GIE may learn from (``ts`` before the first training sample)."""
        return log.filter(pc.less(log.column("ts"), self.graph_end_ts))

    def set_expansions(self, table: pa.Table, metapaths: Sequence[str], k: int) -> None:
        """Attach a GIE expansion store: per user, the top ``k`` of each metapath (kinds after ``KINDS``)."""
        users = pc.equal(table.column("src_type"), "user")
        table = table.filter(users)
        authors = np.full((self.num_users, k * len(metapaths)), -1, np.int64)
        kinds = np.zeros_like(authors)
        for j, path in enumerate(metapaths):
            part = table.filter(pc.equal(table.column("metapath"), path))
            if not len(part):
                raise InputError(f"expansion store has no user rows for metapath {path!r}", field="metapath")
            src = part.column("src_id").to_numpy()
            lists = part.column("dst_ids").combine_chunks()
            offsets = lists.offsets.to_numpy()
            values = lists.values.to_numpy()
            for r in range(k):  # r-th best of every source at once
                has = offsets[:-1] + r < offsets[1:]
                authors[src[has], j * k + r] = values[offsets[:-1][has] + r]
            kinds[:, j * k:(j + 1) * k] = len(KINDS) + j
        self.expansion = (authors, kinds)
        self.expansion_paths = len(metapaths)

    def batch(self, rows: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> dict[str, Any]:
        """The batch dict of :meth:`mmrec.rankers.gtr.GTR.forward` for sample ``rows``, on ``device`` (default CPU)."""
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        out: dict[str, Any] = {"user": torch.from_numpy(self.user[rows]), "author": torch.from_numpy(self.author[rows])}
        for name, (authors, kinds) in self.sequences.items():
            out[f"{name}_author"] = torch.from_numpy(authors[rows])
            out[f"{name}_kind"] = torch.from_numpy(kinds[rows])
        if self.expansion is not None:
            u = self.user[rows]
            out["expansion_author"] = torch.from_numpy(self.expansion[0][u])
            out["expansion_kind"] = torch.from_numpy(self.expansion[1][u])
        if self.tokens:
            seg = torch.from_numpy(np.maximum(self.segment[rows], 0))
            out["tokens"] = {m: t[seg] for m, t in self.tokens.items()}
            out["masks"] = {m: t[seg] & torch.from_numpy(self.segment[rows] >= 0)[:, None] for m, t in self.masks.items()}
        if device is not None and torch.device(device).type != "cpu":
            out = {k: ({m: t.to(device, non_blocking=True) for m, t in v.items()} if isinstance(v, dict)
                       else v.to(device, non_blocking=True)) for k, v in out.items()}
        return out


@dataclass
class GTRDataConfig:
    """How :func:`prepare_gtr_data` splits the log in time and cuts the behaviour sequences (module docstring)."""

    train_start: float = field(default=0.5, metadata={"help": "fraction of the log's time span before which rows only feed the GIE graphs"})
    train_end: float = field(default=0.8, metadata={"help": "fraction of the time span where training rows end and test rows begin"})
    search_length: int = field(default=20, metadata={"help": "SIM hard-search sequence: latest behaviours on authors of the target's category", "min": 1})
    recent_length: int = field(default=30, metadata={"help": "recent sequence: latest behaviours of any category", "min": 1})
    gift_length: int = field(default=10, metadata={"help": "gift sequence: latest gifts", "min": 1})
    sequences_at: str = field(default="split", metadata={
        "help": "when sequences are cut: at the start of the row's split, of its day, or just before the row",
        "choices": ("split", "day", "event")})

    def __post_init__(self) -> None:
        if not 0.0 < self.train_start < self.train_end < 1.0:
            raise UsageError(f"need 0 < train_start < train_end < 1, got {self.train_start}, {self.train_end}")
        if self.sequences_at not in ("split", "day", "event"):
            raise UsageError(f"sequences_at must be split, day or event, got {self.sequences_at!r}")
        check_bounds(self)


def prepare_gtr_data(world: LiveWorld | str | Path, config: GTRDataConfig | dict[str, Any] | None = None, *,
                     tasks: Sequence[str] = ("gift",), tokens: bool = True, **options: Any) -> GTRData:
    """Samples, sequences and (``tokens=True``) segment tokens of a :class:`mmrec.synthetic.live_sim.LiveWorld`;
    ``config`` / ``options``: :class:`GTRDataConfig` fields. [I] A folder path is read with
    :func:`mmrec.synthetic.live_sim.read_live_world` (the simulator's own reader) as a convenience; nothing
    here opens a file."""
    from mmrec.synthetic.live_sim import read_live_world

    tasks = tuple(tasks)
    if "gift" not in tasks or not set(tasks) <= {"watch", "gift"} or len(set(tasks)) != len(tasks):
        raise UsageError(f"tasks must be ('gift',) or ('watch', 'gift'), got {tasks}")
    cfg = replace_config(build_config(GTRDataConfig, config, "GTR data"), "GTR data", **options)
    if isinstance(world, (str, Path)):
        world = read_live_world(world, tokens=tokens)
    if tokens and world.tokens is None:
        raise UsageError("segment tokens were not read: read_live_world(folder, tokens=True)")
    log, category = world.log, np.asarray(world.author_category, np.int64)
    n_users, n_authors = world.num_users, len(category)
    cols = {name: log.column(name).to_numpy(zero_copy_only=False)
            for name in ("user_id", "author_id", "ts", "watch", "gift")}
    live = pc.equal(log.column("domain"), "live").to_numpy(zero_copy_only=False)
    ts0, ts1 = int(cols["ts"].min()), int(cols["ts"].max())
    ts = cols["ts"] - ts0
    t_start, t_end = int(cfg.train_start * (ts1 - ts0)), int(cfg.train_end * (ts1 - ts0))

    watched = cols["watch"] == 1
    ev = np.flatnonzero(watched)
    ev_user, ev_author, ev_ts = cols["user_id"][ev], cols["author_id"][ev], ts[ev]
    ev_kind = np.where(cols["gift"][ev] == 1, 2, np.where(live[ev], 1, 0)).astype(np.int64)

    sample = np.flatnonzero(live & (watched | ("watch" in tasks)) & (ts >= t_start))
    s_user, s_author, s_ts = cols["user_id"][sample], cols["author_id"][sample], ts[sample]
    s_seen = {"event": s_ts, "day": s_ts // 86400 * 86400,
              "split": np.where(s_ts < t_end, t_start, t_end)}[cfg.sequences_at]

    def sequence(group_of_event: np.ndarray, group_of_sample: np.ndarray, keep: np.ndarray, length: int):
        kept = np.flatnonzero(keep)
        order = kept[np.lexsort((ev_ts[kept], group_of_event[kept]))]
        idx = _last_before(group_of_event[order], ev_ts[order], group_of_sample, s_seen, length)
        pick = order[np.maximum(idx, 0)]
        return np.where(idx >= 0, ev_author[pick], -1), np.where(idx >= 0, ev_kind[pick], 0)

    n_cat = int(category.max()) + 1
    every = np.ones(len(ev), bool)
    sequences = {
        "search": sequence(ev_user * n_cat + category[ev_author], s_user * n_cat + category[s_author], every, cfg.search_length),
        "recent": sequence(ev_user, s_user, every, cfg.recent_length),
        "gifts": sequence(ev_user, s_user, ev_kind == 2, cfg.gift_length),
    }
    data = GTRData(
        user=s_user.astype(np.int64), author=s_author.astype(np.int64), segment=np.full(len(sample), -1, np.int64),
        tasks=tasks, label=np.stack([cols[t][sample] for t in tasks], axis=1).astype(np.float32),
        label_mask=np.stack([np.ones(len(sample), bool) if t == "watch" else watched[sample] for t in tasks], axis=1), ts=s_ts,
        train=np.flatnonzero(s_ts < t_end),
        test=np.flatnonzero(s_ts >= t_end), sequences=sequences, author_category=category,
        num_users=n_users, num_authors=n_authors, graph_end_ts=ts0 + t_start, ts_origin=ts0, cuts=(t_start, t_end),
    )
    if tokens:
        data.tokens, data.masks = world.tokens, world.masks
        lookup = pa.array(world.segment_keys, pa.string())
        found = pc.index_in(log.column("item_id").take(pa.array(sample)), value_set=lookup)
        data.segment = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if not len(data.train) or not len(data.test):
        raise InputError(f"the time split ({cfg.train_start}, {cfg.train_end}) of the live log leaves {len(data.train)} training and "
                         f"{len(data.test)} test rows")
    return data

