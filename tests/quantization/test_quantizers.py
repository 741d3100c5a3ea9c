"""Behaviour shared by every quantizer in QUANTIZERS: shapes, save/load, bad input."""

import numpy as np
import pytest
from quant_data import blobs

from mmrec.errors import UsageError
from mmrec.quantization import QUANTIZERS, load_quantizer
from mmrec.quantization.base import CodeQuantizer

SMALL = {
    "rq-kmeans": dict(levels=2, codebook_size=8, niter=10),
    "balanced": dict(levels=2, codebook_size=8, niter=5),
    "vq": dict(levels=5),
    "rq-vae": dict(levels=2, codebook_size=8, epochs=3, batch_size=64, latent_dim=8, hidden=(32,)),
}
METHODS = sorted(SMALL)


def test_registry_names():
    assert QUANTIZERS.names() == METHODS
    with pytest.raises(UsageError, match="unknown quantizer 'pq'; known: balanced, rq-kmeans, rq-vae, vq"):
        QUANTIZERS.get("pq")


@pytest.mark.parametrize("method", METHODS)
def test_fit_transform_shapes_and_consistency(method):
    x, _ = blobs()
    q = QUANTIZERS.build(method, **SMALL[method])
    codes = q.fit_transform(x)
    assert isinstance(q, CodeQuantizer) and q.method == method
    assert codes.dtype == np.int64 and codes.shape == (len(x), len(q.codebook_sizes))
    assert (codes >= 0).all() and (codes < np.array(q.codebook_sizes)).all()
    assert q.reconstruct(codes).shape == x.shape
    if method in ("rq-kmeans", "rq-vae"):  # nearest-centroid methods: transform reproduces the fit codes
        assert np.array_equal(q.transform(x), codes)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_is_exact(method, tmp_path):
    x, _ = blobs()
    q = QUANTIZERS.build(method, **SMALL[method])
    codes = q.fit_transform(x)
    q.save(tmp_path / "codebook.safetensors")
    loaded = load_quantizer(tmp_path / "codebook.safetensors")
    assert type(loaded) is type(q) and loaded.config == q.config and loaded.dim == q.dim
    assert loaded.codebook_sizes == q.codebook_sizes
    assert np.array_equal(loaded.transform(x), q.transform(x))
    assert np.array_equal(loaded.reconstruct(codes), q.reconstruct(codes))
    for name, tensor in q._state().items():
        assert np.array_equal(loaded._state()[name], tensor), name


@pytest.mark.parametrize("method", METHODS)
def test_bad_input_is_a_clear_usage_error(method):
    x, _ = blobs()
    q = QUANTIZERS.build(method, **SMALL[method])
    for bad_value in (np.nan, np.inf):
        bad = x.copy()
        bad[7, 3] = bad_value
        with pytest.raises(UsageError, match="row 7 has NaN or inf"):
            q.fit(bad)
    with pytest.raises(UsageError, match="not fitted"):
        q.transform(x)
    with pytest.raises(UsageError, match=r"fewer than the codebook needs"):
        QUANTIZERS.build(method, **SMALL[method]).fit(x[:5])
    with pytest.raises(UsageError, match=r"\(n, d\) matrix"):
        q.fit(x[0])
    q.fit(x)
    with pytest.raises(UsageError, match="have dim 15, expected 16"):
        q.transform(x[:, :15])
    with pytest.raises(UsageError, match="codes out of range"):
        q.reconstruct(np.full((2, len(q.codebook_sizes)), 10**6))


def test_unknown_option_and_wrong_file(tmp_path):
    with pytest.raises(UsageError, match=r"rq-kmeans: unknown field 'epochs'; known: levels, codebook_size"):
        QUANTIZERS.build("rq-kmeans", epochs=3)
    x, _ = blobs()
    QUANTIZERS.build("vq", levels=3).fit(x).save(tmp_path / "vq.safetensors")
    from mmrec.errors import InputError
    from mmrec.quantization.rq_kmeans import RQKMeans

    with pytest.raises(InputError, match="holds a 'vq' quantizer"):
        RQKMeans.load(tmp_path / "vq.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_quantizer(tmp_path / "junk.safetensors")
