"""``mmrec retrieve``: train sequential retrievers, evaluate them leave-one-out, serve their queries (jobs).

- :func:`train` (:class:`TrainJob`, ``mmrec retrieve train``): over a data folder of ``mmrec seq
  import``, each user's last item is the validation target and the items before it the training part.
  ``model`` names a family of :data:`~mmrec.retrieval.registry.RETRIEVERS`, which trains it:
  ``kuaiformer`` (:class:`~mmrec.retrieval.kuaiformer.KuaiFormer`: k interest queries, in-batch softmax
  with logQ correction) and ``sasrec`` (:class:`~mmrec.retrieval.kuaiformer.SASRec`: the same backbone, ids
  and optionally content / codes added to the id (below), one interest; full softmax, or ``loss="inbatch"``)
  read each user's sequence once per epoch with a training sample at every position
  (:mod:`mmrec.retrieval.sequence_train`; a batch holds about ``batch_size`` samples of users of similar
  length). Both train through
  :func:`mmrec.training.fit` with early stopping on validation NDCG@10 -- so the reported validation
  figures are those of the selected epoch, optimistic by that selection; ``pop`` and ``cooc``
  (:mod:`mmrec.retrieval.baselines`) are counted. ``emb`` (an ``emb-*.parquet`` folder keyed
  ``item-NNNNNN``) and ``codes`` (``codes.parquet`` of ``mmrec quantize``, or LC-Rec's ``.index.json``) add content and code
  embeddings to the item token; items missing from them get zeros / a "no code" row.
  The run folder is :mod:`mmrec.runs`' (kind ``retrieve``): ``model.safetensors``, ``config.json`` (``model``:
  the family's config, with ``max_len``; ``job``: the options, ``model`` naming the family, and ``data``), ``vocab.json``
  and ``metrics.json``; :func:`load_run` rebuilds the scorer through the family.
- :func:`evaluate_run` (``mmrec retrieve evaluate``): validation as above, or ``test``: a file of
  ``user<TAB>item`` lines in raw ids, each item predicted from the user's whole sequence; unknown users
  or items are skipped and counted. Both report ``tail``: the metrics over targets with <= 5
  training interactions (training = the histories for validation, the whole sequences for test).
- :func:`export_run` (``mmrec retrieve export``, :class:`ExportJob`): a KuaiFormer / SASRec run's item
  vectors (:meth:`KuaiFormer.item_vectors`, the vectors users are scored against) as an ``emb-*.parquet``
  folder keyed ``item-NNNNNN`` (:func:`mmrec.store.write_embeddings`), so that ``mmrec quantize`` makes
  collaborative semantic IDs from them. Every item is written; ``untrained_items`` counts those that
  never occur in the training part (their vectors are the initial ones, plus any content / code terms).
- :func:`serve_run` (``mmrec retrieve serve``): the validation users' interest vectors searched in a
  FAISS index (``mmrec.pipelines.index.build_index``: ``exact`` = ``faiss:Flat``, ``auto`` or any
  factory) over the run's item vectors; a user with k interests is k queries, merged by max score.
  ``tree``: the MISS tree (:class:`mmrec.index.IndexTree`) over the same item vectors, beam search.
  Reports recall@k against exact search over the same vectors, items scored (distance computations)
  per query and the validation Recall@10 through the index. A run with the transition term is served in
  two stages (:func:`~mmrec.retrieval.transition.hybrid_top`): the index's top-k over the inner product
  ∪ the items the user's last item led to in training, rescored with the hybrid score; recall@k is then
  against brute-force hybrid scoring of every item (``index_recall@k_vs_exact``: the first stage's).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrec import runs
from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import InputError, UsageError
from mmrec.io import finite_json
from mmrec.retrieval.data import ITEM_KEY, ITEMS_FILE, Sequences, read_sequences
from mmrec.retrieval.evaluate import evaluate
from mmrec.retrieval.generative import GenerativeConfig
from mmrec.retrieval.kuaiformer import LOSSES, KuaiFormer, RetrieverConfig
from mmrec.retrieval.registry import RETRIEVERS
from mmrec.retrieval.serving import exact_top, interest_vectors, merge_interests, mips_lift, recall_vs, tree_search
from mmrec.retrieval.transition import hybrid_top
from mmrec.training import LoopConfig, distributed, on_rank0

MODELS = tuple(RETRIEVERS.names())


@dataclass
class TrainJob:
    """Options of ``mmrec retrieve train`` (the model's sizes are :class:`RetrieverConfig`)."""

    model: str = field(default="kuaiformer", metadata={"help": "kuaiformer, sasrec, pop, cooc or generative (needs codes)", "choices": MODELS})
    emb: str | None = field(default=None, metadata={"help": "content embeddings folder (emb-*.parquet keyed item-NNNNNN)"})
    emb_column: str = field(default="fused", metadata={"help": "vector column of emb"})
    codes: str | None = field(default=None, metadata={"help": "codes.parquet of mmrec quantize or an LC-Rec <DS>.index.json (keyed item-NNNNNN)"})
    loss: str | None = field(default=None, metadata={"help": "inbatch (logQ) or full softmax; none: full up to 100k items, inbatch above (both models)",
                                                     "choices": LOSSES})
    logq: bool = field(default=True, metadata={"help": "logQ correction of the in-batch softmax"})
    uniform_negatives: int = field(default=0, metadata={"help": "uniform negatives added to the in-batch candidates"})
    temperature: float = field(default=1.0, metadata={"help": "logits are divided by this"})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "kuaiformer / sasrec: share of the softmax target spread over the other candidates (KuaiFormer's smoothing; 0 = off)"})
    batch_size: int = field(default=256, metadata={"help": "training samples (positions of users' sequences) per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed of the weights and the batch order"})
    val_users: int = field(default=0, metadata={"help": "generative: validate each epoch on a fixed seeded sample of this many validation users "
                                                          "(early stopping reads it); the reported figures are on all users. 0: all"})
    model_config: RetrieverConfig = field(default_factory=RetrieverConfig)
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)  # sizes of --model generative
    loop: LoopConfig = field(default_factory=LoopConfig)  # evaluated every epoch; best epoch restored; stops early with patience

    def __post_init__(self) -> None:
        RETRIEVERS.get(self.model)  # an unknown name lists the known ones
        if self.loss not in (None, *LOSSES):
            raise UsageError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.batch_size < 2 or self.uniform_negatives < 0 or self.temperature <= 0 or self.val_users < 0:
            raise UsageError("batch_size must be >= 2, uniform_negatives >= 0, temperature > 0 and val_users >= 0")
        if not 0 <= self.label_smoothing < 1 or (self.label_smoothing and self.model not in ("kuaiformer", "sasrec")):
            raise UsageError(f"label_smoothing must be in [0, 1) and is for kuaiformer and sasrec, got {self.label_smoothing} with {self.model}")
        if self.val_users and self.model != "generative":
            raise UsageError("val_users samples the generative model's beam-search validation; the other models validate on all users")
        if self.model == "generative" and (self.emb or not self.codes):
            raise UsageError("generative reads code tuples only: give codes (codes.parquet of mmrec quantize), no emb")
        if self.model == "generative" and build_config(RetrieverConfig, self.model_config, "retrieve.model_config") != RetrieverConfig():
            raise UsageError("--max-len, --dim, --layers ... size kuaiformer / sasrec; generative's sizes are --gen-* (e.g. --gen-max-len)")


def _aligned(keys: list[str], values: np.ndarray, n_items: int, fill: float, what: str) -> tuple[np.ndarray, int]:
    row = {ITEM_KEY.format(i): i for i in range(n_items)}
    out = np.full((n_items, values.shape[1]), fill, dtype=values.dtype)
    found = [(row[k], j) for j, k in enumerate(keys) if k in row]
    if not found:
        raise InputError(f"no key of the {what} matches this data's items ({ITEM_KEY.format(0)} ...)")
    items, rows = map(np.array, zip(*found))
    out[items] = values[rows]
    return out, len(found)


def _item_features(job: TrainJob, n_items: int) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """The codes and content of ``job`` aligned to the data's items, each read only when the family reads it."""
    codes = content = None
    info: dict[str, Any] = {}
    reads = RETRIEVERS.get(job.model).features
    if job.codes and "codes" in reads:
        from mmrec.quantization.files import codebook_sizes, load_codes

        keys, raw, meta = load_codes(job.codes)
        codes, info["items_with_codes"] = _aligned(keys, raw, n_items, -1, f"codes {job.codes}")
        info["codebook_sizes"] = codebook_sizes(raw, meta, job.codes)
    if job.emb and "emb" in reads:
        from mmrec.store import read_embeddings

        keys, vectors = read_embeddings(job.emb, job.emb_column)
        content, info["items_with_content"] = _aligned(keys, vectors, n_items, 0.0, f"embeddings {job.emb}")
    return codes, content, info


def train(data: str | Path, out: str | Path, config: TrainJob | dict | str | None = None, *, progress: bool = True,
          **overrides: Any) -> dict[str, Any]:
    """Train ``config.model`` on the data folder ``data``; write the run folder ``out``; returns ``metrics.json``.

    Under ``torchrun`` the model trains with DDP (:func:`mmrec.training.fit`): ``batch_size`` is the global
    batch, each rank takes every other user of it (the in-batch softmax's candidates are the rank's own),
    every rank counts the transition term and evaluates alike; rank 0 writes the run folder."""
    job = replace_config(build_config(TrainJob, config, "retrieve train"), "retrieve train", **overrides)
    with distributed(resolve_device(job.loop.device)):
        return _train(data, out, job, progress)


def _train(data: str | Path, out: str | Path, job: TrainJob, progress: bool) -> dict[str, Any]:
    seqs, manifest = read_sequences(data)
    history, targets = seqs.split_last()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(job.seed)
    report: dict[str, Any] = {"model": job.model, "data": str(Path(data).resolve()), "dataset": manifest.get("dataset"),
                              "split": "validation", "training_interactions": int(len(history.items))}
    codes, content, feature_info = _item_features(job, seqs.n_items)
    trained = RETRIEVERS.get(job.model).train(job, history, targets, codes=codes, content=content,
                                               sizes=feature_info.get("codebook_sizes"), progress=progress)
    report["validation"], report["train"] = trained.validation, {**trained.train, **feature_info}
    report["seconds"] = round(time.perf_counter() - start, 3)
    return on_rank0(save_run, out, trained.config, {**asdict(job), "data": report["data"]}, trained.model.state_dict(), read_vocab(Path(data)), report)


def save_run(out: str | Path, model_config: dict[str, Any], job_config: dict[str, Any], tensors: dict[str, torch.Tensor],
             vocab: dict[str, list[str]], report: dict[str, Any]) -> dict[str, Any]:
    """Write a retriever's run folder (:func:`mmrec.runs.save_run`, kind ``retrieve``) that :func:`load_run`
    reads: ``job_config["model"]`` names the family, ``job_config["data"]`` the data folder; returns the report as written."""
    report = finite_json(report)
    runs.save_run(out, finite_json(model_config), finite_json(job_config), tensors, vocab, report, kind="retrieve")
    return report


def read_vocab(data: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    return {"items": pq.read_table(data / ITEMS_FILE, columns=["raw_item"]).column(0).to_pylist(),
            "users": pq.read_table(data / "users.parquet", columns=["raw_user"]).column(0).to_pylist()}


def load_run(run: str | Path, *, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """``(scorer, config.json)`` of a run folder (:func:`mmrec.runs.load_run`, kind ``retrieve``): the model of
    its family (``config["job"]["model"]``, :data:`~mmrec.retrieval.registry.RETRIEVERS`) in eval mode on
    ``device``. ``config["model"]`` is the family's model config (with ``max_len``), ``config["job"]`` the job's
    options and ``data``."""
    config, tensors, _, _ = runs.load_run(run, kind="retrieve")
    return RETRIEVERS.get(config["job"]["model"]).load(config["model"], tensors, device), config


def _read_test(path: Path, data: Path) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    vocab = read_vocab(data)
    user_of = {u: i for i, u in enumerate(vocab["users"])}
    item_of = {r: i for i, r in enumerate(vocab["items"])}
    if not path.is_file():
        raise UsageError(f"test file not found: {path}")
    users, items, skipped = [], [], {"unknown_user": 0, "unknown_item": 0}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2:
            raise InputError(f"{path}: line {n + 1} is not user<TAB>item: {line[:80]!r}")
        if parts[0] not in user_of:
            skipped["unknown_user"] += 1
        elif parts[1] not in item_of:
            skipped["unknown_item"] += 1
        else:
            users.append(user_of[parts[0]])
            items.append(item_of[parts[1]])
    if not users:
        raise InputError(f"{path}: no line names a known user and item ({skipped})")
    return np.array(users), np.array(items), skipped


@dataclass
class EvaluateJob:
    """Options of ``mmrec retrieve evaluate`` (:func:`evaluate_run`)."""

    run: str = field(metadata={"help": "run folder of `mmrec retrieve train`"})
    test: str | None = field(default=None, metadata={"help": "user<TAB>item file in the source's raw ids; none = validation"})
    data: str | None = field(default=None, metadata={"help": "data folder; none = the run's"})
    exclude_history: bool = field(default=False, metadata={"help": "drop the user's history items from the ranking"})


@dataclass
class ServeJob:
    """Options of ``mmrec retrieve serve`` (:func:`serve_run`)."""

    kind: str = field(default="auto", metadata={
        "help": "exact, auto, tree (the MISS tree, beam search) or a FAISS factory (e.g. IVF64,Flat)"})
    k: int = field(default=100, metadata={"help": "items retrieved per user"})
    max_users: int | None = field(default=2000, metadata={"help": "validation users searched; none = all",
                                                         "aliases": ("--users",)})
    beam: int | None = field(default=None, metadata={
        "help": "tree beam; none = the smallest reaching --target-recall on other validation users"})
    upper_beam: int | None = field(default=None, metadata={
        "help": "tree beam above the last inner level (none = --beam): a smaller one scores fewer inner nodes"})
    branching: int = field(default=32, metadata={"help": "tree children per node"})
    balanced: bool = field(default=False, metadata={
        "help": "tree: equal-size splits (balanced k-means); off: plain k-means, more exact neighbours per item scored"})
    target_recall: float = field(default=0.9, metadata={"help": "recall@k vs exact the tree beam is chosen for"})
    joint: bool = field(default=False, metadata={"help": "tree: one beam per user, nodes scored by the best interest"})
    mips: bool = field(default=True, metadata={
        "help": "tree: build it over the items lifted to one norm (Bachrach et al. 2014), so its clusters follow inner "
                "products (the --out tree then holds the lifted vectors, one dimension more)"})
    out: str | None = field(default=None, metadata={"help": "write the index folder here"})

    def __post_init__(self) -> None:
        if self.k < 1 or self.branching < 2 or any(b is not None and b < 1 for b in (self.beam, self.upper_beam)):
            raise UsageError(f"need k >= 1, branching >= 2 and beams >= 1; got k={self.k}, branching={self.branching}, "
                             f"beam={self.beam}, upper_beam={self.upper_beam}")
        if not 0 < self.target_recall <= 1:
            raise UsageError(f"target_recall must be in (0, 1], got {self.target_recall}")


def evaluate_run(run: str | Path, *, test: str | Path | None = None, data: str | Path | None = None,
                 exclude_history: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Leave-one-out metrics of a run: validation, or the ``test`` file predicted from whole sequences."""
    scorer, config = load_run(run, device=device)
    data = Path(data or config["job"]["data"])
    seqs, _ = read_sequences(data)
    report: dict[str, Any] = {"run": str(run), "model": config["job"]["model"]}
    if test is None:
        history, targets = seqs.split_last()
        report["split"] = "validation"
    else:
        users, targets, skipped = _read_test(Path(test), data)
        history = Sequences.from_lists([seqs[u] for u in users], seqs.n_items)
        report.update(split="test", skipped=skipped)
    train_counts = (history if test is None else seqs).item_counts()
    if report["model"] == "generative":
        from mmrec.retrieval.generative_beam import evaluate_generative

        if exclude_history:
            raise UsageError("exclude_history: beam search ranks code tuples, not all items; not supported for generative runs")
        return {**report, **evaluate_generative(scorer, history, targets, max_len=config["model"]["max_len"], train_counts=train_counts)}
    return {**report, **evaluate(scorer.score, history, targets, max_len=config["model"]["max_len"], exclude_history=exclude_history,
                                 train_counts=train_counts)}


@dataclass
class ExportJob:
    """Options of ``mmrec retrieve export``."""

    column: str = field(default="fused", metadata={"help": "vector column written (fused: what mmrec quantize reads by default)"})
    shard_size: int = field(default=10000, metadata={"help": "items per emb-*.parquet file"})

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UsageError(f"shard_size must be >= 1, got {self.shard_size}")


def export_run(run: str | Path, out: str | Path, config: ExportJob | dict | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the item vectors ``(n_items, D)`` of run ``run`` to the embeddings folder ``out``; returns its manifest."""
    from mmrec.store import write_embeddings

    job = replace_config(build_config(ExportJob, config, "retrieve export"), "retrieve export", **overrides)
    model, config_json = load_run(run)
    if not isinstance(model, KuaiFormer):
        raise UsageError(f"{config_json['job']['model']} has no item vectors to export; use a kuaiformer or sasrec run")
    with torch.no_grad():
        vectors = model.item_vectors().numpy().astype(np.float32)  # (n_items, D)
    keys = [ITEM_KEY.format(i) for i in range(len(vectors))]
    shards = {f"{i // job.shard_size:06d}": keys[i : i + job.shard_size] for i in range(0, len(keys), job.shard_size)}
    history, _ = read_sequences(config_json["job"]["data"])[0].split_last()
    info = {"model": f"retrieve:{config_json['job']['model']}", "run": str(Path(run).resolve()), "dim": int(vectors.shape[1]),
            "items": len(keys), "untrained_items": int((history.item_counts() == 0).sum())}
    return write_embeddings(out, shards, dict(zip(keys, vectors)), job.column, info=info)


def serve_run(run: str | Path, config: ServeJob | dict | None = None, *, progress: bool = False,
              **overrides: Any) -> dict[str, Any]:
    """Search the validation users' interests through an index of ``kind`` over the run's item vectors
    (the options are :class:`ServeJob`'s, as a config or keywords).

    ``kind`` ``tree``: the MISS tree (:class:`mmrec.index.IndexTree`, ``branching`` children per node)
    searched by beam search; ``beam`` None picks the smallest beam (doubling, then bisection to within
    1/16) whose recall@k against exact search reaches ``target_recall`` on up to 500 *other* validation users (the users
    reported are not the ones the beam was chosen on); the sweep is in the report under ``beams``.
    Items scored per query counts every tree node scored (inner nodes and items). ``joint``: one beam
    search per user instead of one per interest, a node scored by its best interest (``max_k``, as
    items are), so the user's interests share the beam; its "query" is the user, and every node it
    scores costs ``k`` dot products (``items_scored_per_user``).
    """
    from mmrec.index.exact import faiss_module
    from mmrec.index.faiss_index import FaissIndex
    from mmrec.pipelines.index import build_index

    job = replace_config(build_config(ServeJob, config, "retrieve serve"), "retrieve serve", **overrides)
    kind, k, out, max_users, beam = job.kind, job.k, job.out, job.max_users, job.beam
    branching, target_recall, joint, mips, upper = job.branching, job.target_recall, job.joint, job.mips, job.upper_beam
    balanced = job.balanced
    model, config = load_run(run)
    if not isinstance(model, KuaiFormer):
        raise UsageError(f"{config['job']['model']} has no user vectors to serve; use a kuaiformer or sasrec run")
    seqs, _ = read_sequences(config["job"]["data"])
    history, targets = seqs.split_last()
    users = np.arange(len(history)) if max_users is None else np.arange(min(max_users, len(history)))
    interests = interest_vectors(model, history, users, config["model"]["max_len"])  # (U, k, D)
    with torch.no_grad():
        items = np.ascontiguousarray(model.item_vectors().numpy(), dtype=np.float32)
    n_int = interests.shape[1]
    queries = np.ascontiguousarray(interests.reshape(-1, interests.shape[2]), dtype=np.float32)
    keys = [ITEM_KEY.format(i) for i in range(len(items))]
    k = min(k, len(items))
    truth = exact_top(queries, items, n_int, k)
    extra: dict[str, Any] = {}
    if kind == "tree":
        from mmrec.index.tree import IndexTree

        lift = mips_lift if mips else (lambda x, q: (x, q))
        tree_items, queries = lift(items, queries)
        index = IndexTree.build(tree_items, out, {"branching": branching, "balanced": balanced, "metric": "ip", "k": min(10, k)},
                                keys=keys, progress=progress)
        if beam is None:
            tune_users = np.arange(len(users), min(len(users) + 500, len(history)))
            if not len(tune_users):
                tune_users = users
            tune_q = np.ascontiguousarray(interest_vectors(model, history, tune_users, config["model"]["max_len"]).reshape(-1, items.shape[1]))
            tune_truth = exact_top(tune_q, items, n_int, k)
            tune_q = lift(items, tune_q)[1]
            sweep: list[dict[str, Any]] = []

            def reaches(b: int) -> bool:
                tuned, nodes = tree_search(index, tune_q, n_int, k, b, joint, upper)
                sweep.append({"beam": b, f"recall@{k}_vs_exact": round(recall_vs(tuned, tune_truth, k), 4),
                              "items_scored_per_query": round(nodes, 1), "scored_fraction": round(nodes / len(items), 4)})
                return sweep[-1][f"recall@{k}_vs_exact"] >= target_recall

            widest, low, b = max(index.node_counts()[:-1] or [1]), 0, 1
            while not reaches(b) and b < widest:  # doubling, then bisection between the last two beams
                low, b = b, min(2 * b, widest)
            while b - low > max(1, b // 16):
                mid = (low + b) // 2
                low, b = (low, mid) if reaches(mid) else (mid, b)
            beam = b
            extra["beams"] = sweep
            extra["beam_tuned_on_users"] = int(len(tune_users))
        start = time.perf_counter()
        found, scored = tree_search(index, queries, n_int, k, beam, joint, upper)
        seconds = time.perf_counter() - start
        extra.update(beam=int(beam), upper_beam=upper, branching=int(branching), balanced=balanced, joint=joint, mips=mips,
                     tree_nodes_per_level=index.node_counts())
        flags = f"{f', upper_beam={upper}' if upper else ''}{', joint' if joint else ''}{', mips' if mips else ''}{', balanced' if balanced else ''}"
        factory = f"tree(branching={branching}, beam={beam}{flags})"
    else:
        faiss = faiss_module()
        index = build_index(items, out, "faiss:Flat" if kind == "exact" else f"faiss:{kind}" if kind != "auto" else "auto",
                            keys=keys, progress=progress, metric="ip", k=min(10, k))
        stats = faiss.cvar.indexIVF_stats
        stats.reset()
        start = time.perf_counter()
        scores, rows = index.search(queries, k)
        seconds = time.perf_counter() - start
        family = index.info.get("family", "")
        scored = stats.ndis / len(queries) if family.startswith("ivf") else float(len(items)) if "flat" in family or family == "" else None
        if family.startswith("hnsw"):
            scored = None  # HNSW's visit count is not exposed per search here
        factory = index.info.get("factory")
        extra["search_params"] = index.info.get("search_params")
        extra["index_type"] = type(index).__name__ if not isinstance(index, FaissIndex) else "faiss"
        found = merge_interests(scores, rows, n_int, k)
    if model.transition is not None:  # two-stage: the index's candidates ∪ the transition rows, rescored with the hybrid score
        extra[f"index_recall@{k}_vs_exact"] = recall_vs(found, truth, k)
        hist = history.padded(users, config["model"]["max_len"])
        truth = np.concatenate([model.score(hist[i : i + 1024]).topk(k).indices.numpy() for i in range(0, len(hist), 1024)])
        found = hybrid_top(model, hist, found, k)
        factory = f"{factory} + transition candidates, rescored"
    hit10 = float(np.mean([targets[u] in f[:10] for u, f in zip(users, found)]))
    hit10_exact = float(np.mean([targets[u] in t[:10] for u, t in zip(users, truth)]))
    return finite_json({
        "run": str(run), "kind": kind, "factory": factory, "users": int(len(users)), "interests": int(n_int),
        "items": int(len(items)), "k": int(k), f"recall@{k}_vs_exact": recall_vs(found, truth, k),
        "items_scored_per_query": scored, "items_scored_per_user": None if scored is None else scored * n_int,
        "scored_fraction": None if scored is None else scored / len(items),
        "queries_per_s": round((len(users) if joint and kind == "tree" else len(queries)) / seconds, 1) if seconds > 0 else None,
        "validation_recall@10": hit10, "validation_recall@10_exact": hit10_exact,
        "out": None if out is None else str(out), **extra,
    })
