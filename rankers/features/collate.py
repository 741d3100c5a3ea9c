"""The batch collate: sample rows -> sparse ids, code features, dense vectors and history sequences.

Features are resolved once per item, not per sample: :class:`ItemTable` asks every provider for
every item key once (row ``i`` = item ``i``, plus a padding row at the end: item id 0, codes ``-1``,
zero vectors), and :class:`RankSamples` holds per-row tensors that point into it (the candidate's
item row and ``history`` item rows). :func:`collate` then builds a :class:`RankBatch` with index
gathers only, so a batch costs a few tensor ops whatever the providers are; both tables can live on
the GPU. A batch's histories hold each distinct item once (``history`` features, ``(U, ...)``) and
``history_index`` ``(B, T)`` points into them, so a ranker embeds ``U`` items rather than ``B * T``
positions. User-side vectors live in per-user tables that :class:`RankSamples` rows point into
through ``group`` (the row's user); a batch gathers ``(B, D)`` from them. :class:`InputSchema`
tells a ranker what a batch holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mmrec.rankers.features.base import FeatureProvider

ITEM_ID = "item_id"
USER_ID = "user_id"
AUTHOR_ID = "author_id"


@dataclass(frozen=True)
class InputSchema:
    """What a :class:`RankBatch` holds, for building a ranker.

    ``sparse``: field -> vocabulary size (row 0 = out of vocabulary); always ``user_id`` and
    ``item_id``, ``author_id`` when the log has authors, then further categorical columns.
    ``codes``: feature -> codebook sizes per level. ``dense``: feature -> dim. ``history``: the
    length of the history sequences (0 = none). ``domains``: domain names, index = domain id.
    ``cross``: code features (codebook sizes) used as QARM cross features of the candidate against
    the history rather than as item embeddings. ``user_dense``: user-side vectors, feature -> dim.
    """

    tasks: tuple[str, ...]
    domains: tuple[str, ...]
    sparse: dict[str, int]
    codes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dense: dict[str, int] = field(default_factory=dict)
    history: int = 0
    cross: dict[str, tuple[int, ...]] = field(default_factory=dict)
    user_dense: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls(tasks=tuple(data["tasks"]), domains=tuple(data["domains"]), sparse=dict(data["sparse"]),
                   codes={k: tuple(v) for k, v in data.get("codes", {}).items()}, dense=dict(data.get("dense", {})),
                   history=int(data.get("history", 0)), cross={k: tuple(v) for k, v in data.get("cross", {}).items()},
                   user_dense=dict(data.get("user_dense", {})))


@dataclass
class ItemTable:
    """Per-item features; row ``i`` is ``keys[i]``, row ``len(keys)`` is padding."""

    keys: list[str]
    item_id: torch.Tensor  # (n + 1,) item vocabulary ids, 0 for unseen items and padding
    codes: dict[str, torch.Tensor] = field(default_factory=dict)  # (n + 1, L) int64, -1 = none
    dense: dict[str, torch.Tensor] = field(default_factory=dict)  # (n + 1, D) float32

    @property
    def pad(self) -> int:
        return len(self.keys)

    @classmethod
    def from_providers(cls, keys: Sequence[str], item_id: np.ndarray, providers: Sequence[FeatureProvider]) -> ItemTable:
        """Ask each provider once for every key; ``item_id``: ``(n,)`` vocabulary ids of the keys."""
        keys = list(keys)
        table = cls(keys=keys, item_id=torch.from_numpy(np.r_[np.asarray(item_id, np.int64), 0]))
        for p in providers:
            values = p.lookup(keys)
            if p.kind == "codes":
                table.codes[p.name] = torch.from_numpy(np.concatenate([values, np.full((1, p.width), -1)]).astype(np.int64))
            else:
                table.dense[p.name] = torch.from_numpy(np.concatenate([values, np.zeros((1, p.width))]).astype(np.float32))
        return table

    def to(self, device: torch.device | str) -> ItemTable:
        return ItemTable(self.keys, self.item_id.to(device), {k: v.to(device) for k, v in self.codes.items()},
                         {k: v.to(device) for k, v in self.dense.items()})


@dataclass
class RankSamples:
    """Per-row tensors of ``N`` samples; item features come through :class:`ItemTable` rows."""

    sparse: dict[str, torch.Tensor]  # (N,) vocabulary ids: user_id, author_id, further columns
    item_row: torch.Tensor  # (N,) candidate item rows
    history: torch.Tensor  # (N, T) item rows of earlier positives, ItemTable.pad = none
    domain: torch.Tensor  # (N,) domain ids
    group: torch.Tensor  # (N,) the row's user (0..users of the log): UAUC / GAUC groups, user_dense rows
    labels: torch.Tensor  # (N, K) float32
    label_mask: torch.Tensor  # (N, K) bool
    user_dense: dict[str, torch.Tensor] = field(default_factory=dict)  # (users, D) per feature, by group

    def __len__(self) -> int:
        return len(self.item_row)

    def to(self, device: torch.device | str) -> RankSamples:
        return RankSamples(**{k: ({n: t.to(device) for n, t in v.items()} if isinstance(v, dict) else v.to(device))
                              for k, v in vars(self).items()})


@dataclass
class RankBatch:
    """One batch of model inputs and targets."""

    sparse: dict[str, torch.Tensor]  # (B,) ids, item_id included
    codes: dict[str, torch.Tensor]  # (B, L)
    dense: dict[str, torch.Tensor]  # (B, D)
    history: dict[str, torch.Tensor]  # the distinct history items: item_id (U,), codes (U, L), dense (U, D)
    history_index: torch.Tensor  # (B, T) positions in ``history``
    history_mask: torch.Tensor  # (B, T) bool, True = a real item
    domain: torch.Tensor  # (B,)
    group: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B, K)
    label_mask: torch.Tensor  # (B, K)
    user_dense: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, D) per user feature

    def __len__(self) -> int:
        return len(self.domain)

    def to(self, device: torch.device | str) -> RankBatch:
        nb = torch.device(device).type == "cuda"
        return RankBatch(**{k: ({n: t.to(device, non_blocking=nb) for n, t in v.items()} if isinstance(v, dict)
                                else v.to(device, non_blocking=nb)) for k, v in vars(self).items()})


def collate(samples: RankSamples, items: ItemTable, rows: torch.Tensor) -> RankBatch:
    """Gather the batch of sample ``rows`` (a 1-D index tensor on the samples' device)."""
    item = samples.item_row[rows]  # (B,)
    hist = samples.history[rows]  # (B, T)
    distinct, index = torch.unique(hist, return_inverse=True)  # (U,), (B, T)
    sparse = {name: ids[rows] for name, ids in samples.sparse.items()}
    sparse[ITEM_ID] = items.item_id[item]
    group = samples.group[rows]
    history = {ITEM_ID: items.item_id[distinct]}
    for name, table in (*items.codes.items(), *items.dense.items()):
        history[name] = table[distinct]  # (U, L) or (U, D)
    return RankBatch(
        sparse=sparse,
        codes={name: table[item] for name, table in items.codes.items()},
        dense={name: table[item] for name, table in items.dense.items()},
        history=history,
        history_index=index,
        history_mask=hist != items.pad,
        domain=samples.domain[rows],
        group=group,
        labels=samples.labels[rows],
        label_mask=samples.label_mask[rows],
        user_dense={name: table[group] for name, table in samples.user_dense.items()},
    )


class Collator:
    """``collate`` bound to one sample set and item table, e.g. a DataLoader ``collate_fn`` over row indices."""

    def __init__(self, samples: RankSamples, items: ItemTable) -> None:
        self.samples = samples
        self.items = items

    def __call__(self, rows: Sequence[int] | torch.Tensor) -> RankBatch:
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.samples.item_row.device)
        return collate(self.samples, self.items, rows)
