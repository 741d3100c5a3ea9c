"""``mmrec index``: the index jobs over files — build, add to, search and evaluate index folders, and
train the MISS tree's node scorer from a behaviour log.

Each job is a config dataclass (its fields' metadata is the CLI's help) and one function returning a
report: :func:`build` (:class:`BuildConfig`), :func:`add` (:class:`AddConfig`), :func:`search`
(:class:`SearchConfig`), :func:`evaluate` (:class:`EvalConfig`) and :func:`train_tree`
(:class:`TrainTreeConfig`). The Python functions they call take arrays too: :func:`build_index`,
:func:`add_to_index`, :func:`search_index`, :func:`evaluate_index`. The index classes and algorithms
(FAISS, the tree, exact search, tuning, the server) live in :mod:`mmrec.index`.

**Tree training** (:func:`train_tree`, ``mmrec index train-tree``), after ``mmrec index build --kind
tree``: the positives (``label`` > 0) of the behaviour log are read through :func:`mmrec.logs.iter_log`,
their ``item_id`` mapped to the tree's keys (``item_key``; events on items outside the tree are
skipped and counted) and ordered per user by ``order`` (file order when None); each user keeps the
``max_history`` most recent. A user's last ``holdout`` positives are held out (users with at least
``holdout + 2``); every other positive after the first is a training pair whose history is the
behaviours before it, read by the scorer through Co-GSU (the scorer's node-ID table) and MM-GSU (the
tree's item vectors). User vectors come from ``user_emb`` (an ``emb-*.parquet``-layout file keyed
``user_key``, e.g. ``mmrec cdr`` user vectors; users without one are dropped), else they are the mean of
the history's item vectors. The trained scorer is saved with the tree (``scorer.safetensors``, its
settings in ``index.json``), so a loaded tree's ``recommend`` uses it. The report holds recall@k of the
held-out positives by beam search, by exhaustive scoring of every item with the same scorer, the
overlap of the two (recall vs exact), and baselines: the untrained scorer, random items and (for
history-mean users) exact inner-product search of the user vector. [I] Items already in a user's
history are not filtered from the results; with ``loop.patience`` the same held-out recall drives early
stopping (there is no separate validation split), so the reported recall is then optimistic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.config import build_config
from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex
from mmrec.index.evaluate import evaluate as evaluate_source
from mmrec.index.exact import exact_knn
from mmrec.index.faiss_index import FaissConfig
from mmrec.index.kinds import load_index, parse_kind
from mmrec.index.tree import IndexTree, ScorerConfig, TreeConfig
from mmrec.io import atomic_path, output_folder, write_json
from mmrec.logs import iter_log, log_sources
from mmrec.store import ID_COLUMN_HELP, open_source, read_embeddings
from mmrec.threads import THREADS_HELP, announce_threads, use_threads
from mmrec.training import LoopConfig

# -- build ------------------------------------------------------------------------------------


@dataclass
class BuildConfig:
    """``mmrec index build``: an index folder over embeddings; ``faiss`` / ``tree`` by ``kind``."""

    emb: str = field(default="", metadata={"help": "embeddings: a folder (of emb-*.parquet, *.npy or *.parquet), a Parquet or .npy file, or a glob"})
    out: str = field(default="", metadata={"help": "output index folder"})
    kind: str = field(default="auto", metadata={"help": "auto, faiss:<factory> (e.g. faiss:IVF1024,Flat) or tree"})
    column: str = field(default="fused", metadata={"help": "vector column of Parquet input: fused, image, text, audio, embedding ...",
                                                   "aliases": ("--vector-column",)})
    id_column: str = field(default="key", metadata={"help": ID_COLUMN_HELP})
    faiss: FaissConfig = field(default_factory=FaissConfig)
    tree: TreeConfig = field(default_factory=TreeConfig)

    def __post_init__(self) -> None:
        parse_kind(self.kind)


def build_index(
    data: Any,
    out: str | Path | None,
    kind: str = BuildConfig.kind,
    *,
    column: str = BuildConfig.column,
    keys: Sequence[str] | None = None,
    progress: bool = True,
    **options: Any,
) -> BaseIndex:
    """Build an index over ``data`` (a folder of ``emb-*.parquet``, Parquet files, or an ``(n, d)``
    array with optional ``keys``) and write it to the folder ``out`` (skipped when None).

    ``options`` go to the kind's config: for FAISS ``max_memory="1G"``, ``max_query_ms=10``,
    ``target_recall=0.95``, ``k=10``, ``metric="ip"``, ``gpu=None`` …
    (:class:`~mmrec.index.faiss_index.FaissConfig`); for the tree ``branching=16`` …
    (:class:`~mmrec.index.tree.TreeConfig`).
    """
    cls, factory = parse_kind(kind)
    if factory is not None:
        options["factory"] = factory if factory != "auto" else options.get("factory", "auto")
    return cls.build(data, out, column=column, keys=keys, progress=progress, **options)


def build(config: BuildConfig | dict | str, *, progress: bool = True) -> dict[str, Any]:
    """Run a :class:`BuildConfig`; the report is the folder's ``index.json`` plus ``out``."""
    config = build_config(BuildConfig, config, "index build")
    if not config.emb or not config.out:
        raise UsageError("index build needs emb and out")
    cls, _ = parse_kind(config.kind)
    options = asdict(config.tree) if cls is IndexTree else {k: v for k, v in asdict(config.faiss).items() if k != "factory"}
    with output_folder(config.out, "index folder"):
        source = open_source(config.emb, column=config.column, id_column=config.id_column)
        index = build_index(source, config.out, config.kind, column=config.column, progress=progress, **options)
    return {**index.info, "out": config.out}


# -- add, search ------------------------------------------------------------------------------


@dataclass
class AddConfig:
    """``mmrec index add``: new embedding shards added to a saved FAISS index in place."""

    index: str = field(default="", metadata={"help": "index folder"})
    emb: str = field(default="", metadata={"help": "new embeddings: a folder, Parquet or .npy file, or a glob"})
    column: str | None = field(default=None, metadata={"help": "vector column (default: the index's)", "aliases": ("--vector-column",)})
    id_column: str = field(default="key", metadata={"help": ID_COLUMN_HELP})


def add_to_index(folder: str | Path, data: Any, *, column: str | None = None, id_column: str = AddConfig.id_column,
                 keys: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Add new embeddings (e.g. new ``emb-*.parquet`` shards) to a saved index and rewrite it; ``.npy``
    rows without metadata are named by their row numbers after the index's last."""
    index = load_index(folder, mmap=False)
    if keys is None and not isinstance(data, np.ndarray):
        data = open_source(data, column=column or index.info["column"], id_column=id_column, key_offset=index.n, dim=index.dim)
    event = index.add(data, column=column, keys=keys, progress=progress)
    index.save(folder)
    return {**event, "n": index.n}


def add(config: AddConfig | dict | str, *, progress: bool = True) -> dict[str, Any]:
    """Run an :class:`AddConfig`: ``{rows, source, add_s, n}``."""
    config = build_config(AddConfig, config, "index add")
    return add_to_index(config.index, config.emb, column=config.column, id_column=config.id_column, progress=progress)


@dataclass
class SearchConfig:
    """``mmrec index search``: neighbours of indexed keys or of query vectors (a ``.npy`` file)."""

    index: str = field(default="", metadata={"help": "index folder"})
    keys: tuple[str, ...] = field(default=(), metadata={"help": "keys of indexed items"})
    vectors: str | None = field(default=None, metadata={"help": ".npy file of (q, dim) float query vectors"})
    k: int = field(default=10, metadata={"help": "neighbours per query"})

    def __post_init__(self) -> None:
        if bool(self.keys) == (self.vectors is not None):
            raise UsageError("give keys (--key, repeatable) or vectors (--vectors FILE.npy), one of the two")
        if self.k < 1:
            raise UsageError(f"k must be >= 1, got {self.k}")


def search_index(
    index: BaseIndex | str | Path, queries: np.ndarray | None = None, *, keys: Sequence[str] | None = None, k: int = SearchConfig.k
) -> list[list[dict[str, Any]]]:
    """Top-``k`` neighbours, per query, as ``[{"key", "row", "score"}, ...]``: by ``queries``
    vectors ``(q, d)`` or by the ``keys`` of indexed items (exactly one of the two). ``k`` above the
    index size is cut to it (a query has no more neighbours than that; FAISS would allocate ``q * k``)."""
    if (queries is None) == (keys is None):
        raise UsageError("search by vectors or by keys: give exactly one of them")
    if not isinstance(index, BaseIndex):
        index = load_index(index)
    return index.neighbours(queries, keys=keys, k=min(k, index.n))


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    try:
        return np.load(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {what} {path}: {err}") from None


def search(config: SearchConfig | dict | str) -> dict[str, Any]:
    """Run a :class:`SearchConfig`: ``{"results": hits per query, "k": k used, "k_asked", "n": index
    size, "capped": whether k was cut to the index size}`` (the server's answer, plus the cap)."""
    config = build_config(SearchConfig, config, "index search")
    vectors = None if config.vectors is None else _load_npy(config.vectors, "query vectors")
    index = load_index(config.index)
    k = min(config.k, index.n)
    results = search_index(index, vectors, keys=list(config.keys) if config.keys else None, k=k)
    return {"results": results, "k": k, "k_asked": config.k, "n": index.n, "capped": k < config.k}


# -- evaluate ---------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """``mmrec index eval``: recall@ks vs exact search, QPS, and a recall-vs-QPS PNG."""

    index: str = field(default="", metadata={"help": "index folder"})
    emb: str | None = field(default=None, metadata={"help": "embeddings the index holds (default: the files recorded in index.json)"})
    queries: str | None = field(default=None, metadata={"help": ".npy of query vectors (default: sampled index rows, leave-one-out)"})
    n_queries: int = field(default=1000, metadata={"help": "sampled queries"})
    ks: tuple[int, ...] = field(default=(1, 10, 100), metadata={"help": "the k of each recall@k"})
    seed: int = field(default=0, metadata={"help": "seed of the sampled queries"})
    png: str | None = field(default=None, metadata={"help": "curve image (default INDEX/recall-qps.png)"})
    out_json: str | None = field(default=None, metadata={"help": "also write the report to this JSON file"})

    def __post_init__(self) -> None:
        if self.n_queries < 1 or not self.ks or min(self.ks) < 1:
            raise UsageError(f"n_queries and every k must be >= 1, got {self.n_queries}, {self.ks}")


def _recorded_source(index: BaseIndex, data: Any) -> Any:
    """``data`` (default: the embeddings the index was built from and added to, as its ``index.json``
    records them) opened with the index's column, id column and dim."""
    parts = [index.info["source"], *(add["source"] for add in index.info.get("adds", []))]
    if data is None:
        if any(p["type"] == "array" for p in parts):
            raise UsageError("this index was built (or added to) from in-memory arrays: pass the embeddings as data=")
        data = [f for p in parts for f in p["files"]]
    return open_source(data, column=index.info["column"], id_column=parts[0].get("id_column", "key"), dim=index.dim)


def curve_figure(points: list[dict[str, Any]], *, title: str, param: str | None = None,
                 chosen: dict[str, Any] | None = None, target: float | None = None, k: int = 10) -> Any:
    """Recall@k vs QPS (log scale) as a matplotlib figure (Agg backend).

    ``points``: ``{"value", "recall", "qps"}`` per value of the swept search knob ``param`` (``nprobe``,
    ``efSearch``, ``beam``), each labelled ``param=value``; ``chosen``, the point of the index's tuned
    value (measured, it need not be on the sweep), is starred and ``target`` drawn as a dashed line. An index without a knob (Flat) is one point, no curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    qps, recall = [p["qps"] for p in points], [p["recall"] for p in points]
    if param is None:
        ax.plot(qps, recall, marker="o", ls="none", color="tab:blue")
        ax.annotate(f"exact search, no knob to sweep: {qps[0]:.0f} QPS", (qps[0], recall[0]), textcoords="offset points",
                    xytext=(6, -12), fontsize=9)
    else:
        ax.plot(qps, recall, marker="o", color="tab:blue", label=f"{param} swept")
        for p in points:
            ax.annotate(f"{param}={p['value']}", (p["qps"], p["recall"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if chosen is not None and chosen["value"] is not None:
            ax.plot([chosen["qps"]], [chosen["recall"]], marker="*", markersize=16, ls="none", color="tab:red",
                    label=f"chosen: {param}={chosen['value']} (recall {chosen['recall']:.3f}, {chosen['qps']:.0f} QPS)")
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target recall@{k} = {target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (one batch, log scale)")
    ax.set_ylabel(f"recall@{k} vs exact search")
    ax.set_ylim(min(0.0, min(recall)) if min(recall) < 0.5 else min(recall) - 0.1, 1.03)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="lower left", fontsize=9)
    fig.tight_layout()
    return fig


def plot_curve(points: list[dict[str, Any]], path: str | Path, **options: Any) -> Path:
    """Write :func:`curve_figure` (``options``: its keywords) as a PNG, atomically."""
    import matplotlib.pyplot as plt

    fig = curve_figure(points, **options)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def evaluate_index(
    index: BaseIndex | str | Path,
    data: Any = None,
    *,
    queries: np.ndarray | None = None,
    n_queries: int = EvalConfig.n_queries,
    ks: tuple[int, ...] = EvalConfig.ks,
    seed: int = EvalConfig.seed,
    png: str | Path | None = None,
    out_json: str | Path | None = None,
) -> dict[str, Any]:
    """Recall@ks vs exact, QPS and latency of an index (object or folder) over ``data`` (default: the
    embeddings recorded in its ``index.json``); the curve to ``png`` (default ``FOLDER/recall-qps.png``
    for a folder)."""
    folder = None if isinstance(index, BaseIndex) else Path(index)
    if folder is not None:
        index = load_index(folder)
    source = _recorded_source(index, data)
    report = evaluate_source(index, source, queries=queries, n_queries=n_queries, ks=ks, seed=seed)
    k = 10 if 10 in ks else ks[0]
    if png is not None or folder is not None:
        png = Path(png) if png is not None else folder / "recall-qps.png"
        points = report.get("curve") or [{"value": None, "recall": report["recall"][str(k)], "qps": report["qps"]}]
        param = index.param_name if report.get("curve") else None
        title = f"{index.info.get('factory') or index.kind} index of {index.n} vectors (dim {index.dim}): recall@{k} vs speed"
        target = index.info.get("tuning", {}).get("target_recall") if param else None
        chosen = {"value": report["search_params"].get(param), "recall": report["recall"][str(k)], "qps": report["qps"]}
        report["png"] = str(plot_curve(points, png, title=title, param=param, chosen=chosen if param else None,
                                       target=target, k=k))
    if out_json is not None:
        write_json(out_json, report)
    return report


def evaluate(config: EvalConfig | dict | str) -> dict[str, Any]:
    """Run an :class:`EvalConfig` over an index folder."""
    config = build_config(EvalConfig, config, "index eval")
    queries = None if config.queries is None else _load_npy(config.queries, "query vectors")
    return evaluate_index(config.index, config.emb, queries=queries, n_queries=config.n_queries, ks=config.ks,
                          seed=config.seed, png=config.png, out_json=config.out_json)


# -- MISS tree scorer -------------------------------------------------------------------------


@dataclass
class TrainTreeConfig:
    """``mmrec index train-tree``: the MISS tree's node scorer trained from a behaviour log."""

    index: str = field(default="", metadata={"help": "tree index folder (mmrec index build --kind tree)"})
    log: str = field(default="", metadata={"help": "behaviour log (Parquet: user_id, item_id, the label, ts)"})
    user_emb: str | None = field(default=None, metadata={
        "help": "user vectors keyed by user (emb-*.parquet layout; default: mean of the history's item vectors)"})
    user_column: str = field(default="fused", metadata={"help": "vector column of --user-emb"})
    user_key: str = field(default="user-{}", metadata={"help": "key of a log user_id in --user-emb (str.format pattern)"})
    item_key: str = field(default="item-{:06d}", metadata={"help": "tree key of an integer log item_id (str.format pattern; string ids are keys)"})
    label: str = field(default="click", metadata={"help": "label column whose positives (> 0) are the behaviours"})
    order: str | None = field(default="ts", metadata={"help": "column ordering each user's behaviours (none: file order)"})
    max_history: int = field(default=200, metadata={"help": "most recent positives kept per user"})
    holdout: int = field(default=1, metadata={"help": "last positives per user held out for the recall report"})
    k: int = field(default=10, metadata={"help": "k of the reported recall@k"})
    beam: int = field(default=16, metadata={"help": "beam width of the retrieval"})
    eval_users: int = field(default=500, metadata={"help": "most users in the recall report (a seeded sample)"})
    threads: int | None = field(default=None, metadata={"help": THREADS_HELP})
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self) -> None:
        for name in ("max_history", "k", "beam", "eval_users"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.holdout < 0 or self.holdout >= self.max_history:
            raise UsageError(f"holdout must be in [0, max_history), got {self.holdout}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


def _item_rows(items: np.ndarray, row_of: dict[str, int], pattern: str) -> np.ndarray:
    def key(item: Any) -> str:
        return item if isinstance(item, str) else pattern.format(int(item))

    try:
        return np.fromiter((row_of.get(key(i), -1) for i in items), dtype=np.int64, count=len(items))
    except (ValueError, IndexError, KeyError) as err:
        raise UsageError(f"item_key {pattern!r} cannot format item id {items[0]!r}: {err}") from None


def _read_positives(config: TrainTreeConfig, tree: IndexTree) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(user ids (E,), tree rows (E,))`` of the positives, each user's in time order; and counts."""
    row_of = {key: row for row, key in enumerate(tree.keys.to_pylist())}
    columns = ["user_id", "item_id", config.label] + ([config.order] if config.order else [])
    users, rows, times = [], [], []
    stats = {"events": 0, "positives": 0, "unknown_items": 0}
    for batch in iter_log(config.log, columns, kinds={config.label: "label"}, folder_file="behaviour.parquet"):
        positive = batch[config.label] > 0
        stats["events"] += len(positive)
        stats["positives"] += int(positive.sum())
        mapped = _item_rows(batch["item_id"][positive], row_of, config.item_key)
        known = mapped >= 0
        stats["unknown_items"] += int((~known).sum())
        users.append(batch["user_id"][positive][known])
        rows.append(mapped[known])
        if config.order:
            times.append(np.asarray(batch[config.order][positive][known], dtype=np.float64))
    if not users or not sum(map(len, rows)):
        raise UsageError(f"{config.log}: no positive {config.label!r} events on items of the tree {config.index}")
    users, rows = np.concatenate(users), np.concatenate(rows)
    order = np.lexsort((np.concatenate(times), users)) if config.order else np.argsort(users, kind="stable")
    return users[order], rows[order], stats


def _sequences(users: np.ndarray, rows: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user ids (U,), sequences (U, M) padded with -1, lengths (U,))`` of the last ``keep`` per user."""
    ids, start, counts = np.unique(users, return_index=True, return_counts=True)
    lengths = np.minimum(counts, keep)
    seq = np.full((len(ids), int(lengths.max())), -1, dtype=np.int64)
    first = start + counts - lengths  # the most recent ``keep``
    pos = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    seq[np.repeat(np.arange(len(ids)), lengths), pos] = rows[np.repeat(first, lengths) + pos]
    return ids, seq, lengths


def _recall(found: np.ndarray, targets: list[set[int]]) -> float:
    return float(np.mean([len(t.intersection(f.tolist())) / len(t) for f, t in zip(found, targets)]))


def train_tree(config: TrainTreeConfig | dict | str) -> dict[str, Any]:
    """Run a :class:`TrainTreeConfig`: train, save the scorer with the tree, report recall@k."""
    start = time.perf_counter()
    config = build_config(TrainTreeConfig, config, "index train-tree")
    if not config.index or not config.log:
        raise UsageError("index train-tree needs index and log")
    with use_threads(config.threads, what="index train-tree threads") as threads:
        return _train_tree(config, start, threads)


def _train_tree(config: TrainTreeConfig, start: float, threads: int) -> dict[str, Any]:
    log_sources(config.log, folder_file="behaviour.parquet")
    tree = load_index(config.index)
    if not isinstance(tree, IndexTree):
        raise UsageError(f"{config.index} holds a {tree.kind!r} index; the scorer is the MISS tree's (--kind tree)")
    events, event_rows, stats = _read_positives(config, tree)
    user_ids, seq, lengths = _sequences(events, event_rows, config.max_history)

    users = None
    if config.user_emb is not None:
        keys, vectors = read_embeddings(config.user_emb, column=config.user_column)
        where = {key: i for i, key in enumerate(keys)}
        found = np.array([where.get(config.user_key.format(u), -1) for u in user_ids.tolist()], dtype=np.int64)
        stats["users_without_vector"] = int((found < 0).sum())
        if (found < 0).all():
            raise UsageError(f"no user of {config.log} has a vector in {config.user_emb} (keys like {config.user_key.format(user_ids[0])!r})")
        user_ids, seq, lengths, users = user_ids[found >= 0], seq[found >= 0], lengths[found >= 0], vectors[found[found >= 0]]

    held = np.where(lengths >= config.holdout + 2, config.holdout, 0) if config.holdout else np.zeros_like(lengths)
    train_len = lengths - held
    per_user = np.maximum(train_len - 1, 0)  # every training positive after the user's first is a pair
    pair_user = np.repeat(np.arange(len(user_ids)), per_user)
    pair_pos = np.arange(len(pair_user)) - np.repeat(np.cumsum(per_user) - per_user, per_user) + 1  # (P,) its position
    if len(pair_user) == 0:
        raise UsageError(f"{config.log}: no user has two positives on the tree's items to train on")
    history = np.where(np.arange(seq.shape[1]) < train_len[:, None], seq, -1)  # held-out positives never enter a history

    rng = np.random.default_rng(config.scorer.seed)
    eligible = np.flatnonzero(held > 0)
    chosen = np.sort(rng.choice(eligible, size=min(config.eval_users, len(eligible)), replace=False)) if len(eligible) else eligible
    targets = [set(seq[u, train_len[u]:lengths[u]].tolist()) for u in chosen]
    eval_users = None if users is None else users[chosen]

    def recall(beam: int) -> tuple[float, np.ndarray]:
        rows = tree.recommend(eval_users, config.k, beam=beam, history_rows=history[chosen])[1]
        return _recall(rows, targets), rows

    report: dict[str, Any] = {"index": config.index, "log": config.log, **stats, "users": len(user_ids), "pairs": len(pair_user),
                              "user_vectors": "given" if users is not None else "history_mean", "eval_users": len(chosen),
                              "k": config.k, "beam": config.beam}
    if config.loop.progress:  # the inputs are read: training starts
        announce_threads(threads, config.threads)
    evaluate = None
    if len(chosen):
        tree.init_scorer(tree.dim if users is None else users.shape[1], config.scorer, history=True)
        untrained = recall(config.beam)[0]
        if config.loop.patience is not None:  # early stopping on the held-out recall

            def evaluate(model: Any) -> float:
                return recall(config.beam)[0]
    result = tree.fit_scorer(users, pair_user, seq[pair_user, pair_pos], history_rows=history, history_len=pair_pos,
                             config=config.scorer, loop=config.loop, evaluate=evaluate)
    report["fit"] = {k: v for k, v in result.as_dict().items() if k != "best_metrics"}
    if len(chosen):
        trained, beam_rows = recall(config.beam)
        widest = max(tree.node_counts()[:-1]) if tree.depth > 1 else 1
        exhaustive, all_rows = recall(widest)  # a beam as wide as every level scores every item
        recalls = {"tree": trained, "exhaustive": exhaustive, "untrained": untrained, "random": min(1.0, config.k / tree.n)}
        if users is None:
            vectors, _, mask = tree.history_tensors(history[chosen])
            queries = np.ascontiguousarray(tree.mean_user(vectors, mask).numpy())
            knn = exact_knn([tree.vectors(np.arange(tree.n))], queries, config.k, metric=tree.metric)[1]
            recalls["exact_knn"] = _recall(knn, targets)
        report["recall"] = {name: round(v, 4) for name, v in recalls.items()}
        report["recall_vs_exact"] = round(_recall(beam_rows, [set(r.tolist()) for r in all_rows]), 4)
        tree.info["scorer"]["report"] = {"recall": report["recall"], "recall_vs_exact": report["recall_vs_exact"], "k": config.k, "beam": config.beam}
    tree.save(config.index)
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


__all__ = [
    "AddConfig", "BuildConfig", "EvalConfig", "SearchConfig", "TrainTreeConfig", "add", "add_to_index", "build",
    "build_index", "curve_figure", "evaluate", "evaluate_index", "plot_curve", "search", "search_index", "train_tree",
]
