"""SYNTHETIC sequences with a planted next-item rule, written in the formats `mmrec seq import` reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def planted(users: int = 300, items: int = 40, length: int = 8, seed: int = 0, noise: float = 0.0) -> list[list[int]]:
    """SYNTHETIC: each user starts at a random item and follows ``next = (7 * item + 3) % items``
    (a permutation), an item replaced by a random one with probability ``noise``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        seq = [int(rng.integers(items))]
        for _ in range(length - 1):
            seq.append((7 * seq[-1] + 3) % items if rng.random() >= noise else int(rng.integers(items)))
        out.append(seq)
    return out


def write_lcrec(folder: Path, name: str, sequences: list[list[int]], texts: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps({f"u{u}": s for u, s in enumerate(sequences)}))
    if texts is not None:
        (folder / f"{name}.item.json").write_text(json.dumps(texts))
    return folder


def planted_groups(users: int = 400, groups: int = 8, per_group: int = 5, length: int = 8, seed: int = 0):
    """SYNTHETIC content-only rule: items come in ``groups`` of ``per_group`` frequent items plus one
    rare item each; a user walks group ``g`` -> ``g + 1`` picking a random frequent item. Every user's
    last item (the validation target) is the next group's rare item for half of the users: a rare
    item never occurs in the training part, so its id embedding stays untrained and only its group
    (visible in the content vector and the code) tells where it belongs.

    Returns ``(sequences, group of each item (n_items,))``; item ``g * (per_group + 1) + per_group``
    is group ``g``'s rare item.
    """
    rng = np.random.default_rng(seed)
    size = per_group + 1
    group_of = np.repeat(np.arange(groups), size)
    out = []
    for u in range(users):
        g = int(rng.integers(groups))
        seq = []
        for _ in range(length):
            seq.append(g * size + int(rng.integers(per_group)))
            g = (g + 1) % groups
        if u % 2:
            seq[-1] = ((g - 1) % groups) * size + per_group
        out.append(seq)
    return out, group_of
