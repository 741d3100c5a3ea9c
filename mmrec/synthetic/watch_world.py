"""SYNTHETIC short-video world with a known truth, for aligning the generative retriever with watch-time feedback.

Real offline logs carry no watch time, and a policy aligned on a reward must be judged against what the
reward stands for, not against the reward itself (OneRec-V2, arXiv 2508.20900, "Preference Alignment
with Real-World User Interactions"; see docs/papers.md). :func:`simulate_watch_world` plants:

- items: one per code tuple ``(topic, duration class, slot)`` (``topics x duration_classes x slots``
  items); a duration ``d_i = base_duration * duration_ratio ** class * LogNormal(0, 0.15)`` seconds
  (the last class is *long*), a quality ``q_i ~ N(0, quality_std)`` and a popularity ``p_i ~ N(0,
  popularity_std)`` that only drives exposure;
- users: ``favourites`` favourite topics; affinity ``a_u[t] = affinity`` for them, 0 otherwise;
- the truth: match ``m(u, i) = a_u[topic_i] + q_i - affinity / 2``; the **true expected reward**
  (the user's satisfaction, duration-free) ``R(u, i) = sigmoid(m(u, i))``; the expected completion
  ``c(u, i) = sigmoid(m(u, i) - completion_duration * log(d_i / d_mid))`` (long videos are finished
  less often, ``d_mid`` the catalogue's median duration); a watch time is ``w = d_i * Beta(kappa c,
  kappa (1 - c))`` seconds with ``kappa = completion_concentration``, so the **true expected watch time**
  ``E[w] = d_i c(u, i)`` grows with duration much faster than ``c`` shrinks: raw watch time favours
  long items;
- logs drawn from the same truth: each next item of a user's sequence is drawn with probability
  ``proportional to exp(a_u[topic_i] + quality_taste * q_i + p_i)`` (independently of duration), with its
  watch time drawn as above.

Writes into ``out``: ``train/`` and ``heldout/`` (data folders in the format of ``mmrec seq import``:
``behaviour.parquet`` with the extra column ``watch_s``, ``users.parquet``, ``items.parquet``,
``seq.json``; held-out users are other users of the same world), ``codes.parquet`` (the code tuples,
keyed ``item-NNNNNN``, for ``mmrec retrieve train --model generative --codes``), ``world.safetensors``
(the planted ``affinity`` of every user, train users first, then held-out users; ``quality``,
``duration``, ``popularity``, ``codes`` of every item) and ``world.json`` (the config; ``"synthetic":
true``). :class:`WatchWorld` reads it back and answers the truth for any user and item. Same
arguments, same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.io import atomic_path, read_safetensors, write_json

WORLD_FILE, TRUTH_FILE = "world.json", "world.safetensors"


@dataclass
class WatchWorldConfig:
    """Sizes and planted effects of :func:`simulate_watch_world`."""

    topics: int = field(default=8, metadata={"help": "topics = first code level"})
    duration_classes: int = field(default=4, metadata={"help": "duration classes = second code level; the last one is long"})
    slots: int = field(default=4, metadata={"help": "items per (topic, duration class) = third code level"})
    users: int = field(default=1000, metadata={"help": "users of the training data folder"})
    heldout_users: int = field(default=400, metadata={"help": "other users of the same world, for evaluation"})
    length: int = field(default=12, metadata={"help": "items per user sequence (the last one is the held-out next item)"})
    favourites: int = field(default=2, metadata={"help": "favourite topics per user"})
    affinity: float = field(default=2.0, metadata={"help": "match bonus of a favourite topic"})
    quality_std: float = field(default=1.0, metadata={"help": "std of the items' planted quality"})
    quality_taste: float = field(default=0.5, metadata={"help": "weight of quality in the logged choices (1 = as in the reward)"})
    popularity_std: float = field(default=1.0, metadata={"help": "std of the items' exposure popularity (not in the reward)"})
    base_duration: float = field(default=10.0, metadata={"help": "seconds of the shortest duration class"})
    duration_ratio: float = field(default=3.0, metadata={"help": "duration factor between consecutive classes"})
    completion_duration: float = field(default=0.3, metadata={"help": "how much longer videos are finished less (per log-duration)"})
    completion_concentration: float = field(default=8.0, metadata={"help": "Beta concentration of a completion (higher = less noise)"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})

    def __post_init__(self) -> None:
        if min(self.topics, self.duration_classes, self.slots, self.users, self.heldout_users) < 1 or self.length < 3:
            raise UsageError("topics, duration_classes, slots, users and heldout_users must be >= 1 and length >= 3")
        if not 1 <= self.favourites <= self.topics:
            raise UsageError(f"favourites must be in [1, topics={self.topics}], got {self.favourites}")
        if self.duration_ratio < 1 or self.base_duration <= 0 or self.completion_concentration <= 0:
            raise UsageError("duration_ratio must be >= 1, base_duration and completion_concentration > 0")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class WatchWorld:
    """The planted truth of a world: ``affinity (U, T)``, and per item ``topic``, ``quality``,
    ``duration`` (seconds), ``popularity``, ``codes (I, 3)``; users are world indices (train users
    ``0..users-1``, then held-out users)."""

    def __init__(self, config: WatchWorldConfig, arrays: dict[str, np.ndarray]) -> None:
        self.config = config
        self.affinity, self.quality = arrays["affinity"], arrays["quality"]
        self.duration, self.popularity, self.codes = arrays["duration"], arrays["popularity"], arrays["codes"]
        self.topic = self.codes[:, 0]
        self.long = self.codes[:, 1] == config.duration_classes - 1  # (I,) the long items
        self.mid_duration = float(np.median(self.duration))

    @classmethod
    def plant(cls, config: WatchWorldConfig | dict | None = None, **overrides: Any) -> WatchWorld:
        c = replace_config(build_config(WatchWorldConfig, config, "watch world"), "watch world", **overrides)
        rng = np.random.default_rng(c.seed)
        codes = np.stack(np.meshgrid(np.arange(c.topics), np.arange(c.duration_classes), np.arange(c.slots), indexing="ij"), -1).reshape(-1, 3)
        n = len(codes)
        duration = c.base_duration * c.duration_ratio ** codes[:, 1] * rng.lognormal(0.0, 0.15, n)
        quality, popularity = rng.normal(0, c.quality_std, n), rng.normal(0, c.popularity_std, n)
        users = c.users + c.heldout_users
        favourite = np.argsort(rng.random((users, c.topics)), 1)[:, : c.favourites]
        affinity = np.zeros((users, c.topics))
        np.put_along_axis(affinity, favourite, c.affinity, 1)
        return cls(c, {"affinity": affinity, "quality": quality, "duration": duration, "popularity": popularity, "codes": codes})

    def match(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``m(u, i)`` for broadcastable ``users`` and ``items`` (world indices)."""
        return self.affinity[users, self.topic[items]] + self.quality[items] - self.config.affinity / 2

    def expected_reward(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The true expected reward ``R(u, i) = sigmoid(m(u, i))`` in (0, 1)."""
        return _sigmoid(self.match(users, items))

    def completion(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _sigmoid(self.match(users, items) - self.config.completion_duration * np.log(self.duration[items] / self.mid_duration))

    def expected_watch(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The true expected watch time ``d_i c(u, i)`` in seconds."""
        return self.duration[items] * self.completion(users, items)

    def watch(self, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One drawn watch time (seconds) per ``(user, item)``: the feedback a served item gets."""
        c = np.clip(self.completion(users, items), 1e-4, 1 - 1e-4)
        k = self.config.completion_concentration
        return self.duration[items] * rng.beta(k * c, k * (1 - c))

    def choice_logits(self, users: np.ndarray) -> np.ndarray:
        """Logits ``(len(users), I)`` of the logged next-item choice."""
        return self.affinity[users][:, self.topic] + self.config.quality_taste * self.quality + self.popularity

    def sequences(self, users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Logged sequences ``(len(users), length)`` of items and their watch times."""
        logits = self.choice_logits(users)
        p = np.exp(logits - logits.max(1, keepdims=True))
        cdf = np.cumsum(p / p.sum(1, keepdims=True), 1)
        draws = rng.random((len(users), self.config.length))
        items = np.minimum((draws[:, :, None] > cdf[:, None, :]).sum(-1), len(self.duration) - 1)
        return items, self.watch(np.repeat(users[:, None], items.shape[1], 1), items, rng)

    def save(self, out: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {"affinity": self.affinity, "quality": self.quality, "duration": self.duration, "popularity": self.popularity,
                  "codes": self.codes.astype(np.int64)}
        with atomic_path(out / TRUTH_FILE) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        write_json(out / WORLD_FILE, {"synthetic": True, "config": asdict(self.config), "items": int(len(self.duration)),
                                      "long_items": int(self.long.sum()), "train_users": self.config.users,
                                      "heldout_users": self.config.heldout_users})

    @classmethod
    def load(cls, folder: str | Path) -> WatchWorld:
        folder = Path(folder)
        if not (folder / WORLD_FILE).is_file():
            raise UsageError(f"{folder} is not a world folder of simulate_watch_world (no {WORLD_FILE})")
        meta = json.loads((folder / WORLD_FILE).read_text())
        tensors, _ = read_safetensors(folder / TRUTH_FILE, "world truth")
        return cls(build_config(WatchWorldConfig, meta["config"], "world.json config"), {k: v.numpy() for k, v in tensors.items()})


def _write_data(out: Path, items: np.ndarray, watch: np.ndarray, first_user: int, n_items: int, name: str) -> None:
    """A data folder in the format of ``mmrec seq import`` (users ``u{world index}``, items ``i{index}``)."""
    users, length = items.shape
    raw_users = [f"u{first_user + u:06d}" for u in range(users)]
    raw_items = [f"i{i:06d}" for i in range(n_items)]
    user_id = np.repeat(np.arange(users), length)
    train = np.ones((users, length), dtype=np.int8)
    train[:, -1] = 0
    out.mkdir(parents=True, exist_ok=True)
    log = pa.table({"user_id": user_id, "item_id": items.reshape(-1), "ts": np.tile(np.arange(length), users),
                    "raw_user": pa.array([raw_users[u] for u in user_id], pa.string()),
                    "raw_item": pa.array([raw_items[i] for i in items.reshape(-1)], pa.string()),
                    "click": np.ones(users * length, dtype=np.int8), "train": train.reshape(-1),
                    "watch_s": watch.reshape(-1).astype(np.float32)}).replace_schema_metadata({"mmrec": json.dumps({"dataset": name})})
    with atomic_path(out / "behaviour.parquet") as tmp:
        pq.write_table(log, tmp)
    with atomic_path(out / "users.parquet") as tmp:
        pq.write_table(pa.table({"user_id": np.arange(users), "raw_user": pa.array(raw_users, pa.string())}), tmp)
    with atomic_path(out / "items.parquet") as tmp:
        pq.write_table(pa.table({"item_id": np.arange(n_items), "raw_item": pa.array(raw_items, pa.string()),
                                 "key": pa.array([f"item-{i:06d}" for i in range(n_items)], pa.string())}), tmp)
    write_json(out / "seq.json", {"dataset": name, "format": "synthetic", "synthetic": True, "users": users, "items": n_items,
                                  "interactions": int(items.size), "first_world_user": first_user, "mean_length": float(length)})


def simulate_watch_world(out: str | Path, config: WatchWorldConfig | dict | None = None, **overrides: Any) -> dict[str, Any]:
    """Plant a world and write its folder ``out`` (see the module docstring); returns ``world.json``."""
    world = WatchWorld.plant(config, **overrides)
    c, out = world.config, Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([c.seed, 1])
    n_items = len(world.duration)
    for name, first, count in (("train", 0, c.users), ("heldout", c.users, c.heldout_users)):
        items, watch = world.sequences(np.arange(first, first + count), rng)
        _write_data(out / name, items, watch, first, n_items, f"watch-world-{name}")
    table = pa.Table.from_arrays([pa.array([f"item-{i:06d}" for i in range(n_items)], pa.string())]
                                 + [pa.array(world.codes[:, j].astype(np.int32)) for j in range(3)], names=["key", "c1", "c2", "c3"])
    with atomic_path(out / "codes.parquet") as tmp:
        pq.write_table(table.replace_schema_metadata({"mmrec": json.dumps({"method": "SYNTHETIC planted (topic, duration class, slot)"})}), tmp)
    world.save(out)
    return json.loads((out / WORLD_FILE).read_text())


__all__ = ["WatchWorld", "WatchWorldConfig", "simulate_watch_world"]
