"""Ranking metrics: AUC, UAUC and GAUC, per task and per domain.

- AUC: the probability that a random positive scores above a random negative (ties count 1/2),
  from average ranks (Mann-Whitney U).
- UAUC: the unweighted mean of per-user AUCs; GAUC: their mean weighted by each user's
  impressions. Both use only users with at least one positive and one negative, as the MMBee and
  PEPNet papers report them.
:func:`grouped_auc` computes every group's AUC in one sort, with no Python loop over users.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group ``(auc, impressions, valid)``; ``auc`` is NaN where ``valid`` is False (one class only)."""
    labels = np.asarray(labels, np.float64)
    scores = np.asarray(scores, np.float64)
    groups = np.asarray(groups)
    if not len(labels):
        return np.zeros(0), np.zeros(0), np.zeros(0, bool)
    _, gid = np.unique(groups, return_inverse=True)
    order = np.lexsort((scores, gid))
    g, s, y = gid[order], scores[order], labels[order]
    n = len(g)
    new_group = np.r_[True, g[1:] != g[:-1]]
    group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]  # (n,) first position of each row's group
    new_run = new_group | np.r_[True, s[1:] != s[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    run_last = np.r_[run_first[1:], n] - 1
    rank = (run_first[run_id] + run_last[run_id]) / 2 - group_start + 1  # average 1-based rank within the group
    count = np.bincount(g).astype(np.float64)
    pos = np.bincount(g, weights=y)
    neg = count - pos
    rank_sum = np.bincount(g, weights=rank * y)
    valid = (pos > 0) & (neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(valid, (rank_sum - pos * (pos + 1) / 2) / (pos * neg), np.nan)
    return auc, count, valid


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC over all rows; NaN when only one class is present."""
    a, _, _ = grouped_auc(labels, scores, np.zeros(len(labels), np.int64))
    return float(a[0]) if len(a) else math.nan


def uauc_gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> tuple[float, float, int]:
    """``(UAUC, GAUC, users counted)`` over the users with both classes."""
    a, count, valid = grouped_auc(labels, scores, users)
    if not valid.any():
        return math.nan, math.nan, 0
    return float(a[valid].mean()), float((a[valid] * count[valid]).sum() / count[valid].sum()), int(valid.sum())


def metrics_table(labels: np.ndarray, mask: np.ndarray, scores: np.ndarray, domains: np.ndarray, users: np.ndarray,
                  tasks: Sequence[str], domain_names: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {domain or "all": {auc, uauc, gauc, users, n, positive_rate}}}`` over the observed labels.

    labels, mask, scores ``(N, K)``; domains ``(N,)`` ids into ``domain_names``; users ``(N,)``.
    """
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for k, task in enumerate(tasks):
        table[task] = {}
        for name, rows in [("all", mask[:, k])] + [(d, mask[:, k] & (domains == i)) for i, d in enumerate(domain_names)]:
            if not rows.any():
                continue
            y, s, u = labels[rows, k], scores[rows, k], users[rows]
            uauc, gauc, n_users = uauc_gauc(y, s, u)
            table[task][name] = {"auc": auc(y, s), "uauc": uauc, "gauc": gauc, "users": n_users,
                                 "n": int(rows.sum()), "positive_rate": float(y.mean())}
    return table


def format_table(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The metrics table as aligned text, one line per task x domain."""
    lines = [f"{'task':<12} {'domain':<10} {'AUC':>7} {'UAUC':>7} {'GAUC':>7} {'n':>9} {'pos%':>6}"]
    for task, by_domain in table.items():
        for domain, m in by_domain.items():
            lines.append(f"{task:<12} {domain:<10} {m['auc']:7.4f} {m['uauc']:7.4f} {m['gauc']:7.4f} "
                         f"{m['n']:9d} {100 * m['positive_rate']:6.1f}")
    return "\n".join(lines)
