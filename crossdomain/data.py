"""Cross-domain interaction data built from arrays: two domains sharing users, histories, training batches.

A :class:`CDRData` holds two :class:`Domain` s whose ``(user, item)`` index pairs are in interaction
order, with one user index space. Files are read by :mod:`mmrec.crossdomain.files` (the
``user<TAB>item`` pair folders of the public Amazon CDR data, Parquet behaviour logs through
:mod:`mmrec.logs`); :func:`log_pair` turns the columns of a log into a pair, mapping raw ids to
contiguous indices (the vocabularies are kept with the data and saved with a run).

Decisions ([I]): the txt files have no timestamps, so a user's sequence is the *file order* of that
user's lines (FARM's Fourier transform needs an order); a history is the last ``maxlen`` items of that
sequence. A training sample never sees its target item in the history it is scored with: every copy
of the target is masked (:func:`make_batch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmrec.errors import InputError, UsageError


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
    user_vocab: list[str] | None = None  # raw user ids of a Parquet log, index -> raw id
    item_content: tuple[np.ndarray, np.ndarray] | None = None  # per-domain (n_items, E) multimodal item vectors
    shared_users: int | None = None  # users 0..N-1 are the same person in both domains; None = every user

    def shared_mask(self) -> np.ndarray:
        """``(n_users,)`` bool: the users whose two domains' rows belong to one person."""
        n = self.n_users if self.shared_users is None else self.shared_users
        return np.arange(self.n_users) < n

    def domain_index(self, name: str) -> int:
        names = [d.name for d in self.domains]
        if name not in names:
            raise UsageError(f"unknown domain {name!r}; this pair has {names}")
        return names.index(name)

    def raw_user_ids(self, users: np.ndarray) -> list[str]:
        """The raw ids of user indices ``users``: the log's ids, or the integer ids of the pair files."""
        return [self.user_vocab[u] for u in users] if self.user_vocab is not None else [str(u) for u in users]


def _first_seen_vocab(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(vocabulary in first-seen order, index of each value)``."""
    vocab, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return vocab[order], rank[inverse.reshape(-1)]


def log_pair(user_id: np.ndarray, item_id: np.ndarray, domain: np.ndarray, domains: tuple[str, str], *,
             labels: np.ndarray | None = None, tasks: Sequence[str] = (), source: str = "log") -> CDRData:
    """The pair of ``domains`` from behaviour-log columns (``(N,)`` raw ids and domain names, ``labels``
    ``(N, T)`` for the ``tasks`` or None).

    Rows of other domains are dropped; raw ids become contiguous indices in first-seen order (users
    shared by the two domains, items per domain). With no ``tasks`` every row is one positive
    interaction; with tasks a row is kept when any label is > 0 and the labels feed the MMoE head.
    ``source`` names the input in errors.
    """
    users_raw, items_raw = np.asarray(user_id).astype(str), np.asarray(item_id).astype(str)
    dom = np.asarray(domain).astype(str)
    labels = np.ones((len(dom), 1), np.float32) if labels is None else np.asarray(labels, np.float32)
    keep = np.isin(dom, list(domains)) & (labels > 0).any(1)
    if not keep.any():
        raise InputError(f"{source}: no positive rows in domains {list(domains)}", field="domain")
    users_raw, items_raw, dom, labels = users_raw[keep], items_raw[keep], dom[keep], labels[keep]
    user_vocab, users = _first_seen_vocab(users_raw)
    out = []
    for name in domains:
        rows = dom == name
        if not rows.any():
            raise InputError(f"{source}: no rows of domain {name!r}", field="domain")
        vocab, items = _first_seen_vocab(items_raw[rows])
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


def domain_histories(data: CDRData, maxlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`histories` of both domains' training pairs, as tensors."""
    return tuple(torch.as_tensor(histories(d.train, data.n_users, maxlen)) for d in data.domains)


def other_histories(data: CDRData, hist: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``hist`` as the *other* domain's history: empty rows for users not shared by the two domains
    (:attr:`CDRData.shared_users`: on the Amazon pairs only the common users' ids name one person in
    both domains; the other ids coincide by re-indexing and belong to two different people)."""
    if data.shared_users is None:
        return hist
    alien = torch.as_tensor(~data.shared_mask())[:, None]
    return tuple(h.masked_fill(alien, -1) for h in hist)


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

    def to(self, device: torch.device | str) -> Batch:
        """The batch with every tensor on ``device`` (batches are drawn on the CPU, one random stream whatever the device)."""
        return Batch(self.domain, *(getattr(self, f.name).to(device) for f in dataclasses.fields(self)[1:]))


def make_batch(domain: int, users: torch.Tensor, pos: torch.Tensor, hist: tuple[torch.Tensor, torch.Tensor],
               n_items: int, *, negatives: int, interaction_mask: float, domain_mask: float,
               labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               other_hist: tuple[torch.Tensor, torch.Tensor] | None = None) -> Batch:
    """Build a batch: uniform negatives of the domain, target masking, interaction and domain masking.

    Every copy of the target item is removed from the own history (no leakage); then each history item
    is dropped with probability ``interaction_mask``; with probability ``domain_mask`` a sample loses
    its whole own-domain history and is flagged ``cold``. ``other_hist``: the histories read as the other
    domain's (:func:`other_histories`; default ``hist``).
    """
    b = len(users)
    own = hist[domain][users].clone()  # (B, L)
    other = (hist if other_hist is None else other_hist)[1 - domain][users].clone()
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
