"""The recall-vs-QPS PNG of ``mmrec index eval``: the swept knob labelled, the chosen point marked, no
curve (and no legend) for Flat. SYNTHETIC planted-topic vectors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from index_data import planted
from PIL import Image

from mmrec.pipelines.index import build_index, curve_figure, evaluate_index


@pytest.fixture(scope="module")
def x():
    return planted(3000)[0]


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_ivf_curve_labels_nprobe_and_stars_the_chosen_value(tmp_path, x):
    folder = tmp_path / "ivf"
    build_index(x, folder, "faiss:IVF32,Flat", progress=False, target_recall=0.9)
    report = evaluate_index(folder, x, n_queries=100, ks=(1, 10))
    assert Image.open(report["png"]).format == "PNG"
    chosen = {"value": report["search_params"]["nprobe"], "recall": report["recall"]["10"], "qps": report["qps"]}
    fig = curve_figure(report["curve"], title="t", param="nprobe", chosen=chosen, target=0.9)
    ax = fig.axes[0]
    assert _texts(ax) == [f"nprobe={p['value']}" for p in report["curve"]]
    labels = ax.get_legend_handles_labels()[1]
    assert labels[0] == "nprobe swept" and labels[1].startswith(f"chosen: nprobe={chosen['value']} ")
    assert labels[2] == "target recall@10 = 0.9" and ax.get_legend() is not None
    star = [line for line in ax.lines if line.get_marker() == "*"][0]
    assert tuple(star.get_xydata()[0]) == (chosen["qps"], chosen["recall"])
    plt.close(fig)


def test_flat_has_one_point_no_curve_and_no_legend(tmp_path, x):
    points = [{"value": None, "recall": 1.0, "qps": 5000.0}]
    fig = curve_figure(points, title="Flat", param=None, chosen=None)
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and ax.lines[0].get_linestyle() == "None" and ax.get_legend() is None
    assert _texts(ax) == ["exact search, no knob to sweep: 5000 QPS"]
    plt.close(fig)
    folder = tmp_path / "flat"
    build_index(x, folder, "faiss:Flat", progress=False)
    assert Image.open(evaluate_index(folder, x, n_queries=50, ks=(10,))["png"]).format == "PNG"
