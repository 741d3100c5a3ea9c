import numpy as np
import pytest
from quant_data import blobs, write_emb

from mmrec.errors import UsageError
from mmrec.pipelines.quantize import quantize
from mmrec.quantization.collisions import add_suffix, collision_groups, distinct_assign
from mmrec.quantization.files import load_codes


def test_suffix_numbers_colliding_items_by_residual_norm():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    residual = np.array([[3.0], [1.0], [5.0], [2.0]])
    out = add_suffix(codes, residual)
    assert out[:, 2].tolist() == [2, 0, 0, 1]
    assert len(np.unique(out, axis=0)) == 4
    group, size = collision_groups(codes)
    assert size.tolist() == [3, 3, 1, 3] and group[0] == group[1] == group[3] != group[2]


def test_distinct_assign_separates_only_colliding_items():
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    residual = np.array([[0.1, 0], [0.2, 0], [0.3, 0], [9, 0]], np.float32)
    codes = np.array([[5], [5], [6], [5]])  # rows 0, 1, 3 collide; row 2 is alone
    labels = distinct_assign(residual, centroids, codes)
    assert labels[2] == 0  # alone: its nearest centroid, even though row 0 also takes 0
    assert labels[0] == 0 and labels[3] == 1 and labels[1] == 2  # closest pairs first, all distinct
    with pytest.raises(UsageError, match="shared by 4 items but the extra level has only 3"):
        distinct_assign(residual, centroids, np.zeros((4, 1), int))


@pytest.mark.parametrize("method, dedup", [("rq-kmeans", "suffix"), ("rq-kmeans", "level"), ("balanced", "level"), ("vq", "suffix")])
def test_dedup_makes_every_id_unique(tmp_path, method, dedup):
    x, _ = blobs(n_per=50, k=4, d=8, scale=1.0)
    write_emb(tmp_path / "emb", x)
    sizes = {"vq": dict(levels=2)}.get(method, dict(levels=1, codebook_size=32))
    plain = quantize(tmp_path / "emb", tmp_path / "plain", method=method, progress=False, **sizes)
    report = quantize(tmp_path / "emb", tmp_path / "dedup", method=method, dedup=dedup, progress=False, **sizes)
    assert plain["unique_id_pct"] < 100
    assert report["unique_id_pct"] == 100 and report["collision_rate"] == 0
    assert report["before_dedup"] == {k: plain[k] for k in ("unique_ids", "unique_id_pct", "collision_rate", "max_collision")}
    assert report["before_dedup"]["collision_rate"] > 0 and "before_dedup" not in plain
    _, codes, info = load_codes(tmp_path / "dedup" / "codes.parquet")
    assert codes.shape[1] == len(plain["levels"]) + 1 and info["dedup"] == dedup
    if dedup == "level":  # a real level: it also refines the reconstruction
        assert report["relative_reconstruction_error"] < plain["relative_reconstruction_error"]


def test_dedup_level_needs_residual_kmeans(tmp_path):
    x, _ = blobs()
    write_emb(tmp_path / "emb", x)
    with pytest.raises(UsageError, match="dedup 'level' needs a residual k-means method"):
        quantize(tmp_path / "emb", tmp_path / "out", method="vq", dedup="level", progress=False)
    with pytest.raises(UsageError, match="dedup must be one of"):
        quantize(tmp_path / "emb", tmp_path / "out", dedup="hash", progress=False)
