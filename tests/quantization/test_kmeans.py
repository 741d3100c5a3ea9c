import numpy as np
import pytest

from mmrec.errors import UsageError
from mmrec.quantization.kmeans import assign, balanced_kmeans, kmeans


def _blobs(n_per=50, k=4, d=8, seed=0):
    """SYNTHETIC: k well-separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10, size=(k, d))
    sizes = [n_per] * k
    x = np.concatenate([centers[i] + rng.normal(size=(s, d)) for i, s in enumerate(sizes)])
    return x.astype(np.float32), np.repeat(np.arange(k), sizes)


def test_kmeans_recovers_blobs():
    x, truth = _blobs()
    labels, _ = assign(x, kmeans(x, 4, nredo=5, seed=1))
    # each found cluster is exactly one planted blob
    assert all(len(set(truth[labels == c])) == 1 for c in np.unique(labels))
    assert len(np.unique(labels)) == 4


@pytest.mark.parametrize("n,k", [(100, 7), (500, 4), (64, 64)])
def test_balanced_clusters_differ_by_at_most_one(n, k):
    x = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    _, labels = balanced_kmeans(x, k)
    sizes = np.bincount(labels, minlength=k)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n


def test_bad_vectors_are_usage_errors():
    x = np.ones((10, 4), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(UsageError, match="row 3 has NaN"):
        kmeans(x, 2)
    with pytest.raises(UsageError, match="cannot make 20 clusters from 10"):
        kmeans(np.ones((10, 4)), 20)


def _reference_balanced_assign(x, centroids):
    """The plain O(k n log n) formulation: each centroid takes its nearest free vectors by stable sort."""
    from mmrec.quantization.kmeans import _sq_dists

    n, k = len(x), len(centroids)
    dists = _sq_dists(x, centroids)
    sizes = np.full(k, n // k)
    order = np.argsort(dists.min(axis=0), kind="stable")
    sizes[order[: n % k]] += 1
    labels, free = np.full(n, -1), np.ones(n, dtype=bool)
    for c in order:
        candidates = np.flatnonzero(free)
        take = candidates[np.argsort(dists[candidates, c], kind="stable")[: sizes[c]]]
        labels[take], free[take] = c, False
    return labels


@pytest.mark.parametrize("ties", [False, True])
def test_balanced_assign_matches_the_sorting_formulation(ties):
    from mmrec.quantization.kmeans import balanced_assign

    rng = np.random.default_rng(1)
    x = (rng.integers(0, 3, size=(300, 2)) if ties else rng.normal(size=(300, 5))).astype(np.float32)
    centroids = x[rng.choice(300, size=13, replace=False)] + (0 if ties else 0.01)
    assert np.array_equal(balanced_assign(x, centroids), _reference_balanced_assign(x, centroids))
