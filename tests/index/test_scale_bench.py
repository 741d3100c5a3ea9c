"""bench/scale.py at its smallest size (10k SYNTHETIC items): every index finds the planted neighbourhoods
at the recall target it was tuned to, and the growth exponent fit reads a power law back."""

import importlib.util
import json
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("scale_bench", Path(__file__).resolve().parents[2] / "bench" / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


def test_smallest_size_recovers_the_planted_neighbourhoods(tmp_path):
    rows = scale.main(["--sizes", "10k", "--dims", "32", "--methods", "flat,ivf,tree", "--queries", "200",
                       "--out", str(tmp_path / "run"), "--plots", str(tmp_path / "plots")])
    by = {r["method"]: r for r in rows}
    assert set(by) == {"flat", "ivf", "tree"} and all(r["n"] == 10_000 and r["dim"] == 32 for r in rows)
    assert by["flat"]["recall@100"] == 1.0 and by["flat"]["planted_recovered"] >= 0.99  # the planted groups are the top-10
    for method in ("ivf", "tree"):
        assert by[method]["target_reached"] and by[method]["recall@100"] >= 0.9
        assert by[method]["planted_recovered"] >= 0.95
        assert 0 < by[method]["scored_pct"] < 50 and by[method]["build_s"] > 0
    assert json.loads((tmp_path / "run" / "rows.json").read_text()) == rows
    assert (tmp_path / "plots" / "scaling-cost.png").stat().st_size > 0


def test_growth_exponent_reads_back_a_power_law():
    n = [1e4, 1e5, 1e6]
    assert abs(scale.growth_exponent(n, [3 * v**0.5 for v in n]) - 0.5) < 1e-9
    assert scale.growth_exponent([1e4], [1.0]) is None


def test_planted_groups_are_each_others_nearest_neighbours():
    from mmrec.synthetic.vectors import planted_clusters

    x, group, q, q_group = planted_clusters(3000, 16, n_queries=50, seed=1)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5) and x.dtype == np.float32
    top = np.argsort(-(q @ x.T), axis=1)[:, :10]  # a query's 10 nearest items are its group's 10 items
    assert (group[top] == q_group[:, None]).mean() == 1.0
    shuffled = np.random.default_rng(0).permutation(group)
    assert (shuffled[top] == q_group[:, None]).mean() < 0.1  # not by chance


def test_catalogue_rows_at_a_tiny_size():
    """The trie row counts the distinct code tuples drawn; both training losses run the pipeline's step."""
    trie = scale.run_trie(3000, seed=2, users=4, history=5, beam=4, min_s=0.01)
    codes = np.random.default_rng(2).integers(0, scale.CODEBOOK, (3000, scale.LEVELS))
    assert trie["tuples"] == len(np.unique(codes, axis=0)) and trie["trie_mb"] > 0 and trie["users_per_s"] > 0
    for loss in ("full", "inbatch"):
        row = scale.run_softmax(loss, 500, seed=0, batch=20, dim=8, history=5, min_s=0.01)
        assert row["samples_per_s"] > 0 and loss in row["config"]
