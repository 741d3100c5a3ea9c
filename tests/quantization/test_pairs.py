from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest
from quant_data import write_log

from mmrec.errors import InputError, UsageError
from mmrec.pipelines.align import write_pairs
from mmrec.quantization.pairs import PairConfig, swing_pairs, user2item_pairs

KEYS = [f"item-{i:06d}" for i in range(6)]
ROWS = {k: i for i, k in enumerate(KEYS)}


def _u2i(log, vectors, **kw):
    stats = {}
    out = [np.stack(b, 1) for b in user2item_pairs(log, ROWS, vectors, PairConfig(**kw), stats) if len(b[0])]
    return (np.concatenate(out) if out else np.zeros((0, 3))), stats


def test_user2item_trigger_is_most_similar_recent_positive(tmp_path):
    vectors = np.eye(6, dtype=np.float32)
    vectors[2] = vectors[5] = np.array([0, 0, 0.6, 0, 0, 0.8], np.float32)  # 2 and 5 alike
    log = tmp_path / "log.parquet"
    # user 7 clicks 0, 2, 1 (and skips 3), then 5: the trigger of 5 must be 2, the most similar
    write_log(log, [(7, 0, 1), (7, 2, 1), (8, 4, 1), (7, 1, 1), (7, 3, 0), (7, 5, 1), (8, 4, 1)])
    pairs, stats = _u2i(log, vectors)
    last = pairs[pairs[:, 1] == 5]
    assert last[:, 0].tolist() == [2] and last[0, 2] == pytest.approx(1.0)
    assert stats == {"events": 7, "positives": 6, "unknown_items": 0}
    assert not (pairs[:, 0] == pairs[:, 1]).any()  # re-clicking item 4 makes no self pair
    assert 3 not in pairs[:, :2]  # a non-positive row is never a trigger or target


def test_user2item_window_and_user_memory_bound(tmp_path):
    vectors = np.eye(6, dtype=np.float32)
    vectors[5] = vectors[0]
    log = tmp_path / "log.parquet"
    write_log(log, [(1, 0, 1), (1, 1, 1), (1, 2, 1), (1, 5, 1)])
    full, _ = _u2i(log, vectors, window=3)
    assert full[full[:, 1] == 5, 0].tolist() == [0]
    short, _ = _u2i(log, vectors, window=2)  # item 0 fell out of the window
    assert short[short[:, 1] == 5, 0].tolist() in ([1], [2])
    write_log(log, [(1, 0, 1), (2, 1, 1), (1, 5, 1)])
    forgetful, _ = _u2i(log, vectors, max_users=1)  # user 2 pushed user 1's history out
    assert len(forgetful) == 0
    remembered, _ = _u2i(log, vectors, max_users=2)
    assert remembered[:, :2].tolist() == [[0, 5]]


def _swing_reference(baskets, alpha=1.0, power=0.5):
    users_of = {}
    for u, items in baskets.items():
        for i in items:
            users_of.setdefault(i, set()).add(u)
    scores = {}
    for i, j in combinations(sorted(users_of), 2):
        common = sorted(users_of[i] & users_of[j])
        s = sum(len(baskets[u]) ** -power * len(baskets[v]) ** -power / (alpha + len(baskets[u] & baskets[v]))
                for u, v in combinations(common, 2))
        if s > 0:
            scores[i, j] = scores[j, i] = s
    return scores


def test_swing_matches_the_formula(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(int(u), int(i), int(c)) for u, i, c in zip(rng.integers(0, 12, 200), rng.integers(0, 6, 200), rng.random(200) < 0.6)]
    log = tmp_path / "log.parquet"
    write_log(log, rows)
    baskets = {}
    for u, i, c in rows:
        if c:
            baskets.setdefault(u, set()).add(i)
    expected = _swing_reference(baskets)
    got = {}
    for small_batches in (False, True):
        config = PairConfig(top_n=10, batch_rows=7 if small_batches else 65536)
        got[small_batches] = {(int(i), int(j)): float(s) for a, b, c in swing_pairs(log, ROWS, 6, config, {})
                              for i, j, s in zip(a, b, c)}
    assert got[False] == got[True]  # streaming in small batches changes nothing
    assert got[False].keys() == expected.keys()
    for pair, score in expected.items():
        assert got[False][pair] == pytest.approx(score, rel=1e-5)


def test_swing_top_n_and_user_cap(tmp_path):
    rows = [(u, i, 1) for u in range(30) for i in range(6)]
    log = tmp_path / "log.parquet"
    write_log(log, rows)
    out = list(swing_pairs(log, ROWS, 6, PairConfig(top_n=2, max_users_per_item=5), {}))
    assert len(out) == 6 and all(len(a) == 2 for a, _, _ in out)


def test_mine_pairs_writes_both_sources(tmp_path):
    log = tmp_path / "log.parquet"
    write_log(log, [(u, i, 1) for u in range(4) for i in (0, 1, 2, 9)])  # item 9 has no embedding
    vectors = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    counts = write_pairs(log, KEYS, vectors, tmp_path / "pairs.parquet")
    table = pq.read_table(tmp_path / "pairs.parquet")
    assert table.column_names == ["left", "right", "source", "score"]
    assert set(table.column("source").to_pylist()) == {"user2item", "swing"}
    assert counts["user2item"]["unknown_items"] == 4 and counts["user2item"]["pairs"] == 8
    assert set(table.column("left").to_pylist()) <= set(KEYS[:3])


def test_bad_logs_and_configs(tmp_path):
    vectors = np.eye(6, dtype=np.float32)
    with pytest.raises(UsageError, match="not found"):
        write_pairs(tmp_path / "nope.parquet", KEYS, vectors, tmp_path / "p.parquet")
    log = tmp_path / "log.parquet"
    write_log(log, [(1, 0, 1), (1, 1, 1)])
    with pytest.raises(InputError, match=r"missing column\(s\) \['like'\]"):
        write_pairs(log, KEYS, vectors, tmp_path / "p.parquet", PairConfig(positive=("like",)))
    write_log(log, [(1, 0, 0), (1, 1, 0)])
    with pytest.raises(InputError, match="no pairs mined"):
        write_pairs(log, KEYS, vectors, tmp_path / "p.parquet")
    with pytest.raises(UsageError, match="pair sources"):
        PairConfig(sources=("cooc",))
    with pytest.raises(UsageError, match="window must be >= 1"):
        PairConfig(window=0)


def test_string_ids_null_labels_and_bad_labels_through_the_log_reader(tmp_path):
    import pyarrow as pa

    keys = ["a", "b", "c"]
    vectors = np.eye(3, dtype=np.float32)
    log = tmp_path / "log.parquet"
    # string user and item ids; a null click counts as negative, so "c" is never a target
    pq.write_table(pa.table({"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["a", "b", "c", "a"],
                             "click": pa.array([1, 1, None, 1], pa.int8())}), log)
    stats = {}
    config = PairConfig(sources=("user2item",), item_key="{}")
    pairs = [np.stack(b[:2], 1) for b in user2item_pairs(log, {k: i for i, k in enumerate(keys)}, vectors, config, stats)]
    assert np.concatenate(pairs).tolist() == [[0, 1]] and stats == {"events": 4, "positives": 3, "unknown_items": 0}
    with pytest.raises(UsageError, match="item_key 'item-{:06d}' cannot format item id 'a'"):
        write_pairs(log, keys, vectors, tmp_path / "p.parquet")
    pq.write_table(pa.table({"user_id": [1, 1], "item_id": [0, 1], "click": [1, 3]}), log)
    with pytest.raises(InputError, match=r"column 'click' must hold 0/1 labels .*first at row 1"):
        write_pairs(log, KEYS, np.eye(6, dtype=np.float32), tmp_path / "p.parquet")
