import json
import tarfile

import pyarrow.parquet as pq
import pytest
from seq_data import write_lcrec

from mmrec.cli import main
from mmrec.errors import InputError
from mmrec.pipelines.seq_import import import_sequences
from mmrec.retrieval.data import read_sequences


def test_lcrec_round_trips_ids_order_and_text(tmp_path):
    texts = {"10": {"title": "Red <b>lamp</b>", "brand": "Acme", "categories": "Home,Light", "description": "x" * 900},
             "2": {"title": "Blue cup", "brand": "", "categories": "", "description": ""}}
    src = write_lcrec(tmp_path / "src", "DS", [[10, 2, 7], [7, 10]], texts)
    report = import_sequences(src, "DS", tmp_path / "out", description_chars=100)
    assert (report["users"], report["items"], report["interactions"], report["skipped_users"]) == (2, 3, 5, 0)
    log = pq.read_table(tmp_path / "out" / "behaviour.parquet").to_pydict()
    assert log["raw_user"] == ["u0", "u0", "u0", "u1", "u1"] and log["raw_item"] == ["10", "2", "7", "7", "10"]
    assert log["ts"] == [0, 1, 2, 0, 1] and log["train"] == [1, 1, 0, 1, 0]
    items = pq.read_table(tmp_path / "out" / "items.parquet").to_pydict()
    assert items["raw_item"] == ["2", "7", "10"]  # integer raw ids keep their numeric order
    assert [items["raw_item"][i] for i in log["item_id"]] == log["raw_item"]
    seqs, _ = read_sequences(tmp_path / "out")
    assert [[items["raw_item"][i] for i in seqs[u]] for u in range(2)] == [["10", "2", "7"], ["7", "10"]]
    with tarfile.open(tmp_path / "out" / "items-000000.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    txt = files[f"{items['key'][2]}.txt"].decode()
    assert txt.startswith("Red lamp. Brand: Acme. Categories: Home,Light. ") and len(txt) == len("Red lamp. Brand: Acme. Categories: Home,Light. ") + 100
    assert json.loads(files[f"{items['key'][2]}.json"]) == {"item_id": 2, "raw_item": "10", "key": items["key"][2]}
    assert f"{items['key'][1]}.txt" not in files  # item 7 has no text: json only


def test_recbole_orders_by_timestamp(tmp_path):
    (tmp_path / "DS.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       "a\tB01\t5\t30\na\tB02\t4\t10\nb\tB02\t3\t5\na\tB03\t1\t20\nb\tB01\t2\t6\n")
    report = import_sequences(tmp_path, "DS", tmp_path / "out", format="recbole")
    assert report["users"] == 2 and report["items"] == 3 and report["shards"] == []
    log = pq.read_table(tmp_path / "out" / "behaviour.parquet").to_pydict()
    assert list(zip(log["raw_user"], log["raw_item"])) == [("a", "B02"), ("a", "B03"), ("a", "B01"), ("b", "B02"), ("b", "B01")]


def test_bad_input_one_error_or_a_counted_skip(tmp_path, capsys):
    src = write_lcrec(tmp_path / "one", "DS", [[1], [1, 2, 3]])
    assert import_sequences(src, "DS", tmp_path / "o1")["skipped_users"] == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "DS.inter.json").write_text("{}")
    with pytest.raises(InputError, match="no users"):
        import_sequences(tmp_path / "empty", "DS", tmp_path / "o2")
    write_lcrec(tmp_path / "short", "DS", [[1], [2]])
    assert main(["seq", "import", "--data", str(tmp_path / "short"), "--name", "DS", "--out", str(tmp_path / "o3")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "DS.inter.json").write_text('{"u": [1, 2')
    with pytest.raises(InputError, match="not valid JSON"):
        import_sequences(tmp_path / "broken", "DS", tmp_path / "o4")
