"""Codes exchanged with LC-Rec / LETTER / MiniOneRec (``<DS>.index.json``) and RecBole: the round trip
is the identity, the item indexes follow the Amazon sets' ``.item.json``, and every reader of codes takes
the file (the retriever: tests/retrieval/test_lcrec_codes.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from mmrec.cli import main
from mmrec.errors import InputError, UsageError
from mmrec.pipelines.codes import export_codes
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import load_codes, save_codes
from mmrec.rankers.features.codes import CodeProvider

INFO = {"method": "rq-kmeans", "codebook_sizes": [16, 8, 4], "dedup": None}


def _amazon_layout(folder: Path, n: int = 12) -> Path:
    """SYNTHETIC items in exactly the layout of amazon-seq/Scientific: ``<DS>.item.json`` keyed "0".."n-1"
    with title, description, brand, categories, and ``<DS>.inter.json`` ``{"user": [item, ...]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    items = {str(i): {"title": f"SYNTHETIC item {i}", "description": "", "brand": "b", "categories": "Industrial,Lab"} for i in range(n)}
    (folder / "Tiny.item.json").write_text(json.dumps(items))
    (folder / "Tiny.inter.json").write_text(json.dumps({str(u): [(u + j) % n for j in range(4)] for u in range(n)}))
    return folder


@pytest.fixture
def codes(tmp_path):
    rng = np.random.default_rng(0)
    keys = [f"item-{i:06d}" for i in range(12)]
    values = np.stack([rng.integers(0, s, 12) for s in INFO["codebook_sizes"]], axis=1)
    save_codes(tmp_path / "codes.parquet", keys, values, info=INFO)
    return tmp_path / "codes.parquet", keys, values


@pytest.mark.parametrize("keys", [[f"item-{i:06d}" for i in range(12)], [f"sku/{i}-x" for i in range(11, -1, -1)]])
def test_round_trip_parquet_index_json_parquet_is_the_identity(tmp_path, keys):
    values = np.random.default_rng(1).integers(0, 300, (12, 4))
    save_codes(tmp_path / "codes.parquet", keys, values, info=INFO)
    assert main(["codes", "export", "--codes", str(tmp_path / "codes.parquet"), "--out", str(tmp_path / "X.index.json")]) == 0
    written = json.loads((tmp_path / "X.index.json").read_text())
    assert list(written) == [str(i) for i in range(12)]  # no --data: row numbers, keys in the id map
    assert written["0"] == [f"<{letter}_{c}>" for letter, c in zip("abcd", values[0])]
    assert (tmp_path / "X.keys.json").is_file()
    assert main(["codes", "export", "--codes", str(tmp_path / "X.index.json"), "--format", "parquet", "--out", str(tmp_path / "back.parquet")]) == 0
    got_keys, got, info = load_codes(tmp_path / "back.parquet")
    assert got_keys == keys and np.array_equal(got, values) and info == INFO


def test_index_follows_the_amazon_item_json_order(tmp_path, codes):
    path, keys, values = codes
    src = _amazon_layout(tmp_path / "Tiny")
    export_codes(path, tmp_path / "a" / "Tiny.index.json", data=str(src))
    import_sequences(src, "Tiny", tmp_path / "data")
    export_codes(path, tmp_path / "b" / "Tiny.index.json", data=str(tmp_path / "data"))  # a `mmrec seq import` folder
    for out in ("a", "b"):
        index = json.loads((tmp_path / out / "Tiny.index.json").read_text())
        assert list(index) == list(json.loads((src / "Tiny.item.json").read_text()))  # "0".."11", the LC-Rec item indexes
        assert index["7"] == [f"<a_{values[7, 0]}>", f"<b_{values[7, 1]}>", f"<c_{values[7, 2]}>"]
    (tmp_path / "a" / "Tiny.keys.json").unlink()  # as LC-Rec ships it: no id map, item i is item-{i:06d}
    got_keys, got, _ = load_codes(tmp_path / "a" / "Tiny.index.json")
    assert got_keys == keys and np.array_equal(got, values)


def test_shuffled_codes_and_raw_id_keys_land_on_their_items(tmp_path):
    src = _amazon_layout(tmp_path / "Tiny", n=5)
    order = [3, 0, 4, 1, 2]
    save_codes(tmp_path / "c.parquet", [str(i) for i in order], np.array([[i, 10 + i] for i in order]), info={})
    export_codes(tmp_path / "c.parquet", tmp_path / "Tiny.index.json", data=str(src / "Tiny.item.json"))
    index = json.loads((tmp_path / "Tiny.index.json").read_text())
    assert index == {str(i): [f"<a_{i}>", f"<b_{10 + i}>"] for i in range(5)}


def test_mismatched_items_and_malformed_tokens_fail_with_the_reason(tmp_path, codes):
    path, _, _ = codes
    src = _amazon_layout(tmp_path / "Big", n=13)
    with pytest.raises(InputError, match="1 item.*have no codes.*'12'"):
        export_codes(path, tmp_path / "x.index.json", data=str(src))
    with pytest.raises(UsageError, match="<DS>.index.json"):
        export_codes(path, tmp_path / "x.json")
    (tmp_path / "bad.index.json").write_text(json.dumps({"0": ["<a_1>", "<c_2>"]}))
    with pytest.raises(InputError, match="item '0' has tokens"):
        load_codes(tmp_path / "bad.index.json")
    (tmp_path / "ragged.index.json").write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}))
    with pytest.raises(InputError, match="item '1' has 1 levels"):
        load_codes(tmp_path / "ragged.index.json")


def test_recbole_item_file(tmp_path, codes):
    path, keys, values = codes
    export_codes(path, tmp_path / "Tiny.item", format="recbole")
    lines = (tmp_path / "Tiny.item").read_text().splitlines()
    assert lines[0] == "item_id:token\tc1:token\tc2:token\tc3:token"
    assert lines[5].split("\t") == [keys[4], *map(str, values[4])]


def test_rank_features_read_the_index_json(tmp_path, codes):
    path, keys, values = codes
    export_codes(path, tmp_path / "Tiny.index.json")
    provider = CodeProvider(tmp_path / "Tiny.index.json")
    assert provider.codebook_sizes == INFO["codebook_sizes"]
    assert np.array_equal(provider.lookup([keys[3], "unknown"]), np.stack([values[3], [-1, -1, -1]]))
