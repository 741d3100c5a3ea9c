"""Cross-domain interaction data: the ``user<TAB>item`` pair format, Parquet behaviour logs, histories,
training batches.

The pair format (the public Amazon CDR data of CDRIB / UniCDR): one folder per domain side,
``<a>_<b>/`` for domain ``a`` of the pair and ``<b>_<a>/`` for domain ``b``, each with ``train.txt`` and
``valid.txt``; one ``user<TAB>item`` per line, integer ids from 0 per domain, user ids shared by the two
domains. Users of a ``valid.txt`` are cold-start there: they have training interactions only in the
other domain.

The Parquet behaviour log (DESIGN.md): columns ``user_id, item_id, domain`` plus optional task label
columns; :func:`load_log_pair` keeps the rows of the two named domains and maps raw ids to contiguous
indices (the vocabularies are kept with the data and saved with a run).

Decisions ([I]): the txt files have no timestamps, so a user's sequence is the *file order* of that
user's lines (FARM's Fourier transform needs an order); a history is the last ``maxlen`` items of that
sequence. A training sample never sees its target item in the history it is scored with: every copy
of the target is masked (:func:`make_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmrec.errors import InputError, UsageError
from mmrec.io import open_parquet

PAIRS = {"sport_cloth": ("sport", "cloth"), "game_video": ("game", "video")}


@dataclass
class Domain:
    """One domain of a pair: ``train`` / ``valid`` are ``(n, 2)`` int64 arrays of (user, item) in file order."""

    name: str
    folder: str
    n_items: int
    train: np.ndarray
    valid: np.ndarray | None = None
    labels: np.ndarray | None = None  # (n_train, T) float32 behaviour labels; None = one implicit behaviour
    item_vocab: list[str] | None = None  # raw item ids of a Parquet log, index -> raw id


@dataclass
class CDRData:
    """Two domains sharing one user id space of ``n_users`` users."""

    domains: tuple[Domain, Domain]
    n_users: int
    tasks: tuple[str, ...] = ("interaction",)
    user_vocab: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def domain_index(self, name: str) -> int:
        names = [d.name for d in self.domains]
        if name not in names:
            raise UsageError(f"unknown domain {name!r}; this pair has {names}")
        return names.index(name)


def read_pairs(path: str | Path) -> np.ndarray:
    """Read a ``user<TAB>item`` file into an ``(n, 2)`` int64 array; an error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"pair file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise InputError(f"{path}:{number}: expected 'user<TAB>item', got {line.strip()!r}", field="line")
            try:
                user, item = int(parts[0]), int(parts[1])
            except ValueError:
                raise InputError(f"{path}:{number}: ids must be integers, got {line.strip()!r}", field="id") from None
            if user < 0 or item < 0:
                raise InputError(f"{path}:{number}: ids must be >= 0, got {line.strip()!r}", field="id")
            rows.append((user, item))
    if not rows:
        raise InputError(f"{path}: no interactions", field="line")
    return np.asarray(rows, dtype=np.int64)


def _pair_folders(data: Path, pair: str) -> tuple[tuple[str, str], tuple[Path, Path]]:
    names = PAIRS.get(pair)
    parts = pair.split("_")
    if names is None:
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"pair must look like 'a_b' (e.g. {', '.join(PAIRS)}), got {pair!r}")
        names = (parts[0], parts[1])
    first, second = pair, "_".join(reversed(pair.split("_")))
    folders = (data / first, data / second)
    for folder in folders:
        if not (folder / "train.txt").is_file():
            raise UsageError(f"{folder}/train.txt not found (--data must hold the folders {first}/ and {second}/)")
    return names, folders


def load_pair(data: str | Path, pair: str) -> CDRData:
    """Load both domains of ``pair`` (``sport_cloth``: folders ``sport_cloth/`` and ``cloth_sport/``)."""
    names, folders = _pair_folders(Path(data), pair)
    domains = []
    for name, folder in zip(names, folders):
        train = read_pairs(folder / "train.txt")
        valid = read_pairs(folder / "valid.txt") if (folder / "valid.txt").is_file() else None
        n_items = int(max(train[:, 1].max(), -1 if valid is None else valid[:, 1].max())) + 1
        domains.append(Domain(name=name, folder=folder.name, n_items=n_items, train=train, valid=valid))
    n_users = int(max(max(d.train[:, 0].max(), -1 if d.valid is None else d.valid[:, 0].max()) for d in domains)) + 1
    return CDRData(domains=(domains[0], domains[1]), n_users=n_users)


def load_log_pair(log: str | Path, domains: tuple[str, str], *, tasks: tuple[str, ...] = ()) -> CDRData:
    """Read a Parquet behaviour log (``user_id, item_id, domain`` + ``tasks`` label columns) as a pair.

    Rows of other domains are dropped; raw ids become contiguous indices in first-seen order (users
    shared by the two domains, items per domain). With no ``tasks`` every row is one positive
    interaction; with tasks a row is kept when any label is > 0 and the labels feed the MMoE head.
    """
    path = Path(log)
    table = open_parquet(path, "behaviour log").read()
    missing = [c for c in ("user_id", "item_id", "domain", *tasks) if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; have {table.column_names}", field=missing[0])
    users_raw = np.asarray(table.column("user_id").to_pylist(), dtype=object).astype(str)
    items_raw = np.asarray(table.column("item_id").to_pylist(), dtype=object).astype(str)
    dom = np.asarray(table.column("domain").to_pylist(), dtype=object).astype(str)
    labels = (np.stack([np.asarray(table.column(t).to_numpy(zero_copy_only=False), np.float32) for t in tasks], 1)
              if tasks else np.ones((len(dom), 1), np.float32))
    keep = np.isin(dom, list(domains)) & (labels > 0).any(1)
    if not keep.any():
        raise InputError(f"{path}: no positive rows in domains {list(domains)}", field="domain")
    users_raw, items_raw, dom, labels = users_raw[keep], items_raw[keep], dom[keep], labels[keep]
    user_vocab, first = np.unique(users_raw, return_index=True)
    user_vocab = user_vocab[np.argsort(first)]
    user_index = {u: i for i, u in enumerate(user_vocab)}
    users = np.fromiter((user_index[u] for u in users_raw), np.int64, len(users_raw))
    out = []
    for name in domains:
        rows = dom == name
        if not rows.any():
            raise InputError(f"{path}: no rows of domain {name!r}", field="domain")
        vocab, first = np.unique(items_raw[rows], return_index=True)
        vocab = vocab[np.argsort(first)]
        item_index = {v: i for i, v in enumerate(vocab)}
        items = np.fromiter((item_index[v] for v in items_raw[rows]), np.int64, int(rows.sum()))
        out.append(Domain(name=name, folder=name, n_items=len(vocab), train=np.stack([users[rows], items], 1),
                          labels=labels[rows] if tasks else None, item_vocab=vocab.tolist()))
    return CDRData(domains=(out[0], out[1]), n_users=len(user_vocab), tasks=tuple(tasks) or ("interaction",),
                   user_vocab=user_vocab.tolist())


def histories(pairs: np.ndarray, n_users: int, maxlen: int) -> np.ndarray:
    """Each user's last ``maxlen`` items in file order, left-aligned, ``-1`` padded: ``(n_users, maxlen)``."""
    out = np.full((n_users, maxlen), -1, dtype=np.int64)
    if not len(pairs):
        return out
    order = np.argsort(pairs[:, 0], kind="stable")
    users, items = pairs[order, 0], pairs[order, 1]
    counts = np.bincount(users, minlength=n_users)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.arange(len(users)) - starts[users]  # position within the user's sequence
    col = pos - np.maximum(counts[users] - maxlen, 0)
    keep = col >= 0
    out[users[keep], col[keep]] = items[keep]
    return out


def item_degrees(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """Training interactions per item ``(n_items,)``."""
    return np.bincount(pairs[:, 1], minlength=n_items)


@dataclass
class Batch:
    """One training batch of domain ``domain``; item ids ``-1`` are padding.

    ``own`` is the user's history in ``domain`` with the target masked, ``other`` the history in the
    other domain; ``cold`` marks samples whose own-domain part was dropped (domain masking).
    """

    domain: int
    users: torch.Tensor  # (B,)
    pos: torch.Tensor  # (B,)
    neg: torch.Tensor  # (B, K)
    own: torch.Tensor  # (B, L)
    other: torch.Tensor  # (B, L)
    cold: torch.Tensor  # (B,) bool
    labels: torch.Tensor  # (B, T) labels of the positive; negatives are 0 for every task


def make_batch(domain: int, users: torch.Tensor, pos: torch.Tensor, hist: tuple[torch.Tensor, torch.Tensor],
               n_items: int, *, negatives: int, interaction_mask: float, domain_mask: float,
               labels: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Batch:
    """Build a batch: uniform negatives of the domain, target masking, interaction and domain masking.

    Every copy of the target item is removed from the own history (no leakage); then each history item
    is dropped with probability ``interaction_mask``; with probability ``domain_mask`` a sample loses
    its whole own-domain history and is flagged ``cold``.
    """
    b = len(users)
    own = hist[domain][users].clone()  # (B, L)
    other = hist[1 - domain][users].clone()
    own[own == pos[:, None]] = -1
    if interaction_mask > 0:
        own[torch.rand(own.shape, generator=generator) < interaction_mask] = -1
        other[torch.rand(other.shape, generator=generator) < interaction_mask] = -1
    cold = torch.rand(b, generator=generator) < domain_mask
    own[cold] = -1
    cold = cold | (own < 0).all(1)
    neg = torch.randint(0, n_items, (b, negatives), generator=generator)
    if labels is None:
        labels = torch.ones(b, 1)
    return Batch(domain, users, pos, neg, own, other, cold, labels)
