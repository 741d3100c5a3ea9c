"""SYNTHETIC live-streaming world for gifting models (MMBee, docs/papers.md): nothing here is real data.

No public gifting log can be had offline, so :func:`simulate_live` draws one whose structure is
known and written next to it, so that models and tests can check what they recover:

- authors: a category (their home topic, balanced over ``topics``), two secondary topics, a
  popularity ~ lognormal and a co-gifting ``community`` (independent of the category);
- users: latent interests ~ Dirichlet(0.3) over the topics, a community, a heavy-tailed gift
  propensity ~ lognormal(0, ``propensity_sigma``) and an impression volume ~ lognormal(0, 0.5);
  ``gift_activity`` is ``low`` / ``mid`` / ``high`` by propensity (below the 60th percentile, up to
  the 90th, above);
- live streams: each author streams about every other day; a stream is 3-8 contiguous segments of
  ``segment_seconds``; the *content topic drifts*: a segment keeps the previous segment's topic with
  probability 0.6, else draws from the author's mix (home 0.5, secondaries 0.25 each);
- live impressions (``domain="live"``, ``item_id`` = segment key ``seg-SSSSSS-JJJ``): a user meets
  authors with logit ``2 * K * interest_u[category_a] + 1 * [community_u == community_a] +
  log popularity_a``, then a random stream and segment of that author. With ``m = interest_u[topic
  of the segment]`` (the match with the *current* content):

  - ``watch``   ~ Bernoulli(sigmoid(-0.3 + 3 (K m - 1) / K)),
  - ``like``    | watch ~ Bernoulli(0.04 + 0.2 m), ``comment`` | watch ~ Bernoulli(0.02 + 0.1 m),
  - ``gift``    | watch ~ Bernoulli(sigmoid(b0 + log propensity_u + ``gift_match`` * K * m +
    ``gift_community`` * [community_u == community_a] + charisma_a)), ``charisma_a`` ~
    N(0, ``author_charisma``^2) per author, ``b0`` solved (bisection) so gifts are
    ``gift_rate`` (default 1 %) of watches; ``gift_value`` ~ lognormal(1, 1) coins, 0 without a gift.

  So gifting depends on the segment's current topic (what MFQ's segment vectors can see and author
  ids cannot) and on a community that only co-gifting reveals (what GIE's graphs can see);
- short videos (``domain="video"``, ``item_id`` = ``vid-AAAAA-JJJ``): ``video_ratio`` (default 9)
  times as many rows as live, per user in proportion to their live volume, authors drawn by interest
  (no community term), ``watch`` ~ Bernoulli(0.3 + 0.5 m), likes and comments as above, never a gift;
- segment content (the model inputs MFQ fuses): per segment ``frame_tokens`` frame tokens,
  ``speech_tokens`` speech tokens and 2-``comment_tokens`` comment tokens of width ``token_dim``,
  each ``R_m (topic_vec + 0.5 author_style) + noise`` with a random orthogonal ``R_m`` per modality
  and N(0, ``token_noise``^2) noise; a third of the comment tokens lag (they carry the previous
  segment's topic). One token is a noisy view (nearest topic mean right about 2 times in 3 with 8
  topics); the whole sequence says which topic is on now.

Outputs in ``out`` (same arguments, same bytes):
``live-behaviour.parquet`` (``user_id, item_id, author_id, domain, ts, watch, like, comment, gift,
gift_value``; rows in time order, row groups of ``row_group_size``), ``users.parquet``
(``user_id, community, gift_activity, propensity`` + the interest vector), ``authors.parquet``
(``author_id, community, category, charisma``), ``segments.parquet`` (``item_id, stream_id, author_id, start,
end, topic``), ``segment-tokens.safetensors`` (``image (N, Lf, d)``, ``audio (N, Ls, d)``,
``text (N, Lc, d)``, ``text_mask (N, Lc)``, rows in ``segments.parquet`` order), ``live.json``
(the parameters and counts; ``"synthetic": true``) and, with ``shard_segments > 0``, webdataset
shards ``segments-NNNNNN.tar`` of the first segments in the format of docs/file-contracts.md (frames, comments,
speech drawn from the segment's topic by :mod:`mmrec.synthetic.sample_data`'s writers) for ``mmrec extract``.
:func:`read_live_log` reads the log back and checks it; :func:`read_live_world` reads the whole folder
(:class:`LiveWorld`: log, author categories, user groups, segment tokens), what GTR's data is built from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.config import build_config, check_bounds, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, write_json
from mmrec.logs import check_schema, iter_log, log_sources

if TYPE_CHECKING:
    import torch

LOG_FILE = "live-behaviour.parquet"
USERS_FILE = "users.parquet"
AUTHORS_FILE = "authors.parquet"
SEGMENTS_FILE = "segments.parquet"
TOKENS_FILE = "segment-tokens.safetensors"
LABELS = ("watch", "like", "comment", "gift")
LOG_SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("item_id", pa.string()), ("author_id", pa.int64()), ("domain", pa.string()),
    ("ts", pa.int64()), ("watch", pa.int8()), ("like", pa.int8()), ("comment", pa.int8()), ("gift", pa.int8()),
    ("gift_value", pa.float32()),
])
ACTIVITY = ("low", "mid", "high")
DAY = 86400
START_TS = 1_700_000_000
_NOTE = "SYNTHETIC live-streaming data from mmrec.synthetic.live_sim, not real behaviour; see its docstring for what is planted"


@dataclass
class LiveSimConfig:
    """Sizes and effect strengths of the SYNTHETIC live world (see the module docstring)."""

    users: int = field(default=4000, metadata={"help": "users", "min": 1})
    authors: int = field(default=200, metadata={"help": "authors", "min": 2})
    topics: int = field(default=8, metadata={"help": "planted content topics", "min": 2})
    communities: int = field(default=8, metadata={"help": "planted co-gifting communities", "min": 1})
    days: int = field(default=14, metadata={"help": "days of log", "min": 1})
    live_impressions: float = field(default=60.0, metadata={"help": "mean live rows per user", "min": 0})
    video_ratio: float = field(default=9.0, metadata={"help": "short-video rows per live row", "min": 0})
    videos_per_author: int = field(default=30, metadata={"help": "short videos per author", "min": 1})
    segment_seconds: int = field(default=300, metadata={"help": "length of a live segment in seconds", "min": 1})
    gift_rate: float = field(default=0.01, metadata={"help": "gifts / watches in the live domain"})
    gift_match: float = field(default=0.6, metadata={"help": "gift logit per unit of K * interest in the current segment topic"})
    gift_community: float = field(default=1.5, metadata={"help": "gift logit bonus for an author of the user's community"})
    propensity_sigma: float = field(default=1.2, metadata={"help": "sigma of the lognormal per-user gift propensity", "min": 0})
    author_charisma: float = field(default=0.7, metadata={"help": "std of a per-author gift logit (some streamers draw more gifts)"})
    token_dim: int = field(default=32, metadata={"help": "width of the segment token vectors", "min": 2})
    frame_tokens: int = field(default=4, metadata={"help": "frame tokens per segment", "min": 1})
    speech_tokens: int = field(default=2, metadata={"help": "speech tokens per segment", "min": 1})
    comment_tokens: int = field(default=6, metadata={"help": "most comment tokens per segment", "min": 2})
    token_noise: float = field(default=1.0, metadata={"help": "std of the noise on every token", "min": 0})
    shard_segments: int = field(default=0, metadata={
        "help": "segments also written as webdataset shards for mmrec extract (small: extraction is slow on CPU)", "min": 0})
    shard_size: int = field(default=100, metadata={"help": "segments per shard", "min": 1})
    row_group_size: int = field(default=65536, metadata={"help": "rows per Parquet row group of the log", "min": 1})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same bytes)", "min": 0})

    def __post_init__(self) -> None:
        check_bounds(self)
        if not 0.0 < self.gift_rate < 1.0:
            raise UsageError(f"gift_rate must be in (0, 1), got {self.gift_rate}")
        if self.shard_segments:
            from mmrec.synthetic.sample_data import MAX_TOPICS

            if self.topics > MAX_TOPICS:
                raise UsageError(f"shards need topics <= {MAX_TOPICS}, got {self.topics}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_rows(rng: np.random.Generator, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each row r of ``probs`` (R, A), ``counts[r]`` draws of a column; concatenated in row order."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    owner = np.repeat(np.arange(len(probs)), counts)
    u = rng.random(len(owner))
    # searchsorted per row, vectorised: offset every row's cdf by its row number
    flat = (cdf + np.arange(len(probs))[:, None]).ravel()
    idx = np.searchsorted(flat, u + owner, side="right") - owner * probs.shape[1]
    return np.minimum(idx, probs.shape[1] - 1)


def _streams(rng: np.random.Generator, cfg: LiveSimConfig, topic_mix: np.ndarray) -> dict[str, np.ndarray]:
    """Every segment of every stream: author, stream, start/end time, topic (drifting)."""
    n_streams = np.maximum(rng.poisson(cfg.days / 2, size=cfg.authors), 1)
    author, stream, start, end, topic, position = [], [], [], [], [], []
    s = 0
    for a in range(cfg.authors):
        begins = np.sort(rng.integers(0, cfg.days * DAY - 8 * cfg.segment_seconds, size=n_streams[a]))
        for b in begins:
            length = int(rng.integers(3, 9))
            t = int(np.argmax(topic_mix[a]))
            for j in range(length):
                if j > 0 and rng.random() >= 0.6:
                    t = int(rng.choice(cfg.topics, p=topic_mix[a]))
                author.append(a)
                stream.append(s)
                start.append(START_TS + b + j * cfg.segment_seconds)
                end.append(START_TS + b + (j + 1) * cfg.segment_seconds)
                topic.append(t)
                position.append(j)
            s += 1
    return {k: np.asarray(v, dtype=np.int64) for k, v in
            dict(author=author, stream=stream, start=start, end=end, topic=topic, position=position).items()}


def _tokens(rng: np.random.Generator, cfg: LiveSimConfig, seg: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    d, n = cfg.token_dim, len(seg["topic"])
    topic_vec = rng.normal(size=(cfg.topics, d)) / np.sqrt(d) * 2.0  # (K, d), norm about 2
    style = rng.normal(size=(cfg.authors, d)) / np.sqrt(d)  # (A, d)
    previous = np.where(seg["position"] > 0, np.roll(seg["topic"], 1), seg["topic"])

    def modality(length: int, lag: float) -> np.ndarray:
        rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
        lagged = rng.random((n, length)) < lag
        topics = np.where(lagged, previous[:, None], seg["topic"][:, None])  # (n, L)
        clean = topic_vec[topics] + 0.5 * style[seg["author"]][:, None, :]  # (n, L, d)
        return (clean @ rotation.T + rng.normal(0.0, cfg.token_noise, size=(n, length, d))).astype(np.float32)

    image = modality(cfg.frame_tokens, 0.0)
    audio = modality(cfg.speech_tokens, 0.0)
    text = modality(cfg.comment_tokens, 1 / 3)
    text_len = rng.integers(2, cfg.comment_tokens + 1, size=n)
    text_mask = np.arange(cfg.comment_tokens)[None, :] < text_len[:, None]
    text *= text_mask[:, :, None]
    return {"image": image, "audio": audio, "text": text, "text_mask": text_mask.astype(np.uint8)}


def _solve_bias(logit: np.ndarray, rate: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(logit + mid).mean() < rate else (lo, mid)
    return (lo + hi) / 2


def simulate_live(out: str | Path, config: LiveSimConfig | dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the SYNTHETIC live world described in the module docstring into ``out``; returns ``live.json``'s content."""
    cfg = replace_config(build_config(LiveSimConfig, config, "live simulator"), "live simulator", **overrides)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)
    K = cfg.topics
    rng = np.random.default_rng([cfg.seed, 8, 0])

    # authors
    category = rng.permutation(np.arange(cfg.authors) % K)
    author_community = rng.integers(0, cfg.communities, size=cfg.authors)
    popularity = rng.lognormal(0.0, 0.5, size=cfg.authors)
    charisma = rng.normal(0.0, cfg.author_charisma, size=cfg.authors)
    secondary = (category[:, None] + rng.integers(1, K, size=(cfg.authors, 2))) % K
    topic_mix = np.zeros((cfg.authors, K))
    topic_mix[np.arange(cfg.authors), category] += 0.5
    np.add.at(topic_mix, (np.repeat(np.arange(cfg.authors), 2), secondary.ravel()), 0.25)

    # users
    interest = rng.dirichlet(np.full(K, 0.3), size=cfg.users)  # (U, K)
    user_community = rng.integers(0, cfg.communities, size=cfg.users)
    propensity = rng.lognormal(0.0, cfg.propensity_sigma, size=cfg.users)
    volume = rng.lognormal(0.0, 0.5, size=cfg.users)
    cut = np.quantile(propensity, [0.6, 0.9])
    activity = np.searchsorted(cut, propensity, side="right")  # 0 low, 1 mid, 2 high

    seg = _streams(rng, cfg, topic_mix)
    n_seg = len(seg["topic"])
    first_seg = np.r_[0, np.flatnonzero(np.diff(seg["stream"])) + 1]  # first segment of each stream
    stream_len = np.diff(np.r_[first_seg, n_seg])
    stream_author = seg["author"][first_seg]
    author_streams = [np.flatnonzero(stream_author == a) for a in range(cfg.authors)]
    streams_per_author = np.array([len(s) for s in author_streams])
    author_first_stream = np.array([s[0] for s in author_streams])

    # live impressions
    same = user_community[:, None] == author_community[None, :]  # (U, A)
    meet = np.exp(2.0 * K * interest[:, category] + 1.0 * same + np.log(popularity)[None, :])
    n_live = rng.poisson(cfg.live_impressions * volume / volume.mean())
    live_user = np.repeat(np.arange(cfg.users), n_live)
    live_author = _draw_rows(rng, meet, n_live)
    stream = author_first_stream[live_author] + (rng.random(len(live_user)) * streams_per_author[live_author]).astype(np.int64)
    segment = first_seg[stream] + (rng.random(len(live_user)) * stream_len[stream]).astype(np.int64)
    live_ts = seg["start"][segment] + rng.integers(0, cfg.segment_seconds, size=len(segment))
    m = interest[live_user, seg["topic"][segment]]
    watch = rng.random(len(m)) < _sigmoid(-0.3 + 3.0 * (K * m - 1.0) / K)
    like = watch & (rng.random(len(m)) < 0.04 + 0.2 * m)
    comment = watch & (rng.random(len(m)) < 0.02 + 0.1 * m)
    gift_logit = (np.log(propensity[live_user]) + cfg.gift_match * K * m
                  + cfg.gift_community * same[live_user, live_author] + charisma[live_author])
    b0 = _solve_bias(gift_logit[watch], cfg.gift_rate)
    gift = watch & (rng.random(len(m)) < _sigmoid(b0 + gift_logit))
    gift_value = np.where(gift, np.round(rng.lognormal(1.0, 1.0, size=len(m)), 1) + 0.1, 0.0).astype(np.float32)
    seg_keys = np.array([f"seg-{s:06d}-{j:03d}" for s, j in zip(seg["stream"], seg["position"])], dtype=object)

    # short videos: video_ratio times the live rows, per user in proportion to their live volume
    video_topic = np.where(rng.random((cfg.authors, cfg.videos_per_author)) < 0.5, category[:, None],
                           _draw_rows(rng, topic_mix, np.full(cfg.authors, cfg.videos_per_author)).reshape(cfg.authors, -1))
    n_video = rng.poisson(cfg.video_ratio * cfg.live_impressions * volume / volume.mean())
    video_user = np.repeat(np.arange(cfg.users), n_video)
    video_author = _draw_rows(rng, np.exp(2.0 * K * interest[:, category] + np.log(popularity)[None, :]), n_video)
    video_j = rng.integers(0, cfg.videos_per_author, size=len(video_user))
    vm = interest[video_user, video_topic[video_author, video_j]]
    v_watch = rng.random(len(vm)) < 0.3 + 0.5 * vm
    v_like = v_watch & (rng.random(len(vm)) < 0.04 + 0.2 * vm)
    v_comment = v_watch & (rng.random(len(vm)) < 0.02 + 0.1 * vm)
    video_ts = START_TS + rng.integers(0, cfg.days * DAY, size=len(video_user))
    video_keys = np.array([f"vid-{a:05d}-{j:03d}" for a in range(cfg.authors) for j in range(cfg.videos_per_author)],
                          dtype=object)

    n_l, n_v = len(live_user), len(video_user)
    user_id = np.r_[live_user, video_user]
    ts = np.r_[live_ts, video_ts]
    order = np.lexsort((np.r_[np.zeros(n_l, np.int64), np.ones(n_v, np.int64)], user_id, ts))
    item = np.r_[seg_keys[segment], video_keys[video_author * cfg.videos_per_author + video_j]][order]
    domain = np.r_[np.zeros(n_l, np.int8), np.ones(n_v, np.int8)][order]
    table = pa.table({
        "user_id": user_id[order],
        "item_id": pa.array(item, pa.string()),
        "author_id": np.r_[live_author, video_author][order].astype(np.int64),
        "domain": pa.DictionaryArray.from_arrays(domain, pa.array(["live", "video"])).cast(pa.string()),
        "ts": ts[order].astype(np.int64),
        "watch": np.r_[watch, v_watch][order].astype(np.int8),
        "like": np.r_[like, v_like][order].astype(np.int8),
        "comment": np.r_[comment, v_comment][order].astype(np.int8),
        "gift": np.r_[gift, np.zeros(n_v, bool)][order].astype(np.int8),
        "gift_value": np.r_[gift_value, np.zeros(n_v, np.float32)][order],
    }, schema=LOG_SCHEMA)
    note = json.dumps({"synthetic": True, "note": _NOTE})
    _write(out / LOG_FILE, table, note, cfg.row_group_size)
    users = {"user_id": np.arange(cfg.users, dtype=np.int64), "community": user_community.astype(np.int64),
             "gift_activity": pa.array([ACTIVITY[a] for a in activity], pa.string()),
             "propensity": propensity.astype(np.float32),
             "interest": pa.FixedSizeListArray.from_arrays(pa.array(interest.astype(np.float32).ravel()), K)}
    _write(out / USERS_FILE, pa.table(users), note)
    _write(out / AUTHORS_FILE, pa.table({"author_id": np.arange(cfg.authors, dtype=np.int64),
                                         "community": author_community.astype(np.int64),
                                         "category": category.astype(np.int64),
                                         "charisma": charisma.astype(np.float32)}), note)
    _write(out / SEGMENTS_FILE, pa.table({
        "item_id": pa.array(seg_keys, pa.string()), "stream_id": seg["stream"], "author_id": seg["author"],
        "start": seg["start"], "end": seg["end"], "topic": seg["topic"], "position": seg["position"]}), note)
    tokens = _tokens(rng, cfg, seg)
    from safetensors.numpy import save_file

    with atomic_path(out / TOKENS_FILE) as tmp:
        save_file(tokens, str(tmp), metadata={"mmrec": json.dumps({"synthetic": True, "note": _NOTE,
                                                                     "rows": SEGMENTS_FILE})})
    shards = _write_segment_shards(out, cfg, seg, seg_keys) if cfg.shard_segments else []

    live_rows = int(n_l)
    summary = {
        "synthetic": True, "note": _NOTE, "config": asdict(cfg),
        "rows": int(len(table)), "live_rows": live_rows, "video_rows": int(n_v),
        "live_watches": int(watch.sum()), "gifts": int(gift.sum()),
        "gift_rate": float(gift.sum() / max(watch.sum(), 1)), "gift_bias": b0,
        "segments": int(n_seg), "streams": int(len(first_seg)),
        "gift_activity_users": {name: int((activity == i).sum()) for i, name in enumerate(ACTIVITY)},
        "files": {"log": LOG_FILE, "users": USERS_FILE, "authors": AUTHORS_FILE, "segments": SEGMENTS_FILE,
                  "tokens": TOKENS_FILE, "shards": [p.name for p in shards]},
    }
    write_json(out / "live.json", summary)
    return summary


def _write(path: Path, table: pa.Table, note: str, row_group_size: int | None = None) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({"mmrec": note}), tmp, row_group_size=row_group_size)


def _write_segment_shards(out: Path, cfg: LiveSimConfig, seg: dict[str, np.ndarray], keys: np.ndarray) -> list[Path]:
    """The first ``shard_segments`` segments as docs/file-contracts.md live-segment samples, via mmrec.synthetic.sample_data's writers."""
    from tqdm import tqdm

    from mmrec.synthetic.sample_data import _segment_sample, _topic_specs, _write_shards

    specs = _topic_specs(cfg.topics)
    n = min(cfg.shard_segments, len(keys))
    metas = [{"stream_id": int(seg["stream"][i]), "author_id": int(seg["author"][i]),
              "start": int(seg["start"][i]), "end": int(seg["end"][i]), "topic": int(seg["topic"][i])} for i in range(n)]

    def make(i: int, meta: dict) -> dict:
        sample = _segment_sample(cfg.seed, i, meta, specs)
        sample["__key__"] = str(keys[i])
        return sample

    return _write_shards(out, "segments", metas, cfg.shard_size, tqdm(disable=True), make)


LOG_KINDS = {"user_id": "integer", "author_id": "integer", "item_id": "string", "domain": "string",
             "ts": "time", "gift_value": "value", **{name: "label" for name in LABELS}}
DOMAINS = ("live", "video")


def read_live_log(path: str | Path, *, users: int | None = None, authors: int | None = None,
                  columns: list[str] | None = None, batch_rows: int = 1 << 20) -> pa.Table:
    """Read a live behaviour log and check it: the columns of the contract (:data:`LOG_SCHEMA`, all by
    default) with their kinds (:data:`LOG_KINDS`), read and checked by :func:`mmrec.logs.iter_log`
    (types, nulls, labels 0/1, ``gift_value`` finite, >= 0 and 0 without a gift, ids in ``[0, users)``
    / ``[0, authors)`` when given), plus what only the live contract says: ``ts`` in integer seconds,
    ``domain`` ``live`` or ``video``. Returns a table typed as :data:`LOG_SCHEMA`, streamed
    ``batch_rows`` rows at a time.

    Raises :class:`InputError` naming the file and the column at fault.
    """
    wanted = list(columns or LOG_SCHEMA.names)
    unknown = [c for c in wanted if c not in LOG_SCHEMA.names]
    if unknown:
        raise UsageError(f"unknown live log column(s) {unknown}; a live log has {', '.join(LOG_SCHEMA.names)}")
    [(name, source)] = log_sources(path)
    check_schema(name, source.schema_arrow, wanted, LOG_KINDS)
    if "ts" in wanted and not pa.types.is_integer(source.schema_arrow.field("ts").type):
        raise InputError(f"{name}: column 'ts' has type {source.schema_arrow.field('ts').type}, expected integer seconds",
                         field="ts")
    schema = pa.schema([LOG_SCHEMA.field(c) for c in wanted])
    batches = []
    for offset, cols in _with_offsets(iter_log(path, wanted, kinds=LOG_KINDS, n_users=users, n_authors=authors,
                                               batch_rows=batch_rows)):
        if "domain" in cols:
            odd = ~np.isin(cols["domain"], DOMAINS)
            if odd.any():
                raise InputError(f"{name}: column 'domain' has unknown values {sorted(set(cols['domain'][odd]))} "
                                 f"(first at row {offset + int(np.flatnonzero(odd)[0])}; a live log has {', '.join(DOMAINS)})",
                                 field="domain")
        batches.append(pa.record_batch([pa.array(cols[c], type=schema.field(c).type) for c in wanted], schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _with_offsets(batches):
    offset = 0
    for cols in batches:
        yield offset, cols
        offset += len(next(iter(cols.values()))) if cols else 0


@dataclass
class LiveWorld:
    """A :func:`simulate_live` folder in memory: what models take instead of the folder (:func:`read_live_world`)."""

    log: pa.Table  # the checked behaviour log (:func:`read_live_log`)
    author_category: np.ndarray  # (A,) int64, authors.parquet's category
    num_users: int
    gift_activity: np.ndarray  # (U,) object: users.parquet's low / mid / high
    segment_keys: list[str] | None = None  # segments.parquet's item_id, the rows of ``tokens``
    tokens: dict[str, torch.Tensor] | None = None  # modality -> (S, L, d) float32
    masks: dict[str, torch.Tensor] | None = None  # modality -> (S, L) bool

    def activity_groups(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """``(group index per user (U,), group names)``: :data:`ACTIVITY` order, other labels after."""
        present = set(self.gift_activity.tolist())
        names = tuple(a for a in ACTIVITY if a in present) + tuple(sorted(present - set(ACTIVITY)))
        return np.array([names.index(a) for a in self.gift_activity.tolist()], dtype=np.int64), names


def read_segment_tokens(folder: str | Path) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``segments.parquet`` keys and ``segment-tokens.safetensors`` of a :func:`simulate_live` folder
    -> ``(keys, tokens {modality: (S, L, d)}, masks {modality: (S, L) bool})``."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (SEGMENTS_FILE, TOKENS_FILE):
        if not (folder / name).is_file():
            raise UsageError(f"segment tokens need {folder / name}")
    keys = pq.read_table(folder / SEGMENTS_FILE, columns=["item_id"]).column("item_id").to_pylist()
    raw = load_file(str(folder / TOKENS_FILE))
    tokens = {m: raw[m].float() for m in ("image", "audio", "text") if m in raw}
    if not tokens or any(len(t) != len(keys) for t in tokens.values()):
        raise InputError(f"{folder / TOKENS_FILE}: token tensors must have one row per segment of {SEGMENTS_FILE} ({len(keys)})")
    masks = {m: raw[f"{m}_mask"].bool() if f"{m}_mask" in raw else torch.ones(t.shape[:2], dtype=torch.bool)
             for m, t in tokens.items()}
    return keys, tokens, masks


def read_live_world(folder: str | Path, *, tokens: bool = True) -> LiveWorld:
    """Read a :func:`simulate_live` folder: the users and authors tables, the log checked against
    them (:func:`read_live_log`) and, with ``tokens``, the segment tokens (:func:`read_segment_tokens`)."""
    folder = Path(folder)
    if not (folder / LOG_FILE).is_file():
        raise UsageError(f"{folder} holds no {LOG_FILE}; write one with mmrec live simulate")
    for name in (USERS_FILE, AUTHORS_FILE):
        if not (folder / name).is_file():
            raise UsageError(f"{folder} holds no {name}; write the folder with mmrec live simulate")
    authors = pq.ParquetFile(folder / AUTHORS_FILE)
    users = pq.ParquetFile(folder / USERS_FILE)
    check_schema(str(folder / AUTHORS_FILE), authors.schema_arrow, ["category"], {"category": "integer"})
    check_schema(str(folder / USERS_FILE), users.schema_arrow, ["gift_activity"], {"gift_activity": "string"})
    category = authors.read(columns=["category"]).column(0).to_numpy().astype(np.int64)
    activity = np.asarray(users.read(columns=["gift_activity"]).column(0).to_pylist(), dtype=object)
    world = LiveWorld(log=read_live_log(folder / LOG_FILE, users=len(activity), authors=len(category)),
                      author_category=category, num_users=len(activity), gift_activity=activity)
    if tokens:
        world.segment_keys, world.tokens, world.masks = read_segment_tokens(folder)
    return world


__all__ = ["LiveSimConfig", "LiveWorld", "read_live_log", "read_live_world", "read_segment_tokens", "simulate_live"]
