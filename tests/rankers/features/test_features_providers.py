"""Feature providers: cached embeddings (memory-mapped), codes, on-the-fly encoders with an LRU cache."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmrec.errors import InputError, UsageError
from mmrec.quantization.files import save_codes
from mmrec.rankers.features import ChainProvider, CodeProvider, EmbeddingProvider, EncoderProvider, FeatureProvider, parquet_source


def write_emb(path, keys, vectors, *, null=()):
    """One emb-*.parquet file in the extract layout; rows in ``null`` have a null ``fused``."""
    dim = vectors.shape[1]
    mask = np.isin(np.arange(len(keys)), list(null))
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), dim, mask=pa.array(mask))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"key": pa.array(keys), "fused": column}), path, row_group_size=3)


@pytest.fixture
def emb_dir(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 4))
    write_emb(tmp_path / "emb" / "emb-items-000000.parquet", [f"k{i}" for i in range(5)], a, null=[2])
    write_emb(tmp_path / "emb" / "emb-items-000001.parquet", [f"k{i}" for i in range(5, 9)], b)
    return tmp_path / "emb", np.concatenate([a, b]).astype(np.float32)


def test_embedding_provider_memory_maps_a_cache_and_falls_back_to_zeros(emb_dir):
    folder, vectors = emb_dir
    p = EmbeddingProvider(folder, name="content")
    assert isinstance(p, FeatureProvider) and (p.kind, p.width, len(p)) == ("dense", 4, 8)
    assert isinstance(p.vectors, np.memmap)
    out = p.lookup(["k7", "k0", "nope", "k2", "k7"])
    np.testing.assert_array_equal(out[[0, 1, 4]], vectors[[7, 0, 7]])
    assert not out[2].any() and not out[3].any()  # unknown key and null row -> zero vector
    assert (p.stats.requests, p.stats.misses) == (5, 2)
    assert "k2" not in p and "k3" in p


def test_embedding_cache_is_reused_and_rebuilt_when_the_files_change(emb_dir):
    folder, _ = emb_dir
    EmbeddingProvider(folder)
    npy = folder / ".mmrec-cache" / "fused.npy"
    stamp = npy.stat().st_mtime_ns
    EmbeddingProvider(folder)
    assert npy.stat().st_mtime_ns == stamp
    write_emb(folder / "emb-items-000001.parquet", ["new"], np.ones((1, 4)))
    os.utime(folder / "emb-items-000001.parquet", ns=(1, 1))  # a different fingerprint even within one tick
    p = EmbeddingProvider(folder)
    assert "new" in p and "k6" not in p
    np.testing.assert_array_equal(p.lookup(["new"]), np.ones((1, 4), np.float32))


def test_embedding_provider_checks_dim_and_column_with_one_line(emb_dir):
    folder, _ = emb_dir
    with pytest.raises(UsageError, match=r"has dim 4, expected 8") as err:
        EmbeddingProvider(folder, name="content", dim=8)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="no column 'image'; vector columns: fused"):
        EmbeddingProvider(folder, column="image")


def test_code_provider_reads_quantize_output_with_sizes_from_metadata(tmp_path):
    codes = np.array([[1, 2, 0], [3, 0, 1]])
    save_codes(tmp_path / "codes.parquet", ["a", "b"], codes, info={"codebook_sizes": [16, 8, 4]})
    p = CodeProvider(tmp_path, name="sid")
    assert (p.kind, p.width, p.codebook_sizes) == ("codes", 3, [16, 8, 4])
    np.testing.assert_array_equal(p.lookup(["b", "zzz", "a"]), [[3, 0, 1], [-1, -1, -1], [1, 2, 0]])
    assert (p.stats.requests, p.stats.misses) == (3, 1)
    with pytest.raises(UsageError, match="has 3 code levels, expected 4"):
        CodeProvider(tmp_path, levels=4)
    save_codes(tmp_path / "bad.parquet", ["a"], np.array([[20, 0, 0]]), info={"codebook_sizes": [16, 8, 4]})
    with pytest.raises(InputError, match="exceed the codebook sizes"):
        CodeProvider(tmp_path / "bad.parquet")


class CountingEncoder:
    """A stand-in encoder: vector = [len(text), 1]; rejects the text 'bad' like a real encoder would."""

    dim = 2
    name = "counting"

    def __init__(self):
        self.seen = []

    def embed(self, raws):
        if "bad" in raws:
            raise InputError("empty text", field="text")
        self.seen += raws
        return torch.tensor([[float(len(r)), 1.0] for r in raws])


def test_encoder_provider_lru_cache_and_fallbacks():
    enc = CountingEncoder()
    source = {"a": "x", "b": "yy", "c": "zzz", "d": "bad"}
    p = EncoderProvider(enc, source, cache_size=2, batch_size=2)
    np.testing.assert_array_equal(p.lookup(["a", "b", "a"]), [[1, 1], [2, 1], [1, 1]])
    assert enc.seen == ["x", "yy"]  # one encode per distinct key
    p.lookup(["a"])  # a is now the most recent, b the least
    p.lookup(["c"])  # evicts b
    assert list(p.cache) == ["a", "c"]
    p.lookup(["b", "a"])
    assert enc.seen == ["x", "yy", "zzz", "yy"]
    out = p.lookup(["d", "missing", "c"])
    np.testing.assert_array_equal(out, [[0, 0], [0, 0], [3, 1]])  # rejected content and no content -> zeros
    assert p.stats.misses == 2 and "d" not in p.cache
    with pytest.raises(UsageError, match="gives dim 2, expected 3"):
        EncoderProvider(enc, source, dim=3)


def test_chain_encodes_only_keys_missing_from_the_cache(emb_dir):
    folder, vectors = emb_dir
    enc = CountingEncoder()
    enc.dim = 4
    enc.embed = lambda raws: (enc.seen.extend(raws), torch.full((len(raws), 4), 7.0))[1]
    chain = ChainProvider([EmbeddingProvider(folder), EncoderProvider(enc, {"k0": "old", "new": "fresh"})])
    out = chain.lookup(["k0", "new", "none"])
    np.testing.assert_array_equal(out[0], vectors[0])
    np.testing.assert_array_equal(out[1], np.full(4, 7.0))
    assert not out[2].any() and enc.seen == ["fresh"] and chain.stats.misses == 1
    with pytest.raises(UsageError, match="cannot chain"):
        ChainProvider([EmbeddingProvider(folder), EncoderProvider(CountingEncoder(), {})])


def test_encoder_provider_with_a_real_text_encoder(tmp_path):
    pq.write_table(pa.table({"key": ["i1", "i2"], "text": ["guitar concert", "noodle soup"]}), tmp_path / "titles.parquet")
    p = EncoderProvider("hf-text:tiny", parquet_source(tmp_path / "titles.parquet", "text"), name="title")
    out = p.lookup(["i1", "i2", "i3"])
    assert out.shape == (3, p.width) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, rtol=1e-5)
    assert not out[2].any() and p.encoded == 2
    with pytest.raises(InputError, match="no column 'title'"):
        parquet_source(tmp_path / "titles.parquet", "title")
