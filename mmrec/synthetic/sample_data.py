"""SYNTHETIC sample corpus: webdataset shards with planted topic structure.

:func:`write_sample_data` writes, into one folder,

- ``items-000000.tar`` … : one sample per item (key ``item-000042``) with ``jpg`` (64x64 cover),
  ``txt`` (title), ``wav`` (about 1 s of 16-bit PCM mono, at 16 kHz or 22.05 kHz) and ``json``
  (``item_id``, ``author_id``, ``domain``, ``tags``, ``topic``, ``synthetic``);
- ``segments-000000.tar`` … : one sample per live segment (key ``seg-000007``) with
  ``frame0.jpg`` … ``frame3.jpg``, ``comments.json`` (3-6 short strings), ``speech.wav`` and ``json``
  (``stream_id``, ``author_id``, ``start``, ``end`` in seconds, ``topic``, ``synthetic``);
- ``behaviour.parquet`` (only when ``users > 0``): a SYNTHETIC behaviour log, see below;
- ``sample.json``: the summary plus the topic definitions, written last.

Nothing here is real data. Every sample is drawn from one of K latent topics, and each topic plants
the same signal in every modality:

- image: a background colour and a shape (circle, square, triangle, stripes, …) in an accent
  colour, both with colour, position and size jitter and pixel noise, so mean RGB separates topics;
- text: ten plain English words of the topic's theme (disjoint across topics) mixed with shared
  filler words; an item title carries an off-topic word now and then;
- audio: a tone at the topic's fundamental frequency (log-spaced from 150 to 1500 Hz) with a
  topic-specific harmonic pattern, random phases, about 1.5 % pitch jitter and noise, so the
  dominant FFT frequency separates topics.

Authors have a home topic: an item takes its author's topic with probability 0.8. A live stream
belongs to one author; its segments are contiguous in time and its topic stays put from one segment
to the next with probability 0.7, else switches. Topic definitions depend only on K; samples depend
on the seed through ``numpy.random.default_rng``. Same arguments give byte-identical files.

Behaviour log (``users > 0``; docs/file-contracts.md's columns ``user_id, item_id, author_id, domain, ts`` and the
labels ``click, like, follow, forward, hate, long_view`` as int8, rows in time order, row groups of
4096). Each topic has ``STYLES`` = 2 hidden sub-styles: the first five and the last five words of its
vocabulary; an item's style is the half most of its title's topic words come from (ties: the half of
the first one). Only the title shows it, and weakly (a few words among topic and filler words), so
content embeddings capture the behaviour structure only partly and alignment has something to learn.
A user has 1-3 interest topics (Dirichlet weights) and, per interest, a preferred style. Impressions
come mostly from the user's interests (75 %), preferring items of the preferred style (80 %), the
rest uniformly at random; clicks are likely on items of an interest topic *and* the preferred style
(0.75), less so on an interest topic in another style (0.25), rare otherwise (0.04). The log draws
from its own random stream, so adding users changes no shard byte; ``item_id`` is the number in the
item key (``item-000042`` -> 42). The item styles are in ``sample.json`` (``item_styles``).
"""

from __future__ import annotations

import colorsys
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import webdataset as wds
from PIL import Image, ImageDraw
from tqdm import tqdm

from mmrec.errors import UsageError
from mmrec.io import atomic_path, write_json

IMAGE_SIZE = 64
FRAMES = 4
SAMPLE_RATES = (16000, 22050)
DOMAINS = ("video", "live", "mall")
STYLES = 2
LABELS = ("click", "like", "follow", "forward", "hate", "long_view")
BEHAVIOUR_FILE = "behaviour.parquet"
SHAPES = ("circle", "square", "triangle", "stripes", "cross", "ring", "diamond", "dots")

# Ten plain English words per theme; no word is shared between themes.
_THEMES: tuple[tuple[str, tuple[str, ...]], ...] = tuple((name, tuple(words.split())) for name, words in (
    ("music", "guitar concert melody song piano drums chorus rhythm band lyrics"),
    ("cooking", "recipe kitchen noodles soup garlic baking pastry spicy dumplings oven"),
    ("gaming", "game level boss controller quest arcade console player score puzzle"),
    ("travel", "beach island passport flight hotel mountain journey map luggage sunset"),
    ("fitness", "workout gym running yoga muscle cardio stretch squat sprint marathon"),
    ("pets", "puppy kitten dog cat leash paws fur aquarium parrot hamster"),
    ("fashion", "dress shoes jacket outfit lipstick jewelry handbag denim scarf runway"),
    ("tech", "phone laptop robot battery camera software gadget chip screen keyboard"),
    ("cars", "engine tires racing truck garage highway motor drift wheel fuel"),
    ("garden", "flowers seeds tomato soil roses compost tulips orchard harvest shovel"),
    ("science", "rocket planet telescope experiment chemistry atoms galaxy laboratory microscope fossil"),
    ("sports", "football basketball goal stadium referee tennis soccer pitcher hockey trophy"),
    ("comedy", "joke prank laugh sketch funny parody clown sitcom comedian giggle"),
    ("art", "painting canvas pottery sculpture watercolor brush gallery mural clay easel"),
    ("finance", "stocks budget savings invest crypto dividend market bank loan salary"),
    ("baby", "toddler diaper stroller lullaby crib bottle nursery rattle cradle bib"),
))
MAX_TOPICS = len(_THEMES)
FILLER_WORDS = ("the", "my", "new", "best", "today", "live", "watch", "this", "so", "with", "and", "daily",
                "vlog", "top", "first", "really", "time", "great")

_SHARD_NAME = re.compile(r"^(items|segments)-(\d{6})\.tar$")
_NOTE = ("SYNTHETIC data generated by mmrec.synthetic.sample_data, not real content. Each sample is drawn from one of "
         "K planted topics; a topic fixes the cover/frame background and accent colours and shape, a "
         "10-word vocabulary mixed with shared filler words, and an audio tone (fundamental frequency + "
         "harmonic amplitudes). The 'topic' field of every sample's json is the ground truth.")


def write_sample_data(out: str | Path, *, items: int = 200, segments: int = 40, seed: int = 0,
                      topics: int = 8, shard_size: int = 100, progress: bool = False, users: int = 0) -> dict:
    """Write SYNTHETIC item and live-segment shards with ``topics`` planted topics into ``out``.

    Returns the summary also written to ``out/sample.json`` (there with shard names relative to
    ``out``): counts, seed, shard paths and ``"synthetic": True``. Existing shards of ours
    (``items-NNNNNN.tar``, ``segments-NNNNNN.tar``) that this run does not produce are removed so that
    a glob over the folder sees one corpus; other files are left alone. ``users > 0`` also writes
    ``behaviour.parquet``, a behaviour log of that many users over the items (summary keys ``users``,
    ``behaviour``, ``behaviour_rows``); with ``users=0`` a stale log of ours is removed.
    """
    users = _check_int("users", users, 0)
    if users and not items:
        raise UsageError(f"users={users} need items to interact with; items is 0")
    items = _check_int("items", items, 0)
    segments = _check_int("segments", segments, 0)
    topics = _check_int("topics", topics, 2)
    shard_size = _check_int("shard_size", shard_size, 1)
    seed = _check_int("seed", seed, 0)
    if items == 0 and segments == 0:
        raise UsageError("items and segments are both 0: nothing to write")
    if topics > MAX_TOPICS:
        raise UsageError(f"topics must be at most {MAX_TOPICS}, got {topics}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)

    specs = _topic_specs(topics)
    structure_rng = np.random.default_rng([seed, 0])
    n_authors = max(2 * topics, (items + segments) // 8)
    author_topic = structure_rng.permutation(np.arange(n_authors) % topics)  # balanced home topics
    item_meta = _plan_items(structure_rng, items, author_topic, topics)
    segment_meta = _plan_segments(structure_rng, segments, author_topic, topics)

    bar = tqdm(total=items + segments, unit="sample", desc="sample-data", disable=not progress)
    titles: list[str] = []

    def make_item(i: int, meta: dict) -> dict:
        sample = _item_sample(seed, i, meta, specs)
        titles.append(sample["txt"].decode("utf-8"))
        return sample

    item_shards = _write_shards(out, "items", item_meta, shard_size, bar, make_item)
    segment_shards = _write_shards(out, "segments", segment_meta, shard_size, bar,
                                   lambda i, meta: _segment_sample(seed, i, meta, specs))
    bar.close()
    _remove_stale_shards(out, {p.name for p in item_shards + segment_shards})

    summary: dict[str, Any] = {
        "items": items, "segments": segments, "topics": topics, "seed": seed,
        "item_shards": [str(p) for p in item_shards], "segment_shards": [str(p) for p in segment_shards],
        "synthetic": True,
    }
    on_disk = dict(summary, item_shards=[p.name for p in item_shards],
                   segment_shards=[p.name for p in segment_shards], shard_size=shard_size,
                   frames=FRAMES, image_size=IMAGE_SIZE, sample_rates=list(SAMPLE_RATES),
                   note=_NOTE, topic_specs=specs)
    if users:
        styles = _item_styles(titles, item_meta, specs)
        rows = _write_behaviour(out / BEHAVIOUR_FILE, np.random.default_rng([seed, 3]), users, item_meta,
                                styles, topics)
        summary.update(users=users, behaviour=str(out / BEHAVIOUR_FILE), behaviour_rows=rows)
        on_disk.update(users=users, behaviour=BEHAVIOUR_FILE, behaviour_rows=rows, styles=STYLES,
                       item_styles=styles.tolist())
    else:
        (out / BEHAVIOUR_FILE).unlink(missing_ok=True)
    write_json(out / "sample.json", on_disk)
    return summary


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _topic_specs(topics: int) -> list[dict]:
    """Per-topic palette, shape, words and tone; a function of ``topics`` only."""
    f0s = np.geomspace(150.0, 1500.0, topics)
    specs = []
    for k in range(topics):
        hue = k / topics
        background = _hsv(hue, 0.45, 0.85)
        accent = _hsv((hue + 0.4) % 1.0, 0.85, 0.5)
        # Harmonics 2..4 decay below the fundamental, in a topic-specific pattern.
        harmonics = [1.0] + [round(0.15 + 0.35 * ((k * 7 + 3 * h) % 5) / 4, 3) for h in range(1, 4)]
        name, words = _THEMES[k]
        specs.append({
            "topic": k, "name": name, "background": background, "accent": accent,
            "shape": SHAPES[k % len(SHAPES)], "words": list(words), "f0_hz": round(float(f0s[k]), 1), "harmonics": harmonics,
        })
    return specs


def _hsv(h: float, s: float, v: float) -> list[int]:
    return [int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)]


def _plan_items(rng: np.random.Generator, n: int, author_topic: np.ndarray, topics: int) -> list[dict]:
    authors = rng.integers(0, len(author_topic), size=n)
    own = rng.random(n) < 0.8
    other = rng.integers(0, topics, size=n)
    domains = rng.integers(0, len(DOMAINS), size=n)
    return [{"item_id": i, "author_id": int(a), "domain": DOMAINS[int(d)],
             "topic": int(author_topic[a]) if keep else int(o)}
            for i, (a, keep, o, d) in enumerate(zip(authors, own, other, domains))]


def _plan_segments(rng: np.random.Generator, n: int, author_topic: np.ndarray, topics: int) -> list[dict]:
    """Streams of 2-8 contiguous segments; the topic drifts between consecutive segments."""
    metas: list[dict] = []
    stream = 0
    while len(metas) < n:
        author = int(rng.integers(0, len(author_topic)))
        topic = int(author_topic[author])
        t = 0.0
        for j in range(min(int(rng.integers(2, 9)), n - len(metas))):
            if j > 0 and rng.random() >= 0.7:
                topic = int((topic + rng.integers(1, topics)) % topics)
            end = round(t + float(rng.uniform(20.0, 40.0)), 3)
            metas.append({"stream_id": stream, "author_id": author, "start": t, "end": end, "topic": topic})
            t = end
        stream += 1
    return metas


def _item_styles(titles: list[str], item_meta: list[dict], specs: list[dict]) -> np.ndarray:
    """Each item's hidden style: the vocabulary half (0 or 1) most of its title's topic words are in."""
    styles = []
    for title, meta in zip(titles, item_meta):
        words = specs[meta["topic"]]["words"]
        halves = [words.index(w) * STYLES // len(words) for w in title.lower().split() if w in words]
        counts = np.bincount(halves, minlength=STYLES)
        styles.append(int(np.argmax(counts)) if counts.max() > counts.min() else halves[0])
    return np.array(styles, dtype=np.int64)


def _write_behaviour(path: Path, rng: np.random.Generator, users: int, item_meta: list[dict],
                     item_style: np.ndarray, topics: int) -> int:
    """Write the SYNTHETIC behaviour log described in the module docstring; returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    item_topic = np.array([m["topic"] for m in item_meta])
    item_author = np.array([m["author_id"] for m in item_meta])
    pools = {(t, s): np.flatnonzero((item_topic == t) & (item_style == s)) for t in range(topics) for s in range(STYLES)}
    by_topic = {t: np.flatnonzero(item_topic == t) for t in range(topics)}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("user_id", "item_id", "ts", *LABELS)}
    for u in range(users):
        interests = rng.choice(topics, size=int(rng.integers(1, 4)), replace=False)
        weights = rng.dirichlet(np.ones(len(interests)))
        style = dict(zip(interests.tolist(), rng.integers(0, STYLES, size=len(interests)).tolist()))
        n = int(rng.integers(40, 121))
        picked = np.empty(n, dtype=np.int64)
        for e in range(n):
            pool = np.arange(len(item_meta))
            if rng.random() < 0.75:
                t = int(interests[rng.choice(len(interests), p=weights)])
                pool = pools[t, style[t]] if rng.random() < 0.8 and len(pools[t, style[t]]) else by_topic[t]
                pool = pool if len(pool) else np.arange(len(item_meta))
            picked[e] = pool[int(rng.integers(0, len(pool)))]
        topic, item_styles = item_topic[picked], item_style[picked]
        interested = np.isin(topic, interests)
        match = interested & (item_styles == np.array([style.get(int(t), -1) for t in topic]))
        click = rng.random(n) < np.where(match, 0.75, np.where(interested, 0.25, 0.04))
        columns["user_id"].append(np.full(n, u, dtype=np.int64))
        columns["item_id"].append(picked)
        columns["ts"].append(np.sort(rng.integers(0, 7 * 86400, size=n)) + 1_700_000_000)
        columns["click"].append(click)
        columns["like"].append(click & (rng.random(n) < np.where(match, 0.35, 0.1)))
        columns["follow"].append(click & (rng.random(n) < 0.05))
        columns["forward"].append(click & (rng.random(n) < np.where(match, 0.08, 0.02)))
        columns["hate"].append(~click & ~interested & (rng.random(n) < 0.02))
        columns["long_view"].append(click & (rng.random(n) < np.where(match, 0.5, 0.2)))
    flat = {name: np.concatenate(parts) for name, parts in columns.items()}
    order = np.lexsort((flat["user_id"], flat["ts"]))  # time order, ties by user
    item_id = flat["item_id"][order]
    arrays = {
        "user_id": flat["user_id"][order], "item_id": item_id, "author_id": item_author[item_id],
        "domain": pa.array([item_meta[i]["domain"] for i in item_id], pa.string()), "ts": flat["ts"][order],
        **{name: flat[name][order].astype(np.int8) for name in LABELS},
    }
    note = {"synthetic": True, "note": "SYNTHETIC behaviour log from mmrec.synthetic.sample_data; see its docstring"}
    table = pa.table(arrays).replace_schema_metadata({"mmrec": json.dumps(note)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=4096)
    return table.num_rows


def _write_shards(out: Path, prefix: str, metas: list[dict], shard_size: int, bar: tqdm,
                  make_sample) -> list[Path]:
    paths = []
    for shard, first in enumerate(range(0, len(metas), shard_size)):
        target = out / f"{prefix}-{shard:06d}.tar"
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            writer = wds.TarWriter(f, user="mmrec", group="mmrec", encoder=False, mtime=0)
            for i in range(first, min(first + shard_size, len(metas))):
                writer.write(make_sample(i, metas[i]))
                bar.update(1)
            writer.close()
        paths.append(target)
    return paths


def _remove_stale_shards(out: Path, keep: set[str]) -> None:
    for path in out.iterdir():
        if _SHARD_NAME.match(path.name) and path.name not in keep and path.is_file():
            path.unlink()


def _item_sample(seed: int, i: int, meta: dict, specs: list[dict]) -> dict:
    rng = np.random.default_rng([seed, 1, i])
    spec = specs[meta["topic"]]
    words = _pick(rng, spec["words"], int(rng.integers(2, 4)))
    words += _pick(rng, FILLER_WORDS, int(rng.integers(1, 3)))
    if rng.random() < 0.15:
        stray = specs[int(rng.integers(0, len(specs)))]["words"]
        words.append(stray[int(rng.integers(0, len(stray)))])
    rng.shuffle(words)
    title = " ".join(words).capitalize() + (" \u2728" if rng.random() < 0.2 else "")
    meta = dict(meta, tags=[spec["name"]] + _pick(rng, spec["words"], 2), synthetic=True)
    sr = SAMPLE_RATES[int(rng.integers(0, len(SAMPLE_RATES)))]
    return {
        "__key__": f"item-{i:06d}",
        "jpg": _jpeg(_draw(rng, spec)),
        "txt": title.encode("utf-8"),
        "wav": _wav(_tone(rng, spec, sr, float(rng.uniform(0.9, 1.1))), sr),
        "json": _json(meta),
    }


def _segment_sample(seed: int, i: int, meta: dict, specs: list[dict]) -> dict:
    rng = np.random.default_rng([seed, 2, i])
    spec = specs[meta["topic"]]
    center = rng.uniform(24, 40, size=2)
    velocity = rng.uniform(-3, 3, size=2)
    background = _jitter(rng, spec["background"], 10)
    sample = {"__key__": f"seg-{i:06d}"}
    for f in range(FRAMES):
        sample[f"frame{f}.jpg"] = _jpeg(_draw(rng, spec, center=center + f * velocity, background=background))
    comments = []
    for _ in range(int(rng.integers(3, 7))):
        words = _pick(rng, spec["words"], int(rng.integers(1, 3)))
        words += _pick(rng, FILLER_WORDS, int(rng.integers(1, 3)))
        rng.shuffle(words)
        comments.append(" ".join(words))
    sr = SAMPLE_RATES[int(rng.integers(0, len(SAMPLE_RATES)))]
    speech = _tone(rng, spec, sr, float(rng.uniform(0.9, 1.1)))
    t = np.arange(len(speech)) / sr
    speech *= 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))  # syllable-rate envelope
    sample["comments.json"] = _json(comments)
    sample["speech.wav"] = _wav(speech, sr)
    sample["json"] = _json(dict(meta, synthetic=True))
    return sample


def _pick(rng: np.random.Generator, words, n: int) -> list[str]:
    return [words[int(j)] for j in rng.choice(len(words), size=n, replace=False)]


def _jitter(rng: np.random.Generator, rgb: list[int], scale: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float64) + rng.normal(0, scale, size=3), 0, 255)


def _draw(rng: np.random.Generator, spec: dict, *, center: np.ndarray | None = None,
          background: np.ndarray | None = None) -> np.ndarray:
    """A (64, 64, 3) uint8 picture: jittered background, the topic's shape, pixel noise."""
    s = IMAGE_SIZE
    bg = _jitter(rng, spec["background"], 10) if background is None else background
    fg = tuple(int(c) for c in _jitter(rng, spec["accent"], 12))
    cx, cy = rng.uniform(24, 40, size=2) if center is None else center
    r = float(rng.uniform(11, 17))
    img = Image.new("RGB", (s, s), tuple(int(c) for c in bg))
    d = ImageDraw.Draw(img)
    shape = spec["shape"]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif shape == "stripes":
        phase = rng.uniform(0, 12)
        for x in np.arange(-12 + phase, s, 12):
            d.rectangle([x, 0, x + 5, s], fill=fg)
    elif shape == "cross":
        w = r / 3
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fg)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fg)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=5)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    else:  # dots
        for dx in (-r, 0, r):
            for dy in (-r, 0, r):
                d.ellipse([cx + dx - 3, cy + dy - 3, cx + dx + 3, cy + dy + 3], fill=fg)
    pixels = np.asarray(img, dtype=np.float64) + rng.normal(0, 6, size=(s, s, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _tone(rng: np.random.Generator, spec: dict, sr: int, seconds: float) -> np.ndarray:
    """The topic's harmonic tone, float64 in [-1, 1]: jittered pitch, random phases, noise, fades."""
    n = int(sr * seconds)
    t = np.arange(n) / sr
    f0 = spec["f0_hz"] * (1 + rng.normal(0, 0.015))
    x = np.zeros(n)
    for h, amp in enumerate(spec["harmonics"], start=1):
        x += amp * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
    x = x / np.abs(x).max() * rng.uniform(0.3, 0.5) + rng.normal(0, 0.03, size=n)
    fade = min(n // 2, int(0.01 * sr))
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[n - fade:] *= ramp[::-1]
    return np.clip(x, -1.0, 1.0)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _wav(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
