import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cdr_synth import write_pair

from mmrec.crossdomain import histories, log_pair, make_batch
from mmrec.crossdomain.files import load_log_pair, load_pair, read_pairs
from mmrec.errors import InputError, UsageError


def test_read_pairs_rejects_bad_lines(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text("1\t2\n3\tx\n")
    with pytest.raises(InputError, match=r"train.txt:2"):
        read_pairs(bad)
    with pytest.raises(UsageError, match="not found"):
        read_pairs(tmp_path / "missing.txt")


def test_load_pair_reads_both_sides(tmp_path):
    write_pair(tmp_path, users=60, cold=10)
    data = load_pair(tmp_path, "aa_bb")
    assert [d.name for d in data.domains] == ["aa", "bb"]
    assert data.n_users == 60
    a, b = data.domains
    # cold users of a have no training rows in a but do in b
    assert not np.isin(a.valid[:, 0], a.train[:, 0]).any()
    assert np.isin(a.valid[:, 0], b.train[:, 0]).all()
    with pytest.raises(UsageError, match="not found"):
        load_pair(tmp_path, "aa_cc")


def test_histories_keep_the_last_items_in_file_order():
    pairs = np.array([[1, 5], [0, 1], [1, 6], [1, 7], [0, 2], [1, 8]])
    h = histories(pairs, 3, maxlen=3)
    assert h.tolist() == [[1, 2, -1], [6, 7, 8], [-1, -1, -1]]


def test_batch_never_shows_the_target_in_its_history():
    gen = torch.Generator().manual_seed(0)
    hist = (torch.tensor([[3, 4, 3, 5], [1, 2, -1, -1]]), torch.tensor([[7, -1, -1, -1], [8, 9, -1, -1]]))
    users, pos = torch.tensor([0, 0, 1]), torch.tensor([3, 5, 2])
    batch = make_batch(0, users, pos, hist, 10, negatives=4, interaction_mask=0.0, domain_mask=0.0, generator=gen)
    assert not (batch.own == batch.pos[:, None]).any()
    assert batch.own[0].tolist() == [-1, 4, -1, 5]  # both copies of item 3 masked
    assert batch.own[2].tolist() == [1, -1, -1, -1]
    assert batch.other[0].tolist() == [7, -1, -1, -1]  # the other domain is untouched
    assert batch.neg.shape == (3, 4) and not batch.cold.any()
    full = make_batch(0, users, pos, hist, 10, negatives=2, interaction_mask=0.0, domain_mask=1.0, generator=gen)
    assert full.cold.all() and (full.own < 0).all()


def test_load_log_pair_maps_raw_ids_and_tasks(tmp_path):
    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "user_id": ["u1", "u2", "u1", "u3", "u2"],
        "item_id": ["x", "y", "p", "x", "q"],
        "domain": ["video", "video", "live", "video", "mall"],
        "click": [1, 1, 1, 0, 1],
        "like": [0, 1, 0, 0, 0],
    }), log)
    data = load_log_pair(log, ("video", "live"), tasks=("click", "like"))
    video, live = data.domains
    assert data.user_vocab == ["u1", "u2"]  # u3 has no positive, mall is another domain
    assert video.item_vocab == ["x", "y"] and live.item_vocab == ["p"]
    assert video.train.tolist() == [[0, 0], [1, 1]]
    assert video.labels.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(InputError, match="missing column"):
        load_log_pair(log, ("video", "live"), tasks=("gift",))
    with pytest.raises(InputError, match="'like'.*0/1"):  # labels are schema-checked by mmrec.logs
        pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["x"], "domain": ["video"], "like": [3]}), log)
        load_log_pair(log, ("video", "live"), tasks=("like",))


def test_log_pair_from_integer_ids_keeps_first_seen_order():
    data = log_pair(np.array([7, 3, 7, 9]), np.array([5, 5, 2, 1]), np.array(["a", "b", "b", "a"]), ("a", "b"))
    a, b = data.domains
    assert data.user_vocab == ["7", "3", "9"] and data.tasks == ("interaction",)
    assert a.item_vocab == ["5", "1"] and a.train.tolist() == [[0, 0], [2, 1]]
    assert b.item_vocab == ["5", "2"] and b.train.tolist() == [[1, 0], [0, 1]] and b.labels is None
    assert data.raw_user_ids(np.array([2, 0])) == ["9", "7"]
    with pytest.raises(InputError, match="no rows of domain 'c'"):
        log_pair(np.array([1]), np.array([1]), np.array(["a"]), ("a", "c"))
