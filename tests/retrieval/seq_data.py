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
