"""SYNTHETIC cross-domain pair data with a planted structure, written in the Amazon pair format.

Users belong to one of ``groups`` latent tastes; each domain's items are split into the same groups and
a user interacts only with items of its group (plus no noise). Cold-start users of domain ``a`` have
training interactions in ``b`` only, and vice versa; a model that transfers the taste across domains
ranks their held-out items (all of their group) far above the 1-in-``groups`` chance level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_pair(root: Path, *, users: int = 240, items: tuple[int, int] = (1200, 1300), groups: int = 6,
               per_user: int = 6, cold: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, users)
    item_group = [np.arange(n) % groups for n in items]
    cold_a = np.arange(cold)  # cold in domain a: interactions in b only
    cold_b = np.arange(cold, 2 * cold)
    folders = {0: root / "aa_bb", 1: root / "bb_aa"}
    out = {"group": group, "item_group": item_group, "cold": (cold_a, cold_b)}
    for d, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        train, valid = [], []
        cold_here = cold_a if d == 0 else cold_b
        for u in range(users):
            pool = np.flatnonzero(item_group[d] == group[u])
            chosen = rng.choice(pool, per_user, replace=False)
            if u in cold_here:
                valid += [(u, i) for i in chosen[:2]]
            else:
                train += [(u, i) for i in chosen]
        for name, rows in (("train.txt", train), ("valid.txt", valid)):
            (folder / name).write_text("".join(f"{u}\t{i}\n" for u, i in rows))
    return out


def write_partner_pair(root: Path, *, users: int = 800, items: int = 1200, per_user: int = 4, cold: int = 60,
                       seed: int = 0) -> dict:
    """SYNTHETIC pair whose only signal is in co-interactions: source item j of domain ``aa`` has one
    partner ``π(j)`` in ``bb`` (a random permutation); every user takes ``per_user`` uniform random items
    in ``aa`` and their partners in ``bb``. No groups, no popularity: a cold user of ``bb`` (the first
    ``cold`` users, ``aa`` rows only) is recovered only by linking its ``aa`` items to their partners
    through the other users who took both."""
    rng = np.random.default_rng(seed)
    partner = rng.permutation(items)
    rows = {0: ([], []), 1: ([], [])}  # domain -> (train, valid)
    for u in range(users):
        chosen = rng.choice(items, per_user, replace=False)
        rows[0][0].extend((u, j) for j in chosen)
        (rows[1][1] if u < cold else rows[1][0]).extend((u, partner[j]) for j in chosen[:2 if u < cold else None])
    for d, folder in ((0, root / "aa_bb"), (1, root / "bb_aa")):
        folder.mkdir(parents=True, exist_ok=True)
        for name, pairs in zip(("train.txt", "valid.txt"), rows[d]):
            if pairs:
                (folder / name).write_text("".join(f"{u}\t{i}\n" for u, i in pairs))
    return {"partner": partner}


def write_mixed_pair(root: Path, *, users: int = 900, items: int = 1200, groups: int = 10, cold: int = 60,
                     seed: int = 0) -> dict:
    """SYNTHETIC pair with two kinds of users, ``partner`` (even ids) and ``taste`` (odd ids).

    - partner users: 3 items of the first half of ``aa`` and their partners ``π(j)`` in ``bb`` (first
      half): their ``bb`` signal is in co-interactions, the count finds it;
    - taste users: 24 random items of the second half of ``aa`` (no structure) and 8 ``bb`` items of
      their latent group (second half of ``bb``, ``groups`` groups): their ``bb`` signal is in their own
      domain's taste, and their co-counts are noise.
    The first ``cold`` users (both kinds) are cold in ``bb``: 2 held-out items each in ``bb_aa/valid.txt``.
    """
    rng = np.random.default_rng(seed)
    half = items // 2
    partner = rng.permutation(half)
    group = rng.integers(0, groups, users)
    rows = {0: [], 1: [], "valid": []}
    for u in range(users):
        if u % 2 == 0:
            src = rng.choice(half, 3, replace=False)
            tgt = partner[src]
        else:
            src = half + rng.choice(items - half, 24, replace=False)
            pool = half + np.flatnonzero(np.arange(items - half) % groups == group[u])
            tgt = rng.choice(pool, 8, replace=False)
        rows[0].extend((u, j) for j in src)
        if u < cold:
            rows["valid"].extend((u, i) for i in tgt[:2])
        else:
            rows[1].extend((u, i) for i in tgt)
    for d, folder in ((0, root / "aa_bb"), (1, root / "bb_aa")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.txt").write_text("".join(f"{u}\t{i}\n" for u, i in rows[d]))
    (root / "bb_aa" / "valid.txt").write_text("".join(f"{u}\t{i}\n" for u, i in rows["valid"]))
    return {"partner_users": np.arange(0, cold, 2), "taste_users": np.arange(1, cold, 2)}
