"""mmrec.synthetic.live_sim: SYNTHETIC live world — determinism, rates, planted structure recovered, shards, log checks."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from mmrec.cli import main
from mmrec.errors import InputError, UsageError
from mmrec.synthetic.live_sim import LOG_SCHEMA, read_live_log, simulate_live

SMALL = {"users": 1500, "authors": 60, "days": 10}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    summary = simulate_live(folder, seed=3, shard_segments=6, shard_size=4, **SMALL)
    log = read_live_log(folder / "live-behaviour.parquet", users=SMALL["users"], authors=SMALL["authors"])
    cols = {name: log.column(name).to_numpy(zero_copy_only=False) for name in log.column_names}
    return folder, summary, cols


def _table(folder, name):
    return pq.read_table(folder / name)


def test_same_seed_same_bytes_other_seed_other_log(world, tmp_path):
    folder, summary, _ = world
    again = simulate_live(tmp_path / "a", seed=3, shard_segments=6, shard_size=4, **SMALL)
    for name in ("live-behaviour.parquet", "users.parquet", "authors.parquet", "segments.parquet",
                 "segment-tokens.safetensors", "segments-000000.tar", "segments-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (folder / name).read_bytes(), name
    assert again["rows"] == summary["rows"]
    other = simulate_live(tmp_path / "b", seed=4, **SMALL)
    assert (tmp_path / "b" / "live-behaviour.parquet").read_bytes() != (folder / "live-behaviour.parquet").read_bytes()
    assert other["synthetic"] and json.loads((tmp_path / "b" / "live.json").read_text())["synthetic"] is True


def test_log_contract_rates_and_heavy_tail(world):
    folder, summary, c = world
    schema = pq.read_schema(folder / "live-behaviour.parquet")
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in LOG_SCHEMA]
    assert b"SYNTHETIC" in schema.metadata[b"mmrec"]
    assert np.all(np.diff(c["ts"]) >= 0)  # time order
    assert pq.ParquetFile(folder / "live-behaviour.parquet").metadata.num_row_groups >= 2
    live = c["domain"] == "live"
    watches = (live & (c["watch"] == 1)).sum()
    gifts = c["gift"].sum()
    assert 0.008 < gifts / watches < 0.012  # ~1 % of watches
    assert 8.0 < (~live).sum() / live.sum() < 10.0  # short video ~9x live
    assert not c["gift"][~live].any() and np.all(c["gift"] <= c["watch"])
    assert np.all((c["gift_value"] > 0) == (c["gift"] == 1))
    assert all(k.startswith("seg-") for k in c["item_id"][live][:50]) and all(k.startswith("vid-") for k in c["item_id"][~live][:50])
    per_user = np.bincount(c["user_id"][c["gift"] == 1], minlength=SMALL["users"])
    top = np.sort(per_user)[::-1]
    assert top[: SMALL["users"] // 10].sum() > 0.5 * gifts  # the top 10 % of users send most gifts
    assert (per_user == 0).mean() > 0.6  # most users never gift
    users = _table(folder, "users.parquet")
    activity = np.array(users.column("gift_activity").to_pylist())
    rate = {a: per_user[activity == a].mean() for a in ("low", "mid", "high")}
    assert rate["low"] < rate["mid"] < rate["high"]


def test_planted_structure_is_in_the_log(world):
    folder, _, c = world
    users, authors, segments = (_table(folder, n) for n in ("users.parquet", "authors.parquet", "segments.parquet"))
    interest = np.asarray(users.column("interest").to_pylist())
    user_comm, author_comm = users.column("community").to_numpy(), authors.column("community").to_numpy()
    keys = segments.column("item_id").to_pylist()
    topic_of = dict(zip(keys, segments.column("topic").to_numpy()))
    w = (c["domain"] == "live") & (c["watch"] == 1)
    u, a = c["user_id"][w], c["author_id"][w]
    topic = np.array([topic_of[k] for k in c["item_id"][w]])
    gift = c["gift"][w] == 1
    match = interest[u, topic] > 0.3
    assert gift[match].mean() > 2 * gift[~match].mean()  # gifts follow the *current* segment topic
    same = user_comm[u] == author_comm[a]
    assert same[gift].mean() > same.mean() + 0.15  # co-gifting communities
    # the topic drifts inside streams, but not every segment
    stream, position, seg_topic = (segments.column(n).to_numpy() for n in ("stream_id", "position", "topic"))
    later = position > 0
    changed = (seg_topic[later] != np.roll(seg_topic, 1)[later]).mean()
    assert 0.15 < changed < 0.6 and np.all(np.roll(stream, 1)[later] == stream[later])


def test_segment_tokens_carry_the_topic(world):
    from safetensors.numpy import load_file

    folder, _, _ = world
    tokens = load_file(str(folder / "segment-tokens.safetensors"))
    topic = _table(folder, "segments.parquet").column("topic").to_numpy()
    assert tokens["image"].shape[0] == tokens["text"].shape[0] == len(topic)
    mask = tokens["text_mask"].astype(bool)
    assert mask.sum(1).min() >= 2 and not tokens["text"][~mask].any()  # padding is zero
    half = len(topic) // 2

    def accuracy(features):  # nearest class mean, fit on one half, scored on the other
        means = np.stack([features[:half][topic[:half] == k].mean(0) for k in range(8)])
        return (np.argmin(((features[half:, None, :] - means[None]) ** 2).sum(-1), axis=1) == topic[half:]).mean()

    single = accuracy(tokens["audio"][:, 0])
    fused = accuracy(np.concatenate([tokens["image"].mean(1), tokens["audio"].mean(1)], axis=1))
    assert single > 0.25 and fused > single + 0.1  # chance 0.125: one token says a little, the sequence more


def test_segment_shards_for_extract(world):
    folder, summary, _ = world
    assert summary["files"]["shards"] == ["segments-000000.tar", "segments-000001.tar"]
    samples = [s for name in summary["files"]["shards"] for s in wds.WebDataset(str(folder / name), shardshuffle=False)]
    segments = _table(folder, "segments.parquet")
    assert [s["__key__"] for s in samples] == segments.column("item_id").to_pylist()[:6]
    for s, author, topic in zip(samples, segments.column("author_id").to_pylist(), segments.column("topic").to_pylist()):
        meta = json.loads(s["json"])
        assert meta["author_id"] == author and meta["topic"] == topic and meta["synthetic"] is True
        assert {"frame0.jpg", "frame3.jpg", "comments.json", "speech.wav"} <= set(s)


def _broken(tmp_path, **changes):
    table = pq.read_table(tmp_path / "good.parquet")
    for name, values in changes.items():
        if values is None:
            table = table.drop_columns([name])
        else:
            table = table.set_column(table.column_names.index(name), name, values)
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return path


def test_malformed_logs_give_one_clear_error(world, tmp_path):
    folder, _, c = world
    pq.write_table(pq.read_table(folder / "live-behaviour.parquet").slice(0, 500), tmp_path / "good.parquet")
    n = 500
    value = c["gift_value"][:n].copy()
    value[3] = -1.0
    with pytest.raises(InputError, match="bad.parquet.*'gift_value' has negative") as err:
        read_live_log(_broken(tmp_path, gift_value=pa.array(value)))
    assert err.value.field == "gift_value"
    with pytest.raises(InputError, match=r"bad.parquet: missing column\(s\) \['author_id'\]"):
        read_live_log(_broken(tmp_path, author_id=None))
    users = c["user_id"][:n].copy()
    users[7] = 10_000
    with pytest.raises(InputError, match=r"'user_id' has ids outside 0..1499 \(1 rows; first at row 7: .*'user_id': 10000"):
        read_live_log(_broken(tmp_path, user_id=pa.array(users)), users=SMALL["users"])
    with pytest.raises(InputError, match=r"'author_id' has negative ids \(500 rows; first at row 0: .*'author_id': -1"):
        read_live_log(_broken(tmp_path, author_id=pa.array(np.full(n, -1, np.int64))), authors=SMALL["authors"])
    with pytest.raises(InputError, match=r"'watch' must hold 0/1 labels .*'watch': 2"):
        read_live_log(_broken(tmp_path, watch=pa.array(np.full(n, 2, np.int8))))
    with pytest.raises(InputError, match="'ts' has type string"):
        read_live_log(_broken(tmp_path, ts=pa.array([str(t) for t in c["ts"][:n]])))
    with pytest.raises(InputError, match="'ts' has type double, expected integer seconds"):
        read_live_log(_broken(tmp_path, ts=pa.array(c["ts"][:n].astype(float))))
    with pytest.raises(InputError, match="'gift_value' is > 0 on rows where gift == 0"):
        read_live_log(_broken(tmp_path, gift=pa.array(np.zeros(n, np.int8)), gift_value=pa.array(np.full(n, 2.5, np.float32))))
    with pytest.raises(InputError, match="'item_id' has nulls"):
        read_live_log(_broken(tmp_path, item_id=pa.array([None] + list(c["item_id"][1:n]), pa.string())))
    with pytest.raises(InputError, match=r"'domain' has unknown values \['mall'\] \(first at row 0"):
        read_live_log(_broken(tmp_path, domain=pa.array(["mall"] * n)))
    with pytest.raises(UsageError, match="not found"):
        read_live_log(tmp_path / "nope.parquet")


def test_bad_options_and_cli(tmp_path, capsys):
    with pytest.raises(UsageError, match="gift_rate"):
        simulate_live(tmp_path, gift_rate=1.5)
    with pytest.raises(UsageError, match="live simulator: unknown field 'viewers'; known: users, authors"):
        simulate_live(tmp_path, viewers=3)
    assert main(["live", "simulate", "--out", str(tmp_path / "cli"), "--users", "200", "--authors", "20", "--days", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["synthetic"] and summary["rows"] == pq.read_metadata(tmp_path / "cli" / "live-behaviour.parquet").num_rows
    assert main(["live", "simulate", "--out", str(tmp_path / "x"), "--users", "0"]) == 2
