import io
import json
import tarfile
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds
from PIL import Image

from mmrec.errors import UsageError
from mmrec.synthetic.sample_data import FRAMES, IMAGE_SIZE, MAX_TOPICS, SAMPLE_RATES, write_sample_data

ITEM_FIELDS = {"jpg", "txt", "wav", "json"}
SEGMENT_FIELDS = {f"frame{f}.jpg" for f in range(FRAMES)} | {"comments.json", "speech.wav", "json"}
K = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """160 items and 40 segments, 8 topics; read back once for the structure tests."""
    out = tmp_path_factory.mktemp("corpus")
    summary = write_sample_data(out, items=160, segments=40, seed=3, topics=K, shard_size=64)
    items = _read(out, "items", len(summary["item_shards"]))
    segments = _read(out, "segments", len(summary["segment_shards"]))
    specs = json.loads((out / "sample.json").read_text())["topic_specs"]
    return summary, items, segments, specs


def _read(out, prefix, n_shards):
    pattern = str(out / f"{prefix}-{{000000..{n_shards - 1:06d}}}.tar")
    return list(wds.WebDataset(pattern, shardshuffle=False))


def _topics(samples):
    return np.array([json.loads(s["json"])["topic"] for s in samples])


def _mean_rgb(jpg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)


def _dominant_hz(wav: bytes) -> float:
    x, sr = sf.read(io.BytesIO(wav))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * sr / len(x))


def test_files_and_counts(tmp_path):
    summary = write_sample_data(tmp_path, items=25, segments=13, seed=1, topics=4, shard_size=10)
    assert summary["items"] == 25 and summary["segments"] == 13 and summary["topics"] == 4
    assert summary["seed"] == 1 and summary["synthetic"] is True
    assert summary["item_shards"] == [str(tmp_path / f"items-00000{i}.tar") for i in range(3)]
    assert summary["segment_shards"] == [str(tmp_path / f"segments-00000{i}.tar") for i in range(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "items-000000.tar", "items-000001.tar", "items-000002.tar",
        "sample.json", "segments-000000.tar", "segments-000001.tar",
    ]  # no temp files left behind
    for paths, fields, sizes in [(summary["item_shards"], ITEM_FIELDS, [10, 10, 5]),
                                 (summary["segment_shards"], SEGMENT_FIELDS, [10, 3])]:
        for path, size in zip(paths, sizes):
            with tarfile.open(path) as tar:
                members = tar.getmembers()
            assert len(members) == size * len(fields)
            assert {m.name.split(".", 1)[1] for m in members} == fields
            assert all(m.mtime == 0 for m in members)

    meta = json.loads((tmp_path / "sample.json").read_text())
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["note"]
    assert meta["item_shards"] == ["items-000000.tar", "items-000001.tar", "items-000002.tar"]
    assert [s["topic"] for s in meta["topic_specs"]] == [0, 1, 2, 3]
    vocab = [w for s in meta["topic_specs"] for w in s["words"]]
    assert len(vocab) == len(set(vocab)) == 40  # topic vocabularies are disjoint
    assert len({s["f0_hz"] for s in meta["topic_specs"]}) == 4


def test_read_back_every_field(tmp_path):
    summary = write_sample_data(tmp_path, items=30, segments=12, seed=2, topics=3, shard_size=8)
    items = _read(tmp_path, "items", len(summary["item_shards"]))
    segments = _read(tmp_path, "segments", len(summary["segment_shards"]))
    assert [s["__key__"] for s in items] == [f"item-{i:06d}" for i in range(30)]
    assert [s["__key__"] for s in segments] == [f"seg-{i:06d}" for i in range(12)]

    rates = set()
    for s in items:
        assert set(s) - {"__key__", "__url__", "__local_path__"} == ITEM_FIELDS
        assert Image.open(io.BytesIO(s["jpg"])).size == (IMAGE_SIZE, IMAGE_SIZE)
        assert s["txt"].decode("utf-8").strip()
        info = sf.info(io.BytesIO(s["wav"]))
        assert info.channels == 1 and info.subtype == "PCM_16" and info.samplerate in SAMPLE_RATES
        assert 0.85 <= info.duration <= 1.15
        rates.add(info.samplerate)
        meta = json.loads(s["json"])
        assert meta["item_id"] == int(s["__key__"].split("-")[1])
        assert isinstance(meta["author_id"], int) and meta["domain"] in {"video", "live", "mall"}
        assert meta["tags"] and all(isinstance(t, str) for t in meta["tags"])
        assert 0 <= meta["topic"] < 3 and meta["synthetic"] is True
    assert rates == set(SAMPLE_RATES)  # resampling gets exercised

    for s in segments:
        assert set(s) - {"__key__", "__url__", "__local_path__"} == SEGMENT_FIELDS
        for f in range(FRAMES):
            assert Image.open(io.BytesIO(s[f"frame{f}.jpg"])).size == (IMAGE_SIZE, IMAGE_SIZE)
        comments = json.loads(s["comments.json"])
        assert 3 <= len(comments) <= 6 and all(isinstance(c, str) and c for c in comments)
        x, sr = sf.read(io.BytesIO(s["speech.wav"]))
        assert x.ndim == 1 and sr in SAMPLE_RATES and np.abs(x).max() > 0.1
        meta = json.loads(s["json"])
        assert set(meta) == {"stream_id", "author_id", "start", "end", "topic", "synthetic"}
        assert meta["end"] > meta["start"] >= 0


def test_deterministic_for_a_seed(tmp_path):
    args = dict(items=20, segments=10, topics=4, shard_size=7)
    a = write_sample_data(tmp_path / "a", seed=5, **args)
    write_sample_data(tmp_path / "b", seed=5, **args)
    c = write_sample_data(tmp_path / "c", seed=6, **args)
    names = [p.split("/")[-1] for p in a["item_shards"] + a["segment_shards"]] + ["sample.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def contents(out, summary):
        return [{k: v for k, v in s.items() if k not in ("__url__", "__local_path__")}
                for prefix, key in [("items", "item_shards"), ("segments", "segment_shards")]
                for s in _read(out, prefix, len(summary[key]))]

    first, other = contents(tmp_path / "a", a), contents(tmp_path / "c", c)
    assert [s["__key__"] for s in first] == [s["__key__"] for s in other]
    assert all(x["jpg"] != y["jpg"] and x["wav"] != y["wav"] for x, y in zip(first[:20], other[:20]))
    assert sum(x["json"] != y["json"] for x, y in zip(first, other)) > 10


def test_rerun_replaces_our_shards_only(tmp_path):
    write_sample_data(tmp_path, items=30, segments=5, shard_size=10, topics=2)
    (tmp_path / "notes.txt").write_text("mine")
    summary = write_sample_data(tmp_path, items=12, segments=0, shard_size=10, topics=2)
    assert len(summary["item_shards"]) == 2 and summary["segment_shards"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "items-000000.tar", "items-000001.tar", "notes.txt", "sample.json"]
    assert len(_read(tmp_path, "items", 2)) == 12


def test_planted_topics_recoverable_from_raw_features(corpus):
    _, items, segments, specs = corpus
    y = _topics(items)
    assert np.bincount(y, minlength=K).min() >= 10
    train, test = np.arange(len(items)) % 2 == 0, np.arange(len(items)) % 2 == 1
    chance = 1 / K

    # Image: nearest centroid on mean RGB, centroids from the even items, scored on the odd ones.
    rgb = np.stack([_mean_rgb(s["jpg"]) for s in items])
    centroids = np.stack([rgb[train & (y == k)].mean(0) for k in range(K)])
    predict = lambda x: np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)  # noqa: E731
    image_acc = (predict(rgb[test]) == y[test]).mean()
    assert image_acc >= 0.8 > 4 * chance, image_acc

    # Live frames follow the same palette as covers.
    ys = _topics(segments)
    frame_rgb = np.stack([_mean_rgb(s[f"frame{f}.jpg"]) for s in segments for f in range(FRAMES)])
    assert (predict(frame_rgb) == np.repeat(ys, FRAMES)).mean() >= 0.8

    # Audio: the dominant FFT frequency is closest (in log pitch) to the topic's fundamental.
    f0 = np.log([s["f0_hz"] for s in specs])
    for samples, field, truth in [(items, "wav", y), (segments, "speech.wav", ys)]:
        hz = np.log([_dominant_hz(s[field]) for s in samples])
        audio_acc = (np.argmin(np.abs(hz[:, None] - f0[None]), axis=1) == truth).mean()
        assert audio_acc >= 0.9, (field, audio_acc)

    # Text: titles share more words within a topic than across topics.
    words = [set(s["txt"].decode().lower().split()) for s in items]
    same, diff = [], []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            jac = len(words[i] & words[j]) / len(words[i] | words[j])
            (same if y[i] == y[j] else diff).append(jac)
    assert np.mean(same) > 2 * np.mean(diff), (np.mean(same), np.mean(diff))
    vocab = [set(s["words"]) for s in specs]
    title_acc = (np.array([np.argmax([len(w & v) for v in vocab]) for w in words]) == y).mean()
    assert title_acc >= 0.9, title_acc


def test_segments_are_contiguous_streams(corpus):
    _, _, segments, _ = corpus
    metas = [json.loads(s["json"]) for s in segments]
    streams = defaultdict(list)
    for m in metas:
        streams[m["stream_id"]].append(m)
    assert len(streams) >= 3
    switches = stays = 0
    for stream in streams.values():
        assert stream[0]["start"] == 0
        assert len({m["author_id"] for m in stream}) == 1
        for prev, cur in zip(stream, stream[1:]):
            assert cur["start"] == prev["end"] and cur["end"] > cur["start"]
            switches += cur["topic"] != prev["topic"]
            stays += cur["topic"] == prev["topic"]
    assert switches >= 1 and stays > switches  # topics drift, but mostly persist
    ids = [m["stream_id"] for m in metas]
    assert ids == sorted(ids)  # a stream's segments are consecutive samples


def test_progress_bar(tmp_path, capsys):
    write_sample_data(tmp_path, items=5, segments=2, topics=2, progress=True)
    assert "7/7" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"items": -1}, "items must be .*, got -1$"),
    ({"segments": -3}, "segments must be .*, got -3$"),
    ({"items": 0, "segments": 0}, "both 0"),
    ({"topics": 1}, "topics must be .*, got 1$"),
    ({"topics": MAX_TOPICS + 1}, f"topics must be at most {MAX_TOPICS}, got {MAX_TOPICS + 1}$"),
    ({"shard_size": 0}, "shard_size must be .*, got 0$"),
    ({"items": 2.5}, "items must be an integer .*, got 2.5$"),
    ({"seed": -1}, "seed must be .*, got -1$"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        write_sample_data(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_every_topic_has_its_own_vocabulary_tone_and_look(tmp_path):
    write_sample_data(tmp_path, items=MAX_TOPICS, segments=0, topics=MAX_TOPICS)
    specs = json.loads((tmp_path / "sample.json").read_text())["topic_specs"]
    vocab = [w for s in specs for w in s["words"]]
    assert len(vocab) == len(set(vocab)) == 10 * MAX_TOPICS
    assert len({s["f0_hz"] for s in specs}) == MAX_TOPICS
    assert len({(tuple(s["background"]), s["shape"]) for s in specs}) == MAX_TOPICS


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="file"):
        write_sample_data(tmp_path / "file", items=3, segments=0)


def test_behaviour_log_columns_ids_and_order(tmp_path):
    import pyarrow.parquet as pq

    from mmrec.synthetic.sample_data import BEHAVIOUR_FILE, LABELS

    summary = write_sample_data(tmp_path, items=50, segments=0, users=20, seed=4, topics=4, shard_size=25)
    table = pq.read_table(tmp_path / BEHAVIOUR_FILE)
    assert table.column_names == ["user_id", "item_id", "author_id", "domain", "ts", *LABELS]
    assert summary["users"] == 20 and summary["behaviour_rows"] == table.num_rows >= 20 * 40
    assert pq.ParquetFile(tmp_path / BEHAVIOUR_FILE).metadata.num_rows == table.num_rows
    items = {s["__key__"]: json.loads(s["json"]) for s in _read(tmp_path, "items", 2)}
    for row in table.slice(0, 200).to_pylist():
        meta = items[f"item-{row['item_id']:06d}"]  # log ids map to shard keys
        assert row["author_id"] == meta["author_id"] and row["domain"] == meta["domain"]
        assert not (row["like"] or row["follow"] or row["long_view"]) or row["click"]
    ts = table.column("ts").to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert set(table.column("user_id").to_pylist()) == set(range(20))
    meta = json.loads((tmp_path / "sample.json").read_text())
    assert meta["behaviour"] == BEHAVIOUR_FILE and len(meta["item_styles"]) == 50


def test_behaviour_log_leaves_shards_byte_identical_and_is_deterministic(tmp_path):
    from mmrec.synthetic.sample_data import BEHAVIOUR_FILE

    args = dict(items=30, segments=5, seed=2, topics=3, shard_size=16)
    plain = write_sample_data(tmp_path / "plain", **args)
    with_log = write_sample_data(tmp_path / "log", users=10, **args)
    write_sample_data(tmp_path / "again", users=10, **args)
    for path in plain["item_shards"] + plain["segment_shards"]:
        name = path.split("/")[-1]
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "log" / name).read_bytes()
    assert set(plain) == set(with_log) - {"users", "behaviour", "behaviour_rows"}
    assert (tmp_path / "log" / BEHAVIOUR_FILE).read_bytes() == (tmp_path / "again" / BEHAVIOUR_FILE).read_bytes()
    assert not (tmp_path / "plain" / BEHAVIOUR_FILE).exists()
    write_sample_data(tmp_path / "log", **args)  # rerun without users: the stale log goes
    assert not (tmp_path / "log" / BEHAVIOUR_FILE).exists()
    with pytest.raises(UsageError, match="users=3 need items"):
        write_sample_data(tmp_path / "none", items=0, segments=4, users=3)
    with pytest.raises(UsageError, match="users must be"):
        write_sample_data(tmp_path / "none", users=-1)


def test_behaviour_follows_planted_topic_and_hidden_style(tmp_path):
    import pyarrow.parquet as pq

    write_sample_data(tmp_path, items=160, segments=0, users=60, seed=0, topics=K)
    meta = json.loads((tmp_path / "sample.json").read_text())
    styles = np.array(meta["item_styles"])
    topics = _topics(_read(tmp_path, "items", 2))
    log = pq.read_table(tmp_path / "behaviour.parquet", columns=["user_id", "item_id", "click"]).to_pylist()
    same_topic = same_group = pairs = 0
    clicked = defaultdict(list)
    for row in log:
        if row["click"]:
            clicked[row["user_id"]].append(row["item_id"])
    for items in clicked.values():
        items = np.array(items)
        t, s = topics[items], styles[items]
        eq_t = t[:, None] == t[None]
        same_topic += eq_t.sum() - len(items)
        same_group += (eq_t & (s[:, None] == s[None])).sum() - len(items)
        pairs += len(items) * (len(items) - 1)
    # a user's clicks share a topic far above chance (1/K), and within it mostly the preferred style
    assert same_topic / pairs > 3 / K
    assert same_group / same_topic > 0.7
    # the style is a title property: the first five vs last five theme words
    titles = [s["txt"].decode().lower().split() for s in _read(tmp_path, "items", 2)]
    words = [spec["words"] for spec in meta["topic_specs"]]
    first_half = [sum(w in words[t][:5] for w in title) > sum(w in words[t][5:] for w in title) for title, t in zip(titles, topics)]
    decided = [i for i, title in enumerate(titles)
               if sum(w in words[topics[i]][:5] for w in title) != sum(w in words[topics[i]][5:] for w in title)]
    assert all(styles[i] == (0 if first_half[i] else 1) for i in decided)
