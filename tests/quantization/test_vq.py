import numpy as np
import pytest

from mmrec.errors import UsageError
from mmrec.quantization.vq import VQCodes


def _brute_knn(queries, bank, k, exclude=None):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = q @ b.T
    if exclude is not None:
        sims[np.arange(len(q)), exclude] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_codes_are_the_nearest_other_items():
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    codes = VQCodes(levels=7).fit_transform(x)
    assert np.array_equal(codes, _brute_knn(x, x, 7, exclude=np.arange(300)))
    assert not (codes == np.arange(300)[:, None]).any()  # never itself
    new = np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32)
    q = VQCodes(levels=7).fit(x)
    assert np.array_equal(q.transform(new), _brute_knn(new, x, 7))


def test_bank_subset_codes_point_into_the_bank():
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    q = VQCodes(levels=4, codebook_size=50, seed=2)
    codes = q.fit_transform(x)
    assert q.codebook_sizes == [50] * 4 and len(np.unique(q.bank_rows)) == 50
    assert codes.max() < 50
    in_bank = np.full(200, -1)
    in_bank[q.bank_rows] = np.arange(50)
    expected = _brute_knn(x, x[q.bank_rows], 4, exclude=None)
    outside = in_bank < 0
    assert np.array_equal(codes[outside], expected[outside])
    members = np.flatnonzero(~outside)
    assert not (codes[members] == in_bank[members][:, None]).any()


def test_too_few_items_for_k():
    with pytest.raises(UsageError, match="fewer than the codebook needs"):
        VQCodes(levels=25).fit(np.random.default_rng(0).normal(size=(20, 4)))
