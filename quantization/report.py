"""How good a set of codes is: the figures GRID and RQ-VAE-Recommender report, plus reconstruction.

Per level: codes used (count and share of the codebook), entropy of the code distribution in bits
and normalised by ``log2(K)`` (1 = uniform use), perplexity ``2**entropy``, and the share of the most
used code. Over whole tuples: % unique ids (distinct tuples / items), collision rate (share of items
whose tuple another item also has), the largest collision group (:func:`collision_stats`), and %
unique prefixes per depth.
Reconstruction: relative error ``||X - X_hat||_F / ||X||_F``. :func:`plot_usage` draws the sorted code
counts of every level (one line per level, log scale) and the share of each codebook used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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


def plot_usage(codes: np.ndarray, codebook_sizes: Sequence[int], path: str | Path, *, title: str = "") -> None:
    """Write a PNG of code usage per level (sorted counts; share of each codebook used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    used = []
    for j, size in enumerate(codebook_sizes):
        counts = np.sort(np.bincount(codes[:, j], minlength=size))[::-1]
        curves.plot(np.arange(1, size + 1), np.maximum(counts, 0.5), label=f"c{j + 1}", lw=1.2)
        used.append(100.0 * (counts > 0).mean())
    curves.set(xlabel="code rank", ylabel="items (log)", yscale="log", title="items per code, sorted")
    if len(codebook_sizes) <= 10:
        curves.legend(fontsize=8)
    bars.bar([f"c{j + 1}" for j in range(len(used))], used, color="tab:blue")
    bars.set(ylim=(0, 105), ylabel="% of codebook used", title="codebook usage")
    bars.tick_params(axis="x", labelrotation=90 if len(used) > 10 else 0, labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
