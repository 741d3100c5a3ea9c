"""``mmrec demo``: the whole chain on bundled SYNTHETIC sample data, one table at the end.

Every stage is the job a user runs, reading the previous stage's files:

1. ``sample-data``: item shards with planted topics and a behaviour log whose clicks follow each
   user's interest topics (:mod:`mmrec.synthetic.sample_data`);
2. ``extract``: cover, title and audio through the encoders (random tiny image / speech towers, the
   real MiniLM text encoder) -> leave-one-out 1-NN topic accuracy of the fused vector vs chance;
3. ``align`` (QARM): pairs mined from the log, InfoNCE head -> held-out pairs' cosine gap over random
   pairs after vs before (their AUC and mean cosine are in the report);
4. ``quantize`` (RQ-Kmeans over the aligned vectors) -> purity of the first code level w.r.t. the
   planted topics vs the largest topic's share;
5. ``index build`` (FAISS, auto choice) and the MISS tree -> recall@10 vs exact search;
6. ``cdr train`` + ``cdr export`` (UniCDR+ over the log's video and live domains) -> user vectors keyed
   by user id;
7. ``rank train`` (PEPNet, click + like) four times: ids only (the baseline), + the codes, + QARM cross
   features (codes of the candidate vs the click history), + the cross-domain user vector -> test
   click AUC of each vs ids only.

Each row of the report's ``stages`` is ``{stage, output, metric, value, baseline, baseline_value,
seconds}``; :func:`format_report` prints them as the table the README shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.config import build_config, replace_config
from mmrec.encoders import DEFAULT_TEXT
from mmrec.io import write_json
from mmrec.store import read_embeddings


@dataclass
class DemoConfig:
    """Sizes and encoders of the demo; the defaults run in a few minutes on 2 CPU cores."""

    items: int = field(default=240, metadata={"help": "sample items"})
    users: int = field(default=300, metadata={"help": "users of the SYNTHETIC behaviour log"})
    topics: int = field(default=8, metadata={"help": "planted topics"})
    seed: int = field(default=0, metadata={"help": "seed of the data and of every stage"})
    image: str = field(default="open_clip:tiny", metadata={"help": "image encoder spec (random weights unless --image-weights)", "metavar": "SPEC"})
    image_weights: str | None = field(default=None, metadata={"help": "local checkpoint for the image encoder", "metavar": "PATH"})
    text: str = field(default=DEFAULT_TEXT, metadata={"help": "text encoder spec (real MiniLM weights by default)", "metavar": "SPEC"})
    audio: str = field(default="speech:tiny", metadata={"help": "speech encoder spec (random weights)", "metavar": "SPEC"})
    codebook_size: int = field(default=16, metadata={"help": "codes per level of the 3-level RQ-Kmeans"})
    ranker: str = field(default="pepnet", metadata={"help": "ranker of the rank stage"})
    rank_epochs: int = field(default=4, metadata={"help": "epochs of each ranker run"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads of the training stages"})


def nn_topic_accuracy(vectors: np.ndarray, topics: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy: share of rows whose most similar other row has the same topic."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)
    return float((topics[sims.argmax(axis=1)] == topics).mean())


def _item_topics(shards: list[str]) -> dict[str, int]:
    import webdataset as wds

    return {s["__key__"]: json.loads(s["json"])["topic"] for s in wds.WebDataset(shards, shardshuffle=False)}


def _purity(codes: np.ndarray, topics: np.ndarray) -> float:
    """Share of items whose first-level code's majority topic is their own."""
    hits = 0
    for code in np.unique(codes):
        hits += np.bincount(topics[codes == code]).max()
    return float(hits / len(codes))


class _Stages:
    """Runs the stages in order, timing each and collecting its table row."""

    def __init__(self, progress: bool) -> None:
        self.rows: list[dict[str, Any]] = []
        self.progress = progress

    def run(self, stage: str, output: str, fn: Callable[[], tuple[str, float, str | None, float | None]]) -> None:
        if self.progress:
            print(f"[demo] {stage} ...", flush=True)
        start = time.perf_counter()
        metric, value, baseline, baseline_value = fn()
        self.rows.append({"stage": stage, "output": output, "metric": metric, "value": round(float(value), 4),
                          "baseline": baseline, "baseline_value": None if baseline_value is None else round(float(baseline_value), 4),
                          "seconds": round(time.perf_counter() - start, 1)})


def _click_auc(report: dict[str, Any]) -> float:
    return float(report["metrics"]["click"]["all"]["auc"])


def run_demo(out: str | Path, config: DemoConfig | dict | None = None, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Run the chain in folder ``out``; returns (and writes to ``out/report.json``) the report."""
    import torch

    from mmrec.index import build_index
    from mmrec.pipelines.align import align
    from mmrec.pipelines.cdr import export_user_features, train_cdr
    from mmrec.pipelines.extract import extract
    from mmrec.pipelines.quantize import quantize
    from mmrec.pipelines.rank import train as train_ranker
    from mmrec.quantization import load_codes
    from mmrec.synthetic.sample_data import write_sample_data

    cfg = replace_config(build_config(DemoConfig, config, "demo"), "demo", **overrides)
    out = Path(out)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    stages = _Stages(progress)
    state: dict[str, Any] = {}
    try:
        def data() -> tuple:
            summary = write_sample_data(out / "data", items=cfg.items, segments=0, users=cfg.users, topics=cfg.topics,
                                        seed=cfg.seed, progress=False)
            state["data"] = summary
            return "log rows (SYNTHETIC)", summary["behaviour_rows"], f"{summary['items']} items, {cfg.users} users", None

        def embed() -> tuple:
            manifest = extract(state["data"]["item_shards"], out / "emb", image=cfg.image, text=cfg.text, audio=cfg.audio,
                               weights={"image": cfg.image_weights} if cfg.image_weights else {}, fuse="concat",
                               num_workers=1, progress=progress)
            topic_of = _item_topics(state["data"]["item_shards"])
            state["topic_of"] = topic_of
            state["modalities"] = {}
            for column in ("image", "text", "audio", "fused"):
                keys, vectors = read_embeddings(out / "emb", column)
                state["modalities"][column] = round(nn_topic_accuracy(vectors, np.array([topic_of[k] for k in keys])), 4)
            state["extract"] = {"samples_per_s": manifest["runs"][0]["samples_per_s"], "errors": manifest["errors"]}
            return "fused 1-NN topic accuracy", state["modalities"]["fused"], "chance", 1 / cfg.topics

        def aligned() -> tuple:
            report = align(state["data"]["behaviour"], out / "emb", out / "aligned",
                           {"train": {"epochs": 20, "seed": cfg.seed}, "pairs": {"seed": cfg.seed}}, progress=False)
            state["align"] = {"before": report["before"], "after": report["after"], "pairs": report["train_pairs"]}
            return "held-out pair gap vs random", report["after"]["gap"], "raw embeddings", report["before"]["gap"]

        def codes() -> tuple:
            report = quantize(out / "aligned", out / "codes", method="rq-kmeans", levels=3, codebook_size=cfg.codebook_size,
                              seed=cfg.seed, progress=False)
            keys, codes, _ = load_codes(out / "codes" / "codes.parquet")
            topics = np.array([state["topic_of"][k] for k in keys])
            state["quantize"] = {"unique_id_pct": report["unique_id_pct"], "collision_rate": report["collision_rate"]}
            largest = np.bincount(topics).max() / len(topics)
            return "level-1 topic purity", _purity(codes[:, 0], topics), "largest topic share", largest

        def faiss_index() -> tuple:
            info = build_index(out / "aligned", out / "index", "auto", column="fused", k=10, seed=cfg.seed, progress=False).info
            return f"recall@10 ({info.get('factory')})", info["measured"]["recall"]["10"], "exact search", 1.0

        def tree_index() -> tuple:
            info = build_index(out / "aligned", out / "tree", "tree", column="fused", k=10, branching=4, seed=cfg.seed,
                               progress=False).info
            return "recall@10 by beam search", info["measured"]["recall"]["10"], "exact search", 1.0

        def cross_domain() -> tuple:
            report = train_cdr(state["data"]["behaviour"], "video_live", out=out / "cdr",
                               config={"model": "unicdr+", "epochs": 3, "seed": cfg.seed, "threads": cfg.threads,
                                       "tasks": ["click"]})
            export = export_user_features(out / "cdr", out / "cdr-users", target="live")
            state["cdr"] = {"epochs": report["epochs_run"], "users": export["users"]}
            return "user vectors exported (live)", export["users"], f"{report['epochs_run']} epochs", None

        base = {"data": {"log": str(out / "data" / "behaviour.parquet"), "tasks": ["click", "like"], "history": {"length": 20, "positive": "click"}},
                "model": {"name": cfg.ranker}, "optim": {"epochs": cfg.rank_epochs, "seed": cfg.seed, "threads": cfg.threads}}
        code_feature = {"name": "sid", "kind": "codes", "path": str(out / "codes" / "codes.parquet"), "levels": 3}
        variants = {  # stage -> (run folder, features)
            "rank: ids only": ("rank-ids", []),
            "rank: + codes": ("rank-codes", [code_feature]),
            "rank: + codes + cross": ("rank-cross", [code_feature, {"name": "sid_x", "kind": "code_cross",
                                                                   "path": str(out / "codes" / "codes.parquet"), "levels": 3}]),
            "rank: + cdr user vector": ("rank-user", [{"name": "cdr", "kind": "user_dense", "path": str(out / "cdr-users")}]),
        }

        def ranker(name: str, folder: str, features: list[dict]) -> Callable[[], tuple]:
            def run() -> tuple:
                report = train_ranker({**base, "features": features}, out=out / folder, progress=False)
                value = _click_auc(report)
                state.setdefault("rank", {})[name] = value
                if not features:
                    return "test click AUC", value, None, None
                return "test click AUC", value, "ids only", state["rank"]["rank: ids only"]
            return run

        stages.run("sample-data", "data/", data)
        stages.run("extract", "emb/", embed)
        stages.run("align", "aligned/", aligned)
        stages.run("quantize", "codes/", codes)
        stages.run("index (FAISS)", "index/", faiss_index)
        stages.run("index (MISS tree)", "tree/", tree_index)
        stages.run("cdr (UniCDR+)", "cdr/, cdr-users/", cross_domain)
        for name, (folder, features) in variants.items():
            stages.run(name, f"{folder}/", ranker(name, folder, features))
    finally:
        torch.set_num_threads(previous_threads)
    report = {"data": "SYNTHETIC sample data with planted topics", "config": asdict(cfg), "stages": stages.rows,
              "modalities": state.get("modalities"), "extract": state.get("extract"), "align": state.get("align"),
              "quantize": state.get("quantize"), "cdr": state.get("cdr"), "chance": round(1 / cfg.topics, 4),
              "seconds": round(sum(r["seconds"] for r in stages.rows), 1)}
    write_json(out / "report.json", report)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The stage table for the terminal."""
    lines = [f"mmrec demo on {report['data']} ({report['seconds']:.0f} s)",
             f"{'stage':<26}{'output':<18}{'figure':<30}{'value':>8}  {'baseline':<22}{'value':>8}{'time':>8}"]
    for r in report["stages"]:
        base = "" if r["baseline_value"] is None else f"{r['baseline_value']:8.3f}"
        value = f"{r['value']:8.3f}" if abs(r["value"]) < 100 else f"{r['value']:8.0f}"
        lines.append(f"{r['stage']:<26}{r['output']:<18}{r['metric']:<30}{value}  {r['baseline'] or '':<22}{base:>8}{r['seconds']:7.1f}s")
    modalities = report.get("modalities") or {}
    if modalities:
        lines.append("1-NN topic accuracy per modality: " + ", ".join(f"{k} {v:.3f}" for k, v in modalities.items())
                     + f" (chance {report['chance']:.3f})")
    if report.get("align"):
        before, after = report["align"]["before"], report["align"]["after"]
        lines.append(f"align, held-out pairs: cosine {before['pair_cosine']:.3f} -> {after['pair_cosine']:.3f}, "
                     f"AUC over random pairs {before['auc']:.3f} -> {after['auc']:.3f}")
    return "\n".join(lines)
