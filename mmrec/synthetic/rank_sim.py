"""SYNTHETIC multi-task, multi-domain behaviour logs with planted effects, for rankers to find.

Nothing here is real data: KuaiRand-like logs cannot be had offline, so :func:`simulate` draws a
log whose structure is known. It plants

- items: a topic, a latent quality ``q`` ~ N(0, 1), an author (who mostly posts one topic) and a
  release time; an item can be shown only during ``lifetime`` after its release, so items released
  in the test period are new (cold) there. Each item has a *content vector*: its topic's centre plus
  ``q`` along a fixed direction plus noise, written as ``emb-items-000000.parquet`` in the layout of
  ``mmrec extract`` (column ``fused``); codes made from it by ``mmrec quantize`` carry topic and
  quality, which item ids of cold items cannot;
- users: topic preferences ``P_u`` ~ N(0, 1) per topic (affinity ``a = P_u[topic]``), a bias
  ``b_u``, a quality taste ``s_u`` = +1 or -1 (a share ``taste_flip``, default half, of users
  prefer what the others dislike, so no shared model can rank by quality for everyone), a mix
  over the domains; impressions come half from the user's two favourite topics, half at random;
- three domains (``video``, ``live``, ``mall``) and three tasks, label ~ Bernoulli(sigmoid(logit)):

  - ``click``  = -0.8 + a + 0.8 q + b_u + (0, -0.3, 0.3)[domain]
  - ``like``   (the *domain-specific task*) = -1 + 0.5 b_u + S * (A[d] * a + Q[d] * s_u * q) with
    ``S = like_strength``, ``A = like_affinity = (1, 0, 0.5)``, ``Q = like_taste = (0, 1, 0.5)``:
    in ``video`` users like what they are interested in, in ``live`` what matches their own
    quality taste, in ``mall`` half of each. Ranking likes within a user needs the domain *and*
    the user's taste: what PEPNet's EPNet and PPNet gates are for;
  - ``follow`` = -1.5 + a + author popularity + 0.5 b_u, observed only in ``live`` (null elsewhere:
    a label mask);
  - with ``tasks`` = N > 3, N - 3 more tasks ``t03 ... t{N-1}`` (observed everywhere), what many-task
    rankers (SMES) are for: skewed positive rates falling geometrically from ``max_rate`` to
    ``min_rate`` (some under 1% by default), and planted relations: task ``t_j``'s parent is base task
    ``(click, like, follow)[(j - 3) % 3]`` and its logit is
    ``c_j + 1.5 * (r * z(parent logit) + sqrt(1 - r^2) * o_j)`` with ``r = task_relation``, ``z`` the
    standardisation over the log and ``o_j`` a task-own effect (random weights over affinity, quality,
    taste x quality, author popularity, user bias, the user's affinity to a topic of its own and the
    item being of that topic), standardised and made uncorrelated with the parent's, so the planted
    logits correlate with the parent's at exactly ``r``; ``c_j`` is set (bisection) so the planted
    probabilities average to the task's rate.

Outputs in ``out``: ``behaviour.parquet`` (``user_id, item_id, author_id, domain, ts, click,
like, follow``; rows in time order), ``truth.parquet`` (the planted probabilities ``p_click,
p_like, p_follow`` of every log row: the best any model could score), ``emb/emb-items-000000.parquet``
(keys ``item-000042``), ``simulation.json`` (the parameters; ``"synthetic": true``) and
``rank.yaml`` (a PEPNet config over the log and ``codes/codes.parquet``, which
``mmrec quantize --emb OUT/emb --out OUT/codes`` makes). Same arguments, same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.config import build_config, check_bounds, replace_config
from mmrec.errors import UsageError
from mmrec.io import atomic_open, atomic_path, write_json
from mmrec.store import write_emb_file

DOMAINS = ("video", "live", "mall")
TASKS = ("click", "like", "follow")
DAY = 86400
_NOTE = "SYNTHETIC data from mmrec.synthetic.rank_sim, not real behaviour; see its docstring for what is planted"


@dataclass
class SimulationConfig:
    """Sizes and effect strengths of the simulated log (SYNTHETIC)."""

    users: int = field(default=500, metadata={"help": "users", "min": 1})
    items: int = field(default=2000, metadata={"help": "items", "min": 1})
    authors: int = field(default=150, metadata={"help": "authors (each mostly posts one topic)", "min": 1})
    topics: int = field(default=8, metadata={"help": "item topics", "min": 2})
    content_dim: int = field(default=32, metadata={"help": "width of the item content vectors", "min": 1})
    impressions: int = field(default=60, metadata={"help": "mean impressions per user (uniform in [n/2, 3n/2])", "min": 1})
    days: int = field(default=30, metadata={"help": "days the log spans", "min": 1})
    lifetime: float = field(default=0.5, metadata={"help": "share of the period an item stays showable"})
    like_strength: float = field(default=2.5, metadata={"help": "scale S of the like logit's planted effects"})
    like_affinity: tuple[float, float, float] = field(default=(1.0, 0.0, 0.5), metadata={
        "help": "per domain (video, live, mall): weight of the topic affinity in like"})
    like_taste: tuple[float, float, float] = field(default=(0.0, 1.0, 0.5), metadata={
        "help": "per domain (video, live, mall): weight of the user's quality taste in like"})
    taste_flip: float = field(default=0.5, metadata={"help": "share of users whose quality taste is reversed"})
    content_noise: float = field(default=0.3, metadata={"help": "noise norm of the content vectors"})
    tasks: int = field(default=3, metadata={"help": "tasks: 3 = click, like, follow; more adds related tasks t03.. with skewed positive rates", "min": 3})
    task_relation: float = field(default=0.8, metadata={"help": "correlation of an added task's planted logit with its parent task's"})
    max_rate: float = field(default=0.2, metadata={"help": "positive rate of the first added task (rates fall geometrically)"})
    min_rate: float = field(default=0.003, metadata={"help": "positive rate of the last, sparsest added task"})
    seed: int = field(default=0, metadata={"help": "random seed (same arguments, same bytes)"})

    def __post_init__(self) -> None:
        check_bounds(self)
        if len(self.like_affinity) != len(DOMAINS) or len(self.like_taste) != len(DOMAINS):
            raise UsageError(f"like_affinity and like_taste need one weight per domain {DOMAINS}")
        if not 0 < self.lifetime <= 1 or not 0 <= self.taste_flip <= 1:
            raise UsageError("simulation needs lifetime in (0, 1] and taste_flip in [0, 1]")
        if not 0 <= self.task_relation <= 1 or not 0 < self.min_rate <= self.max_rate < 1:
            raise UsageError("simulation needs task_relation in [0, 1] and 0 < min_rate <= max_rate < 1")

    @property
    def task_names(self) -> list[str]:
        return list(TASKS) + [f"t{j:02d}" for j in range(len(TASKS), self.tasks)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate(out: str | Path, **options: Any) -> dict[str, Any]:
    """Write a SYNTHETIC log, content vectors, ``simulation.json`` and ``rank.yaml`` into ``out``.

    ``options`` are :class:`SimulationConfig` fields (or ``config=`` one). Returns the summary (also
    in ``simulation.json``).
    """
    config = options.pop("config", None)
    cfg = replace_config(build_config(SimulationConfig, config, "simulation"), "simulation", **options)
    rng = np.random.default_rng(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    # items, authors, content
    author_topic = rng.integers(0, cfg.topics, cfg.authors)
    author_pop = rng.normal(0, 0.7, cfg.authors)
    item_author = rng.integers(0, cfg.authors, cfg.items)
    item_topic = np.where(rng.random(cfg.items) < 0.8, author_topic[item_author], rng.integers(0, cfg.topics, cfg.items))
    quality = rng.normal(0, 1, cfg.items)
    release = rng.uniform(-cfg.lifetime, 1.0, cfg.items)
    centres = rng.normal(0, 1, (cfg.topics, cfg.content_dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q_dir = rng.normal(0, 1, cfg.content_dim)
    q_dir /= np.linalg.norm(q_dir)
    content = (centres[item_topic] + 0.5 * quality[:, None] * q_dir
               + rng.normal(0, cfg.content_noise / np.sqrt(cfg.content_dim), (cfg.items, cfg.content_dim)))

    # users
    prefs = rng.normal(0, 1, (cfg.users, cfg.topics))
    favourites = np.argsort(-prefs, axis=1)[:, :2]
    bias = rng.normal(0, 0.5, cfg.users)
    taste = np.where(rng.random(cfg.users) < cfg.taste_flip, -1.0, 1.0)
    domain_mix = rng.dirichlet(np.ones(len(DOMAINS)), cfg.users)

    counts = rng.integers(cfg.impressions // 2, cfg.impressions * 3 // 2 + 1, cfg.users)
    user = np.repeat(np.arange(cfg.users), counts)
    n = len(user)
    t = rng.random(n)
    domain = (rng.random(n)[:, None] > np.cumsum(domain_mix[user], axis=1)).sum(axis=1).clip(max=len(DOMAINS) - 1)
    item = _draw_items(rng, t, user, favourites, item_topic, release, cfg.lifetime)

    aff = prefs[user, item_topic[item]]
    q = quality[item]
    click = -0.8 + aff + 0.8 * q + bias[user] + np.array([0.0, -0.3, 0.3])[domain]
    s = cfg.like_strength
    w_aff, w_q = s * np.asarray(cfg.like_affinity)[domain], s * np.asarray(cfg.like_taste)[domain]
    like = -1.0 + 0.5 * bias[user] + w_aff * aff + w_q * taste[user] * q
    follow = -1.5 + aff + author_pop[item_author[item]] + 0.5 * bias[user]
    probs = {name: _sigmoid(logit) for name, logit in zip(TASKS, (click, like, follow))}
    labels = {name: rng.random(n) < p for name, p in probs.items()}
    parents = {}
    if cfg.tasks > len(TASKS):  # drawn after the base tasks: a 3-task log keeps its bytes
        own = np.stack([aff, q, taste[user] * q, author_pop[item_author[item]], bias[user]], axis=1)
        rates = np.geomspace(cfg.max_rate, cfg.min_rate, cfg.tasks - len(TASKS))
        for j, name in enumerate(cfg.task_names[len(TASKS):]):
            parents[name] = TASKS[j % len(TASKS)]
            topic = rng.integers(0, cfg.topics)
            features = np.column_stack([own, prefs[user, topic], item_topic[item] == topic])
            logit = _related_logit((click, like, follow)[j % len(TASKS)], features @ rng.normal(0, 1, features.shape[1]),
                                   cfg.task_relation, rates[j])
            probs[name] = _sigmoid(logit)
            labels[name] = rng.random(n) < probs[name]

    order = np.argsort(t, kind="stable")
    ts = (1_700_000_000 + t * cfg.days * DAY).astype(np.int64)
    follow_observed = domain[order] == DOMAINS.index("live")
    table = pa.table({
        "user_id": user[order], "item_id": item[order], "author_id": item_author[item][order],
        "domain": pa.array(np.array(DOMAINS)[domain[order]].tolist(), pa.string()), "ts": ts[order],
        "click": labels["click"][order].astype(np.int8), "like": labels["like"][order].astype(np.int8),
        "follow": pa.array(labels["follow"][order].astype(np.int8), mask=~follow_observed),
        **{name: labels[name][order].astype(np.int8) for name in parents},
    }).replace_schema_metadata({"mmrec": json.dumps({"synthetic": True, "note": _NOTE})})
    with atomic_path(out / "behaviour.parquet") as tmp:
        pq.write_table(table, tmp, row_group_size=65536)
    truth = pa.table({f"p_{name}": p[order].astype(np.float32) for name, p in probs.items()})
    with atomic_path(out / "truth.parquet") as tmp:
        pq.write_table(truth.replace_schema_metadata({"mmrec": json.dumps({"synthetic": True, "note": _NOTE})}), tmp)
    _write_content(out / "emb" / "emb-items-000000.parquet", content.astype(np.float32))

    summary = {
        "synthetic": True, "note": _NOTE, "config": asdict(cfg), "rows": n, "domains": list(DOMAINS),
        "tasks": cfg.task_names, "domain_specific_task": "like", "task_parent": parents,
        "positive_rate": {k: float(v.mean()) for k, v in labels.items()},
        "follow_observed_rate": float(follow_observed.mean()),
        "behaviour": str(out / "behaviour.parquet"), "emb": str(out / "emb"), "config_file": str(out / "rank.yaml"),
    }
    write_json(out / "simulation.json", summary)
    with atomic_open(out / "rank.yaml") as f:
        f.write(RANK_YAML.replace("[click, like, follow]", f"[{', '.join(cfg.task_names)}]"))
    return summary


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def _related_logit(parent: np.ndarray, own: np.ndarray, relation: float, rate: float) -> np.ndarray:
    """``c + 1.5 * (r z(parent) + sqrt(1 - r^2) o)``, ``o`` the own effect made uncorrelated with the parent,
    ``c`` such that the mean probability is ``rate``."""
    zp = _standardise(parent)
    o = _standardise(own)
    o = _standardise(o - (o @ zp / len(zp)) * zp)
    core = 1.5 * (relation * zp + np.sqrt(1 - relation**2) * o)
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + core).mean() < rate else (lo, mid)
    return (lo + hi) / 2 + core


def _draw_items(rng: np.random.Generator, t: np.ndarray, user: np.ndarray, favourites: np.ndarray,
                item_topic: np.ndarray, release: np.ndarray, lifetime: float) -> np.ndarray:
    """One showable item per impression: half from the user's two favourite topics, half from any."""
    order = np.argsort(release)
    rel = release[order]
    item = np.empty(len(t), np.int64)
    for i, (when, u) in enumerate(zip(t, user)):
        lo, hi = np.searchsorted(rel, when - lifetime), np.searchsorted(rel, when, side="right")
        pool = order[lo:hi]
        if rng.random() < 0.5:
            liked = pool[np.isin(item_topic[pool], favourites[u])]
            pool = liked if len(liked) else pool
        item[i] = pool[rng.integers(0, len(pool))]
    return item


def _write_content(path: Path, content: np.ndarray) -> None:
    n, dim = content.shape
    info = {"synthetic": True, "note": _NOTE, "rows": n, "fused_dim": dim, "encoders": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_emb_file(path, [f"item-{i:06d}" for i in range(n)], {"fused": content}, {"fused": dim}, meta=info, model=info)


RANK_YAML = """\
# SYNTHETIC data from `mmrec rank simulate`. Make the codes first:
#   mmrec quantize --emb emb --out codes --levels 3 --codebook-size 16   (paths relative to this folder)
data:
  log: behaviour.parquet
  tasks: [click, like, follow]
  history: {length: 20, positive: click}
  test_fraction: 0.2
features:
  - {name: sid, kind: codes, path: codes/codes.parquet, levels: 3}
model:
  name: pepnet
  embedding_dim: 16
  tower: [64, 32]
  gate_hidden: 64
optim:
  lr: 0.003
  batch_size: 512
  epochs: 5
out: runs/pepnet
"""
