import numpy as np
import pytest
from quant_data import blobs

from mmrec.quantization.rq_kmeans import BalancedRQKMeans, RQKMeans
from mmrec.store import read_embeddings


def _purity(labels, truth):
    return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(truth)


def test_first_level_recovers_planted_topics_of_sample_items(sample_items):
    _, x = read_embeddings(sample_items["emb"], "fused")
    topics = sample_items["topics"]
    codes = RQKMeans(levels=2, codebook_size=8, nredo=3).fit_transform(x)
    chance = np.bincount(topics).max() / len(topics)  # purity of a single cluster
    purity = _purity(codes[:, 0], topics)
    assert purity >= 0.8 and purity > 4 * chance, (purity, chance)


def test_residual_levels_refine_the_reconstruction():
    x, _ = blobs(n_per=60, k=5, d=12)
    q = RQKMeans(levels=3, codebook_size=16)
    codes = q.fit_transform(x)
    errors = [np.linalg.norm(x - sum(q.codebooks[j][codes[:, j]] for j in range(depth))) for depth in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
    assert np.allclose(q.reconstruct(codes), sum(q.codebooks[j][codes[:, j]] for j in range(3)), atol=1e-5)


@pytest.mark.parametrize("n, k", [(200, 7), (130, 16), (64, 64)])
def test_balanced_levels_have_sizes_within_one(n, k):
    x = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    codes = BalancedRQKMeans(levels=3, codebook_size=k, niter=5).fit_transform(x)
    for level in range(3):
        sizes = np.bincount(codes[:, level], minlength=k)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n


def test_balanced_spreads_a_skewed_set_that_plain_kmeans_does_not():
    x, _ = blobs(n_per=20, k=3, d=8)
    x = np.concatenate([x, np.repeat(x[:1], 200, axis=0) + 0.01])  # a dense clump
    plain = RQKMeans(levels=1, codebook_size=8).fit_transform(x)[:, 0]
    balanced = BalancedRQKMeans(levels=1, codebook_size=8).fit_transform(x)[:, 0]
    assert np.bincount(plain).max() > 2 * np.bincount(balanced).max()


def test_seeded_fit_is_deterministic():
    x, _ = blobs()
    a = RQKMeans(levels=2, codebook_size=8, seed=3).fit_transform(x)
    b = RQKMeans(levels=2, codebook_size=8, seed=3).fit_transform(x)
    assert np.array_equal(a, b)
