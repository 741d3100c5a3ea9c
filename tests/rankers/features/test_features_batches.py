"""Behaviour-log samples and the batch collate: label masks, vocabularies, histories, gathers."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmrec.errors import InputError, UsageError
from mmrec.quantization.files import save_codes
from mmrec.rankers.features import CodeProvider, Collator, ItemTable, RankSamples, Vocab, histories, read_log, time_split


def test_histories_are_the_latest_earlier_positives_of_the_same_user():
    user = np.array([1, 2, 1, 1, 2, 1])
    item = np.array([10, 20, 11, 12, 21, 13])
    positive = np.array([1, 1, 0, 1, 1, 0], bool)
    expected = [[99, 99], [99, 99], [10, 99], [10, 99], [20, 99], [12, 10]]
    np.testing.assert_array_equal(histories(user, item, positive, 2, pad=99), expected)
    assert histories(user, item, positive, 0, pad=99).shape == (6, 0)


def test_read_log_orders_by_time_and_masks_null_labels(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "user_id": [1, 2, 3], "item_id": [5, 6, 7], "author_id": [0, 0, 1], "domain": ["live", "video", "live"],
        "ts": [30, 10, 20], "click": pa.array([1, 0, 1], pa.int8()), "follow": pa.array([1, None, 0], pa.int8()),
    }), path)
    log = read_log(path, tasks=["click", "follow"])
    np.testing.assert_array_equal(log.user, [2, 3, 1])
    np.testing.assert_array_equal(log.labels, [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(log.label_mask, [[True, False], [True, True], [True, True]])
    assert len(log.take(np.array([2]))) == 1
    with pytest.raises(InputError, match=r"log.parquet: missing column\(s\) \['like'\]"):
        read_log(path, tasks=["like"])
    with pytest.raises(InputError, match="must hold 0/1 labels"):
        read_log(path, tasks=["user_id"])
    with pytest.raises(UsageError, match="not found"):
        read_log(tmp_path / "missing.parquet", tasks=["click"])


def test_vocab_maps_unseen_ids_to_zero_and_split_keeps_time_order():
    v = Vocab(np.array(["b", "a", "b"]))
    assert len(v) == 3
    np.testing.assert_array_equal(v.encode(np.array(["a", "b", "z"])), [1, 2, 0])
    np.testing.assert_array_equal(Vocab(np.array([], np.int64)).encode(np.array([4])), [0])
    train, test = time_split(10, 0.2)
    assert train.tolist() == list(range(8)) and test.tolist() == [8, 9]


def test_collate_gathers_ids_codes_vectors_and_histories(tmp_path):
    save_codes(tmp_path / "codes.parquet", ["i0", "i1"], np.array([[1, 2], [3, 0]]), info={"codebook_sizes": [4, 4]})
    codes = CodeProvider(tmp_path / "codes.parquet", name="sid")

    class Dense:  # any object keeping the provider contract works
        name, kind, width = "content", "dense", 3

        def lookup(self, keys):
            return np.array([[float(k[-1])] * 3 for k in keys], np.float32)

    items = ItemTable.from_providers(["i0", "i1", "i2"], np.array([1, 2, 0]), [codes, Dense()])
    assert items.pad == 3 and items.codes["sid"][3].tolist() == [-1, -1]  # padding row
    samples = RankSamples(
        sparse={"user_id": torch.tensor([1, 2, 1])}, item_row=torch.tensor([0, 2, 1]),
        history=torch.tensor([[3, 3], [0, 3], [1, 0]]), domain=torch.tensor([0, 1, 0]), group=torch.tensor([0, 1, 0]),
        labels=torch.tensor([[1.0], [0.0], [1.0]]), label_mask=torch.ones(3, 1, dtype=torch.bool),
    )
    batch = Collator(samples, items)([2, 1])
    assert len(batch) == 2
    assert batch.sparse["item_id"].tolist() == [2, 0] and batch.sparse["user_id"].tolist() == [1, 2]
    assert batch.codes["sid"].tolist() == [[3, 0], [-1, -1]]  # i2 has no codes
    assert batch.dense["content"].tolist() == [[1.0] * 3, [2.0] * 3]
    # histories [[i1, i0], [i0, pad]]: three distinct rows, each gathered once
    assert batch.history["item_id"].shape == (3,) and batch.history_index.shape == (2, 2)
    assert batch.history["item_id"][batch.history_index].tolist() == [[2, 1], [1, 0]]
    assert batch.history["sid"].shape == (3, 2) and batch.history["content"].shape == (3, 3)
    assert batch.history_mask.tolist() == [[True, True], [True, False]]
    assert batch.history["sid"][batch.history_index][1, 1].tolist() == [-1, -1]
