"""``usage.png``: items per code per level and, by depth, % unique ids and % items in a collision (not a
codebook-usage bar that is always 100 %). SYNTHETIC codes with planted collisions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from mmrec.quantization.report import code_report, plot_usage, prefix_collision_pct, usage_figure


def _planted_codes():
    """SYNTHETIC: 400 items; level 1 uses 4 of 16 codes, (c1, c2) is unique except 40 items in 20 pairs."""
    c1 = np.arange(400) % 4
    c2 = np.arange(400) // 4 % 100  # with c1, every (c1, c2) a distinct pair ...
    c2[:40:2] = c2[1:40:2]
    c1[:40:2] = c1[1:40:2]  # ... but items 2i and 2i+1 (i < 20) share their id
    return np.stack([c1, c2], 1)


def test_collisions_by_depth_match_the_planted_pairs():
    codes = _planted_codes()
    assert prefix_collision_pct(codes) == [100.0, pytest.approx(10.0)]
    assert 100 - prefix_collision_pct(codes)[-1] == pytest.approx(100 * (1 - code_report(codes, [16, 100])["collision_rate"]))


def test_usage_figure_shows_unique_ids_and_collisions(tmp_path):
    codes = _planted_codes()
    fig = usage_figure(codes, [16, 100], title="rq-kmeans: 400 items, 2 levels")
    curves, ids = fig.axes
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["level 1: 4/16 codes used", "level 2: 100/100 codes used"]
    heights = [round(b.get_height(), 1) for b in ids.patches]
    assert heights == [1.0, 95.0, 100.0, 10.0]  # % unique ids at depth 1, 2; % colliding at depth 1, 2
    assert ids.get_title() == "ids: 95.0 % unique, 10.0 % of items collide"
    assert {t.get_text() for t in ids.texts} == {"1.0", "95.0", "100.0", "10.0"}
    plt.close(fig)
    plot_usage(codes, [16, 100], tmp_path / "usage.png", title="t")
    assert Image.open(tmp_path / "usage.png").format == "PNG" and not list(tmp_path.glob(".tmp-*"))


def test_many_levels_get_no_legend():
    codes = np.random.default_rng(1).integers(0, 8, size=(200, 10))
    fig = usage_figure(codes, [8] * 10)
    assert fig.axes[0].get_legend() is None and fig.axes[1].get_legend() is not None
    plt.close(fig)
