import json

import pytest

from mmrec.io import atomic_open, write_json


def test_atomic_write_commits_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {})
    plain = tmp_path / "plain"
    plain.write_text("")
    assert target.stat().st_mode == plain.stat().st_mode
