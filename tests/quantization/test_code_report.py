import numpy as np
import pytest
from PIL import Image

from mmrec.quantization.report import code_report, plot_usage


def test_report_figures_on_known_codes():
    codes = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [0, 0], [0, 1]])
    report = code_report(codes, [4, 8], x=np.ones((6, 3)), x_hat=np.zeros((6, 3)))
    first, second = report["levels"]
    assert first["used"] == 4 and first["usage"] == 1.0 and second["used"] == 4 and second["usage"] == 0.5
    p = np.array([3, 1, 1, 1]) / 6
    assert first["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum())
    assert first["normalized_entropy"] == pytest.approx(first["entropy_bits"] / 2)
    assert first["max_share"] == pytest.approx(0.5)
    assert report["unique_ids"] == 5 and report["unique_id_pct"] == pytest.approx(500 / 6)
    assert report["collision_rate"] == pytest.approx(2 / 6) and report["max_collision"] == 2
    assert report["prefix_unique_pct"] == [pytest.approx(400 / 6), pytest.approx(500 / 6)]
    assert report["relative_reconstruction_error"] == pytest.approx(1.0)


def test_uniform_codes_have_full_entropy():
    codes = np.arange(64).reshape(-1, 1) % 16
    level = code_report(codes, [16])["levels"][0]
    assert level["normalized_entropy"] == pytest.approx(1.0) and level["perplexity"] == pytest.approx(16)


def test_usage_png(tmp_path):
    codes = np.random.default_rng(0).integers(0, 32, size=(500, 3))
    plot_usage(codes, [32, 32, 32], tmp_path / "usage.png", title="t")
    image = Image.open(tmp_path / "usage.png")
    assert image.format == "PNG" and image.size[0] > 500
    assert not list(tmp_path.glob(".tmp-*"))
