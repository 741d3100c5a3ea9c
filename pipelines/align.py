"""``mmrec align``: QARM item alignment as a job, from a behaviour log and item content to aligned vectors.

Two paths, one job config (:class:`AlignJob`: the job's own options plus the pair-mining
:class:`~mmrec.quantization.pairs.PairConfig` and the training
:class:`~mmrec.quantization.align.AlignConfig`):

- :func:`align` (fast): over cached embeddings (an ``mmrec extract`` folder), a head on the frozen
  ``column`` vectors (:func:`mmrec.quantization.align.align_vectors`);
- :func:`align_encoders` (slow): over raw item shards, trainable encoders
  (:class:`mmrec.quantization.encoder_tower.EncoderTower`), pairs mined in their initial space.

Both mine pairs (:func:`mmrec.quantization.pairs.mine_pairs`, streamed into ``pairs.parquet``),
de-duplicate them and hold a seeded share out, train through :func:`mmrec.training.fit`, and write
into ``out``: ``emb-X.parquet`` per input shard (``key`` + ``column``, aligned; the layout of
``mmrec extract``), ``manifest.json``, ``pairs.parquet`` (``left, right, source, score``), the trained
weights (``head.safetensors`` or ``encoders.safetensors``) and ``align.json``, the returned report
(pair counts, loss per epoch, temperature, held-out metrics before and after). :func:`run_align` picks
the path from its inputs, as the CLI does.

Under ``torchrun`` the tower trains with DDP (:func:`mmrec.training.fit`): rank 0 mines and writes the
pairs, every rank reads them; ``train.batch_size`` is the global batch, each rank holds half of it (its
in-batch negatives are its own); rank 0 writes the output folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.config import build_config, replace_config
from mmrec.encoders.base import TrainableConfig
from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, output_folder, write_json
from mmrec.quantization.align import AlignConfig, align_vectors, encode_rows, pair_metrics, split_pairs, train_tower
from mmrec.quantization.files import save_tensors
from mmrec.quantization.pairs import Log, PairConfig, mine_pairs
from mmrec.store import check_vectors, embedding_shards, read_embeddings, write_embeddings
from mmrec.threads import THREADS_HELP, announce_threads, use_threads
from mmrec.training import distributed, on_rank0, world

MODALITIES = ("image", "text", "audio")


@dataclass
class AlignJob:
    """Options of ``mmrec align``; ``image`` / ``text`` / ``audio`` / ``weights`` / ``fuse`` /
    ``trainable`` are for the slow path (:func:`align_encoders`) only."""

    column: str = field(default="fused", metadata={"help": "vector column to align (fast path) and to write"})
    image: str | None = field(default=None, metadata={"help": "slow path: image encoder spec", "metavar": "SPEC"})
    text: str | None = field(default=None, metadata={"help": "slow path: text encoder spec", "metavar": "SPEC"})
    audio: str | None = field(default=None, metadata={"help": "slow path: audio encoder spec", "metavar": "SPEC"})
    weights: dict[str, str] = field(default_factory=dict, metadata={"help": "slow path: modality -> local checkpoint"})
    fuse: str = field(default="concat", metadata={"help": "slow path: fusion of the modality vectors, concat or mean"})
    threads: int | None = field(default=None, metadata={"help": THREADS_HELP})
    trainable: TrainableConfig = field(default_factory=TrainableConfig,
                                       metadata={"help": "slow path: what of the encoders learns (head, LoRA, blocks)"})
    train: AlignConfig = field(default_factory=AlignConfig, metadata={"help": "training of the tower"})
    pairs: PairConfig = field(default_factory=PairConfig, metadata={"help": "pair mining"})

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        unknown = set(self.weights) - set(MODALITIES)
        if unknown:
            raise UsageError(f"weights for unknown modality {sorted(unknown)}; use {MODALITIES}")

    @property
    def specs(self) -> dict[str, str]:
        """The slow path's encoder specs by modality."""
        return {m: s for m in MODALITIES if (s := getattr(self, m))}


def _job(config: AlignJob | dict | str | Path | None, overrides: dict[str, Any]) -> AlignJob:
    return replace_config(build_config(AlignJob, config, "align"), "align", **overrides)


_PAIR_SCHEMA = pa.schema([
    pa.field("left", pa.string(), nullable=False), pa.field("right", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False), pa.field("score", pa.float32(), nullable=False),
])


def write_pairs(log: Log, keys: list[str], vectors: np.ndarray, out: str | Path,
                config: PairConfig | dict | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Mine pairs for the items ``keys`` (rows of ``vectors``) into ``out`` (Parquet ``left, right,
    source, score``, written batch by batch); returns the counts per source. No pair at all is an
    InputError (:func:`~mmrec.quantization.pairs.mine_pairs`), and ``out`` is then not written."""
    counts: dict[str, Any] = {}
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, _PAIR_SCHEMA) as writer:
        for source, left, right, score in mine_pairs(log, keys, vectors, config, counts=counts, progress=progress):
            writer.write_table(pa.table({
                "left": pa.array([keys[r] for r in left.tolist()], pa.string()),
                "right": pa.array([keys[r] for r in right.tolist()], pa.string()),
                "source": pa.array([source] * len(left), pa.string()), "score": pa.array(score, pa.float32()),
            }, schema=_PAIR_SCHEMA))
    return counts


def read_pairs(path: str | Path, rows: dict[str, int]) -> np.ndarray:
    """Pairs file -> ``(P, 2)`` int64 rows into the embeddings; pairs on unknown keys are dropped."""
    table = pq.read_table(path, columns=["left", "right"])
    left = np.array([rows.get(k, -1) for k in table.column("left").to_pylist()], dtype=np.int64)
    right = np.array([rows.get(k, -1) for k in table.column("right").to_pylist()], dtype=np.int64)
    keep = (left >= 0) & (right >= 0)
    return np.stack([left[keep], right[keep]], axis=1)


def _mine_and_split(log: Log, keys: list[str], vectors: np.ndarray, out: Path, job: AlignJob,
                    progress: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    counts = on_rank0(write_pairs, log, keys, vectors, out / "pairs.parquet", job.pairs, progress=progress)
    train, held = split_pairs(read_pairs(out / "pairs.parquet", {k: r for r, k in enumerate(keys)}),
                              job.train.holdout, job.train.seed)
    return counts, train, held


def _report(job: AlignJob, keys: list[str], counts: dict, train: np.ndarray, held: np.ndarray, before: np.ndarray,
            after: np.ndarray, history: dict[str, Any], start: float, **extra: Any) -> dict[str, Any]:
    seed = job.train.seed
    return {
        "items": len(keys), **extra, "pairs": counts, "train_pairs": len(train), "heldout_pairs": len(held),
        "before": pair_metrics(before, held, seed), "after": pair_metrics(after, held, seed), **history,
        "config": asdict(job.train), "pair_config": asdict(job.pairs), "elapsed_s": round(time.perf_counter() - start, 3),
    }


def align(log: Log, emb: str | Path, out: str | Path, config: AlignJob | dict | str | Path | None = None, *,
          progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Fast path: mine pairs from ``log``, align ``column`` of the ``emb`` folder with a head, write ``out``.

    ``config``: an :class:`AlignJob`, a dict or a YAML path (``{"train": {"epochs": 10}, "pairs":
    {"window": 20}}``); keyword ``overrides`` replace its fields. Returns the report (``align.json``).
    """
    job = _job(config, overrides)
    with output_folder(out) as out, use_threads(job.threads, what="align threads") as threads, _distributed(job):
        return _align(log, emb, out, job, progress and world()[0] == 0, threads)


def _distributed(job: AlignJob):
    from mmrec.device import resolve_device

    return distributed(resolve_device(job.train.device, what="align device"))


def _align(log: Log, emb: str | Path, out: Path, job: AlignJob, progress: bool, threads: int) -> dict[str, Any]:
    start = time.perf_counter()
    keys, vectors = read_embeddings(emb, job.column)
    vectors = check_vectors(vectors, name=f"embeddings {job.column!r} in {emb}")
    if progress:
        announce_threads(threads, job.threads)
    counts, train, held = _mine_and_split(log, keys, vectors, out, job, progress)
    aligned, head, history = align_vectors(vectors, train, job.train, progress=progress)
    info = {"aligned": True, "column": job.column, "source": str(emb), "head": job.train.head, "dim": int(aligned.shape[1])}
    report = _report(job, keys, counts, train, held, vectors, aligned, history, start)
    if world()[0] == 0:
        write_embeddings(out, embedding_shards(emb), dict(zip(keys, aligned)), job.column, info=info)
        save_tensors(out / "head.safetensors", {k: v.detach().cpu().numpy() for k, v in head.state_dict().items()},
                     {"config": asdict(job.train), "in_dim": int(vectors.shape[1])})
        write_json(out / "align.json", report)
    return report


def _read_items(shards: list[str], encoders: dict[str, Any]) -> tuple[list[str], dict[str, list[str]], list[dict], list[dict]]:
    """Every readable item of the shards, preprocessed for ``encoders``: ``(keys, keys by shard, inputs, errors)``."""
    import webdataset as wds

    from mmrec.encoders.shards import raw_inputs, shard_name

    keys, by_shard, prepared, errors = [], {}, [], []
    for path in shards:
        names = by_shard.setdefault(shard_name(path), [])
        for sample in wds.WebDataset(path, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None):
            try:
                item = {}
                for m, encoder in encoders.items():
                    raws = raw_inputs(sample, m)
                    if raws:
                        item[m] = [encoder.preprocess(r) for r in raws]
            except Exception as err:  # hostile bytes: skip the sample, as extract does
                errors.append({"key": sample["__key__"], "reason": f"{type(err).__name__}: {err}"})
                continue
            if item:
                keys.append(sample["__key__"])
                names.append(sample["__key__"])
                prepared.append(item)
    return keys, by_shard, prepared, errors


def align_encoders(log: Log, shards: str | list[str], out: str | Path, config: AlignJob | dict | str | Path | None = None, *,
                   progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Slow path: align trainable encoders (``image`` / ``text`` / ``audio`` specs of the job) on pairs
    mined from ``log``; write aligned vectors of every item of ``shards`` to ``out``.

    Besides the fast path's files, ``out`` gets ``encoders.safetensors`` (the trained parameters:
    heads, LoRA, unfrozen blocks, keyed ``modality.name``) instead of ``head.safetensors``. Samples that
    fail to decode are left out and counted (``read_errors``), as in ``mmrec extract``.
    """
    job = _job(config, overrides)
    if not job.specs:
        raise UsageError("give at least one encoder spec (image=, text=, audio=)")
    with output_folder(out) as out, use_threads(job.threads, what="align threads") as threads, _distributed(job):
        return _align_encoders(log, shards, out, job, progress and world()[0] == 0, threads)


def _align_encoders(log: Log, shards: str | list[str], out: Path, job: AlignJob, progress: bool,
                    threads: int) -> dict[str, Any]:
    import torch

    from mmrec.device import resolve_device
    from mmrec.encoders import load_encoder
    from mmrec.encoders.shards import expand_shards
    from mmrec.quantization.encoder_tower import EncoderTower

    start = time.perf_counter()
    device = resolve_device(job.train.device, what="align device")
    torch.manual_seed(job.train.seed)
    encoders = {m: load_encoder(s, weights=job.weights.get(m), trainable=job.trainable, device=str(device))
                for m, s in job.specs.items()}
    keys, by_shard, prepared, errors = _read_items(expand_shards(shards), encoders)
    if len(keys) < 2:
        raise InputError(f"fewer than 2 readable items in {shards} ({len(errors)} failed)")
    if progress:
        announce_threads(threads, job.threads)
    tower = EncoderTower(encoders, job.fuse, prepared)
    before = encode_rows(tower, len(keys), batch=job.train.batch_size)
    counts, train, held = _mine_and_split(log, keys, before, out, job, progress)
    history = train_tower(tower, train, job.train, progress=progress)
    after = encode_rows(tower, len(keys), batch=job.train.batch_size)
    info = {"aligned": True, "column": job.column, "encoders": {m: e.describe() for m, e in encoders.items()},
            "specs": job.specs, "fuse": job.fuse, "dim": int(after.shape[1])}
    report = _report(job, keys, counts, train, held, before, after, history, start, read_errors=len(errors))
    if world()[0] == 0:
        write_embeddings(out, by_shard, dict(zip(keys, after)), job.column, info=info)
        trained = {f"{m}.{name}": p.detach().cpu().numpy()
                   for m, e in encoders.items() for name, p in e.named_parameters() if p.requires_grad}
        save_tensors(out / "encoders.safetensors", trained, {"specs": job.specs, "trainable": asdict(job.trainable)})
        write_json(out / "align.json", report)
    return report


def run_align(log: Log, out: str | Path, *, emb: str | Path | None = None, input: str | list[str] | None = None,
              config: AlignJob | dict | str | Path | None = None, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """``mmrec align``: :func:`align` over cached embeddings ``emb``, or :func:`align_encoders` over the
    shards ``input``; exactly one of the two."""
    if (emb is None) == (input is None):
        raise UsageError("give exactly one of --emb (cached embeddings) or --input (shards, through encoders)")
    job = _job(config, overrides)
    if emb is not None:
        if job.specs:
            raise UsageError(f"encoder specs ({', '.join(job.specs)}) are for --input, the slow path; drop them with --emb")
        return align(log, emb, out, job, progress=progress)
    return align_encoders(log, input, out, job, progress=progress)
