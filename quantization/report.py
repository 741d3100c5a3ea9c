"""How good a set of codes is: the figures GRID and RQ-VAE-Recommender report, plus reconstruction.

Per level: codes used (count and share of the codebook), entropy of the code distribution in bits
and normalised by ``log2(K)`` (1 = uniform use), perplexity ``2**entropy``, and the share of the most
used code. Over whole tuples: % unique ids (distinct tuples / items), collision rate (share of items
whose tuple another item also has), the largest collision group (:func:`collision_stats`), and %
unique prefixes per depth.
Reconstruction: relative error ``||X - X_hat||_F / ||X||_F``. :func:`usage_figure` (written by
:func:`plot_usage` as ``usage.png``) draws the items per code of every level, sorted (one line per level,
log scale, against the uniform ``n / K``), and what the ids are worth after each level: % unique ids
of the prefix ``c1..cj`` and % of items that share their id with another item (collisions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.io import atomic_path
from mmrec.quantization.collisions import collision_groups


def level_stats(column: np.ndarray, size: int) -> dict[str, float]:
    """Usage figures of one code column over a codebook of ``size`` codes."""
    counts = np.bincount(column, minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    return {
        "codebook_size": int(size),
        "used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()),
        "entropy_bits": entropy,
        "normalized_entropy": float(entropy / np.log2(size)) if size > 1 else 1.0,
        "perplexity": float(2**entropy),
        "max_share": float(p.max()),
    }


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    """Distinct tuples of ``(n, L)`` codes: ``unique_ids``, ``unique_id_pct``, ``collision_rate`` (share of
    items whose tuple another item also has) and ``max_collision`` (the largest group sharing one tuple)."""
    codes = np.asarray(codes)
    group, shared = collision_groups(codes)
    unique = int(group.max()) + 1 if len(group) else 0
    return {"unique_ids": unique, "unique_id_pct": 100.0 * unique / max(len(codes), 1),
            "collision_rate": float((shared > 1).mean()) if len(codes) else 0.0,
            "max_collision": int(shared.max()) if len(codes) else 0}


def code_report(codes: np.ndarray, codebook_sizes: Sequence[int], *, x: np.ndarray | None = None,
                x_hat: np.ndarray | None = None) -> dict[str, Any]:
    """The report of ``(n, L)`` codes; ``x`` and its reconstruction ``x_hat`` add the relative error."""
    codes = np.asarray(codes)
    n = len(codes)
    report: dict[str, Any] = {
        "items": n,
        "levels": [level_stats(codes[:, j], s) for j, s in enumerate(codebook_sizes)],
        **collision_stats(codes),
        "prefix_unique_pct": [100.0 * len(np.unique(codes[:, : j + 1], axis=0)) / n for j in range(codes.shape[1])],
    }
    if x is not None and x_hat is not None:
        report["relative_reconstruction_error"] = float(np.linalg.norm(x - x_hat) / max(np.linalg.norm(x), 1e-12))
    return report


def prefix_collision_pct(codes: np.ndarray) -> list[float]:
    """% of items whose prefix ``c1..cj`` another item also has, for each depth ``j``."""
    out = []
    for j in range(codes.shape[1]):
        _, inverse, counts = np.unique(codes[:, : j + 1], axis=0, return_inverse=True, return_counts=True)
        out.append(100.0 * float((counts[inverse.reshape(-1)] > 1).mean()))
    return out


def usage_figure(codes: np.ndarray, codebook_sizes: Sequence[int], *, title: str = "") -> Any:
    """The figure of ``usage.png`` (matplotlib, Agg backend): items per code, and unique ids / collisions by depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = np.asarray(codes)
    n, levels = len(codes), len(codebook_sizes)
    fig, (curves, ids) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    for j, size in enumerate(codebook_sizes):
        counts = np.sort(np.bincount(codes[:, j], minlength=size))[::-1]
        used = int((counts > 0).sum())
        line, = curves.plot(np.arange(1, size + 1), np.maximum(counts, 0.5), lw=1.4,
                            label=f"level {j + 1}: {used}/{size} codes used" if levels <= 8 else None)
        curves.axhline(n / size, color=line.get_color(), ls=":", lw=0.8)
    curves.set(xlabel="code, by number of items (rank)", ylabel="items per code (log; 0.5 = unused)", yscale="log",
               title=f"items per code (dotted: uniform {n} / K)")
    if levels <= 8:
        curves.legend(fontsize=8, loc="upper right")
    depth = np.arange(1, codes.shape[1] + 1)
    unique = [100.0 * len(np.unique(codes[:, :j], axis=0)) / n for j in depth]
    colliding = prefix_collision_pct(codes)
    width = 0.38
    ids.bar(depth - width / 2, unique, width, color="tab:blue", label="% unique ids")
    ids.bar(depth + width / 2, colliding, width, color="tab:orange", label="% items in a collision")
    if codes.shape[1] <= 12:
        for x, u, c in zip(depth, unique, colliding):
            ids.annotate(f"{u:.1f}", (x - width / 2, u), ha="center", va="bottom", fontsize=7)
            ids.annotate(f"{c:.1f}", (x + width / 2, c), ha="center", va="bottom", fontsize=7)
    ids.set(xlabel="id = codes of levels 1..j", ylabel="% of items", ylim=(0, 128), yticks=range(0, 101, 20), xticks=depth,
            title=f"ids: {unique[-1]:.1f} % unique, {colliding[-1]:.1f} % of items collide")
    ids.legend(fontsize=8, loc="upper center", ncols=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_usage(codes: np.ndarray, codebook_sizes: Sequence[int], path: str | Path, *, title: str = "") -> None:
    """Write :func:`usage_figure` as a PNG, atomically."""
    import matplotlib.pyplot as plt

    fig = usage_figure(codes, codebook_sizes, title=title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
