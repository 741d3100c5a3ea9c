"""FAISS indexes built by streaming Parquet embeddings, tuned to a recall target, added to in place.

Build (:meth:`FaissIndex.build`), in two passes over the input:

1. a sampling pass draws the tuning queries and the training sample (disjoint, uniform; the
   queries are held out of training) and counts the rows; the factory string comes from
   :func:`mmrec.index.select.choose_index` (``factory="auto"``) or is given;
2. the index is trained on the sample (IVF, PQ, SQ), then every batch is added as it is read while the
   same batch updates the exact top-k of the queries (:class:`mmrec.index.exact.ExactKnn`).

So only the sample and one batch are in memory besides the index itself. Then ``nprobe`` / ``efSearch``
is tuned to the smallest value reaching ``target_recall`` at ``k`` (:mod:`mmrec.index.tune`,
queries leave-one-out) and recall@1/k, QPS, latency and build times are written to ``index.json``.

With faiss-gpu and a GPU, training and adding run on all GPUs (``faiss.index_cpu_to_all_gpus``) for
the index types FAISS supports there (Flat, IVF-Flat, IVF-SQ, IVF-PQ); HNSW and OPQ stay on the CPU,
and the saved index is always a CPU index. Loading memory-maps the file where FAISS can
(``IO_FLAG_MMAP`` for inverted lists, ``IO_FLAG_MMAP_IFC`` for flat codes); a memory-mapped index is
read-only, so :meth:`add` needs ``load(..., mmap=False)``, which :func:`mmrec.index.add_to_index` does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import mmrec
from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex, check_unique, read_info
from mmrec.index.exact import METRICS, ExactKnn, faiss_metric, faiss_module
from mmrec.index.select import choose_index, family_of, parse_memory
from mmrec.io import atomic_path
from mmrec.store import BATCH_ROWS, check_vectors, open_source, sample_rows

INDEX_FILE = "index.faiss"
MIN_TRAIN = 10_000  # PQ's 256 centroids per sub-quantizer want ≥ 39·256 points
TRAIN_PER_LIST = 50


@dataclass
class FaissConfig:
    """How to build: ``factory`` ("auto" or a FAISS factory string) and the budgets it answers to."""

    factory: str = field(default="auto", metadata={"help": "auto, or a FAISS factory string such as IVF1024,Flat"})
    metric: str = field(default="ip", metadata={"help": "inner product or L2", "choices": METRICS})
    max_memory: str | int = field(default="1G", metadata={"help": "memory budget of the index, e.g. 512M, 4G"})
    max_query_ms: float | None = field(default=10.0, metadata={"help": "latency budget per query in ms"})
    target_recall: float = field(default=0.95, metadata={"help": "recall@k vs exact search to tune the search knob for (nprobe, efSearch, the tree's beam)"})
    k: int = field(default=10, metadata={"help": "k of the recall target"})
    n_queries: int = field(default=1000, metadata={"help": "held-out rows the search knob is tuned on"})
    train_size: int | None = field(default=None, metadata={"help": "training sample size; none: 50 per inverted list, at least 10,000"})
    gpu: bool | None = field(default=None, metadata={"help": "build on GPUs with faiss-gpu; unset: when FAISS sees a GPU"})
    seed: int = field(default=0, metadata={"help": "seed of the training sample and the tuning queries"})
    batch_rows: int = field(default=BATCH_ROWS, metadata={"help": "rows read and added per batch"})

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        parse_memory(self.max_memory)
        if not 0 < self.target_recall <= 1:
            raise UsageError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.k < 1 or self.n_queries < 1 or self.batch_rows < 1:
            raise UsageError(f"k, n_queries and batch_rows must be >= 1, got {self.k}, {self.n_queries}, {self.batch_rows}")
        if self.max_query_ms is not None and self.max_query_ms <= 0:
            raise UsageError(f"max_query_ms must be > 0, got {self.max_query_ms}")
        if not self.factory.strip():
            raise UsageError("empty factory string; use 'auto' or e.g. 'IVF1024,Flat'")


def _gpu_count() -> int:
    faiss = faiss_module()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _use_gpu(wanted: bool | None) -> bool:
    if wanted and _gpu_count() == 0:
        raise UsageError("gpu=True, but this FAISS sees no GPU (install faiss-gpu: pip install 'mmrec[gpu]')")
    return _gpu_count() > 0 if wanted is None else wanted


def _new_index(dim: int, factory: str, metric: str):
    faiss = faiss_module()
    try:
        return faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise UsageError(f"bad FAISS factory string {factory!r} for dim {dim}: {detail}") from None


def _train(index, train: np.ndarray, factory: str) -> None:
    if index.is_trained:
        return
    try:
        index.train(train)
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1]
        raise UsageError(f"cannot train {factory!r} on {len(train)} vectors ({detail}); try a smaller index or faiss:Flat") from None


def _to_gpu(index) -> tuple[Any, str]:
    """A GPU clone of ``index`` and a note; the CPU index itself where FAISS cannot move it."""
    faiss = faiss_module()
    try:
        return faiss.index_cpu_to_all_gpus(index), f"gpu x{_gpu_count()}"
    except (RuntimeError, AttributeError) as err:
        return index, f"cpu (not on GPU: {str(err).strip().splitlines()[-1][:120]})"


def _train_size(config: FaissConfig, factory: str, n: int) -> int:
    if config.train_size is not None:
        return config.train_size
    match = re.search(r"IVF(\d+)", factory)
    lists = int(match.group(1)) if match else 0
    needs = "IVF" in factory or "PQ" in factory or "SQ" in factory
    return max(TRAIN_PER_LIST * lists, MIN_TRAIN) if needs else 0


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="vec", unit_scale=True, disable=not enabled)


class FaissIndex(BaseIndex):
    """A FAISS index with its keys and ``index.json``; build, add, search, save, load."""

    kind = "faiss"
    config_class = FaissConfig

    def __init__(self, index, keys: pa.Array, info: dict[str, Any], *, mmapped: bool = False, on_gpu: bool = False) -> None:
        super().__init__(keys, info)
        self.index = index
        self.mmapped = mmapped
        self.on_gpu = on_gpu
        self._reconstruct_lock = threading.Lock()
        self._direct_map = False
        for name, value in info.get("search_params", {}).items():
            self._set(name, value)

    # -- search-time knob -------------------------------------------------------------------
    @property
    def param_name(self) -> str | None:  # type: ignore[override]
        family = self.info["family"]
        return "nprobe" if family.startswith("ivf") else "efSearch" if family == "hnsw" else None

    def param_grid(self) -> list[int]:
        if self.param_name == "nprobe":
            nlist = faiss_module().extract_index_ivf(self.index).nlist
            return [2**i for i in range(nlist.bit_length()) if 2**i < nlist] + [nlist]
        if self.param_name == "efSearch":
            return [16 * 2**i for i in range(9)]  # 16 .. 4096
        return []

    def _set(self, name: str, value: int) -> None:
        faiss = faiss_module()
        space = faiss.GpuParameterSpace() if self.on_gpu else faiss.ParameterSpace()
        space.set_index_parameter(self.index, name, int(value))

    def set_param(self, value: int) -> None:
        if self.param_name is None:
            super().set_param(value)
        self._set(self.param_name, value)
        if self.param_name == "nprobe" and "_HNSW" in self.info["factory"]:  # IVF with an HNSW coarse quantizer
            self._set("quantizer_efSearch", max(64, 2 * int(value)))
        self.info.setdefault("search_params", {})[self.param_name] = int(value)

    # -- search -----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, name="queries", dim=self.dim)
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        return self.index.search(queries, k)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        faiss = faiss_module()
        rows = np.asarray(rows, dtype=np.int64)
        with self._reconstruct_lock:
            if not self._direct_map and self.info["family"].startswith("ivf"):
                faiss.extract_index_ivf(self.index).make_direct_map()
                self._direct_map = True
        return self.index.reconstruct_batch(rows)

    # -- build and add ----------------------------------------------------------------------
    @classmethod
    def _build_from(cls, source: Any, config: FaissConfig, *, column: str, progress: bool, start: float) -> FaissIndex:
        faiss = faiss_module()
        times: dict[str, float] = {}
        planned = source.max_rows  # nulls included: an upper bound on n, to size the sample
        budgets = {"max_memory": config.max_memory, "max_query_ms": config.max_query_ms}
        factory = config.factory
        if factory == "auto":
            factory = choose_index(planned, source.dim, **budgets).factory
        n_queries = min(config.n_queries, max(1, planned // 5))
        rows, sample, n = sample_rows(source, min(n_queries + _train_size(config, factory, planned), planned), seed=config.seed)
        choice = None
        if config.factory == "auto":
            choice = choose_index(n, source.dim, **budgets)
            factory = choice.factory
        n_queries = min(n_queries, len(rows))
        query_rows, queries = rows[:n_queries], sample[:n_queries].copy()
        train = sample[n_queries:] if len(sample) - n_queries >= _train_size(config, factory, n) else sample
        times["sample_s"] = time.perf_counter() - start

        index = _new_index(source.dim, factory, config.metric)
        gpu = _use_gpu(config.gpu)
        work, device = _to_gpu(index) if gpu else (index, "cpu")
        t = time.perf_counter()
        _train(work, train, factory)
        times["train_s"] = time.perf_counter() - t
        del sample, train

        t = time.perf_counter()
        exact = ExactKnn(queries, config.k, metric=config.metric, exclude=query_rows)
        key_chunks: list[pa.Array] = []
        bar = _progress(n, "index add", progress)
        for batch in source.batches(config.batch_rows):
            work.add(batch.vectors)
            exact.add(batch.vectors)
            key_chunks.append(batch.keys)
            bar.update(len(batch.vectors))
        bar.close()
        if exact.offset != n:
            raise UsageError(f"input changed while building: {n} rows in the first pass, {exact.offset} in the second")
        index = faiss.index_gpu_to_cpu(work) if work is not index else index
        all_keys = pa.concat_arrays(key_chunks).cast(pa.string())
        check_unique(all_keys)
        times["add_s"] = time.perf_counter() - t

        info: dict[str, Any] = {
            "kind": "faiss",
            "factory": factory,
            "family": family_of(factory),
            "metric": config.metric,
            "dim": source.dim,
            "n": n,
            "column": column,
            "source": source.describe(),
            "skipped_null_rows": source.skipped_null,
            "selection": choice.to_dict() if choice else {"factory": factory, "reason": "given"},
            "config": asdict(config),
            "device": device,
            "search_params": {},
            "mmrec_version": mmrec.__version__,
            "faiss_version": faiss.__version__,
        }
        built = cls(index, all_keys, info)
        times["tune_s"] = built._tune(queries, exact.result()[1], query_rows, config)
        times["build_s"] = time.perf_counter() - start
        info["times"] = {name: round(v, 3) for name, v in times.items()}
        info["adds"] = []
        return built

    def add(self, data: Any, *, column: str | None = None, keys: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
        """Add new vectors (Parquet shards or an array) with the column and dim of the index."""
        if self.mmapped or self.on_gpu:
            raise UsageError("this index was loaded memory-mapped or onto a GPU; load it with mmap=False, gpu=False to add")
        column = column or self.info["column"]
        source = open_source(data, column=column, keys=keys, key_offset=self.n, dim=self.dim)
        start, before = time.perf_counter(), self.n
        chunks: list[pa.Array] = [self.keys]
        bar = _progress(source.max_rows, "index add", progress)
        for batch in source.batches(self.info["config"].get("batch_rows", BATCH_ROWS)):
            chunks.append(batch.keys)
            bar.update(len(batch.vectors))
        bar.close()
        new_keys = pa.concat_arrays(chunks).cast(pa.string())
        if len(new_keys) == before:
            raise UsageError(f"nothing to add: no non-null vectors in column {column!r}")
        check_unique(new_keys)  # before touching the index, which cannot drop vectors again
        for batch in source.batches(self.info["config"].get("batch_rows", BATCH_ROWS)):
            self.index.add(batch.vectors)
        self.keys, self._row_of = new_keys, None
        event = {"rows": self.n - before, "source": source.describe(), "add_s": round(time.perf_counter() - start, 3)}
        self.info["n"] = self.n
        self.info["adds"].append(event)
        return event

    # -- files ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``ids.parquet`` and, last, ``index.json`` into ``folder``."""
        faiss = faiss_module()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        self.info["index_bytes"] = (folder / INDEX_FILE).stat().st_size
        self._write_common(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True, gpu: bool = False) -> FaissIndex:
        """Load an index folder; memory-mapped (read-only) where the index type allows."""
        faiss = faiss_module()
        folder = Path(folder)
        info = read_info(folder)
        if info.get("kind") != "faiss":
            raise UsageError(f"{folder} holds a {info.get('kind')!r} index, not a faiss one")
        path = str(folder / INDEX_FILE)
        index, mapped = None, False
        if mmap and not gpu:
            flag = faiss.IO_FLAG_MMAP if info["family"].startswith("ivf") else faiss.IO_FLAG_MMAP_IFC
            try:
                index, mapped = faiss.read_index(path, flag | faiss.IO_FLAG_READ_ONLY), True
            except RuntimeError:
                index = None
        if index is None:
            index = faiss.read_index(path)
        on_gpu = False
        if gpu and _use_gpu(True):
            index, device = _to_gpu(index)
            on_gpu = device.startswith("gpu")
        keys = cls._read_keys(folder, index.ntotal)
        return cls(index, keys, info, mmapped=mapped, on_gpu=on_gpu)
