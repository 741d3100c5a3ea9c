"""bench/seq_peer.py's converters: every peer reads the same sequences, split the same way (SYNTHETIC data)."""

import importlib.util
from pathlib import Path

from seq_data import planted, write_lcrec

from mmrec.pipelines.seq_import import import_sequences
from mmrec.retrieval.data import read_sequences

_spec = importlib.util.spec_from_file_location("seq_peer", Path(__file__).resolve().parents[2] / "bench" / "seq_peer.py")
seq_peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seq_peer)


def _imported(tmp_path):
    # SYNTHETIC: the planted next-item rule, users of different lengths
    sequences = [s[: 3 + u % 5] for u, s in enumerate(planted(users=30, items=25, length=8, seed=1))]
    import_sequences(write_lcrec(tmp_path / "src", "DS", sequences), "DS", tmp_path / "data")
    seqs, _ = read_sequences(tmp_path / "data")
    return seqs


def test_recbole_inter_round_trips_through_the_recbole_importer(tmp_path):
    seqs = _imported(tmp_path)
    rows = seq_peer.write_recbole_inter(seqs.offsets, seqs.items, tmp_path / "rb" / "DS.inter")
    assert rows == len(seqs.items)
    assert (tmp_path / "rb" / "DS.inter").read_text().splitlines()[0] == "user_id:token\titem_id:token\ttimestamp:float"
    import_sequences(tmp_path / "rb", "DS", tmp_path / "back", format="recbole")
    back, _ = read_sequences(tmp_path / "back")
    import pyarrow.parquet as pq

    raw = pq.read_table(tmp_path / "back" / "items.parquet").column("raw_item").to_pylist()
    users = pq.read_table(tmp_path / "back" / "users.parquet").column("raw_user").to_pylist()
    # tokens are mmrec's indices: user token u holds user u's items in order, the last one last (RecBole's LS target)
    assert {int(u): [int(raw[i]) for i in back[n]] for n, u in enumerate(users)} == {u: seqs[u].tolist() for u in range(len(seqs))}


def test_cornac_usit_train_drops_each_last_item_and_valid_keeps_it(tmp_path):
    seqs = _imported(tmp_path)
    history, targets = seqs.split_last()
    n_train = seq_peer.write_cornac_usit(seqs.offsets, seqs.items, tmp_path / "train.usit", drop_last=True)
    n_valid = seq_peer.write_cornac_usit(seqs.offsets, seqs.items, tmp_path / "valid.usit", drop_last=False)
    assert (n_train, n_valid) == (len(history.items), len(seqs.items))
    for path, expect in ((tmp_path / "train.usit", history), (tmp_path / "valid.usit", seqs)):
        got: dict[int, list[tuple[int, int]]] = {}
        for user, session, item, ts in seq_peer.read_usit(path):
            assert user == session  # one session per user
            got.setdefault(int(user), []).append((ts, int(item)))
        assert {u: [i for _, i in sorted(v)] for u, v in got.items()} == {u: expect[u].tolist() for u in range(len(seqs))}
    valid = {}
    for user, _, item, _ts in seq_peer.read_usit(tmp_path / "valid.usit"):
        valid[int(user)] = int(item)  # rows are in time order: the last row of a user is its validation target
    assert [valid[u] for u in range(len(seqs))] == targets.tolist()
