"""``RankConfig``: what ``mmrec rank train`` reads, a dataclass tree mapped one to one from YAML.

    data:                       # the behaviour log and how to read it
      log: behaviour.parquet
      tasks: [click, like, follow]
      history: {length: 20, positive: click}
    features:                   # item content, QARM code cross features, user vectors
      - {name: content, kind: embeddings, path: emb, column: fused, dim: 32}
      - {name: sid, kind: codes, path: codes/codes.parquet, levels: 3}
      - {name: sid_x, kind: code_cross, path: codes/codes.parquet, levels: 3}
      - {name: cdr, kind: user_dense, path: cdr-users.parquet, key_format: "user-{}"}
    model: {name: pepnet, embedding_dim: 16, tower: [64, 32]}   # any field of the ranker's config
    optim: {lr: 0.001, batch_size: 512, epochs: 3}
    out: runs/pepnet

Every section is checked when the config is built (unknown fields, types, ranges, task names,
duplicate feature names) and fails with one line that names the field. Relative paths in a YAML
file are taken relative to that file's folder. A feature of kind ``embeddings`` with ``spec`` and
``source`` also encodes items missing from the cache on the fly (an encoder behind an LRU cache).

Feature kinds: ``embeddings`` / ``encoder`` (item vectors), ``codes`` (item codes of ``mmrec
quantize``, embedded per level into the item), ``code_cross`` (the same codes file, turned into
QARM's cross features of the candidate against the row's history:
:class:`mmrec.quantization.CodeCrossFeatures`; needs a history) and ``user_dense`` (one vector per
user, keyed by raw user id through ``key_format``: the ``key, fused`` file ``mmrec cdr export`` writes
with ``key_format: "user-{}"``, or ``mmrec graph export``'s file with ``key_column: node_id``,
``column: vector``, ``node_type: user``; users missing from it get zeros, counted as misses).
``data.validation_fraction`` holds out the latest training rows; with ``optim.patience`` the run
stops early on their mean AUC over the tasks and keeps the best epoch's weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrec.config import apply_overrides, from_dict, read_yaml
from mmrec.errors import UsageError
from mmrec.rankers.base import RANKERS, RankerConfig
from mmrec.rankers.features.collate import AUTHOR_ID, ITEM_ID, USER_ID

FEATURE_KINDS = ("embeddings", "codes", "encoder", "code_cross", "user_dense")
OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")


@dataclass
class HistoryConfig:
    """Each row's history: the items of the same user's latest ``length`` earlier rows whose
    ``positive`` label is 1 (``length`` 0 = no history)."""

    length: int = 20
    positive: str = "click"

    def __post_init__(self) -> None:
        if self.length < 0:
            raise UsageError(f"length must be >= 0, got {self.length}")


@dataclass
class DataConfig:
    """The behaviour log: its file, label columns (``tasks``), id columns and the time split.

    ``item_key``: a ``str.format`` pattern turning a log item id into the key of the feature files
    (``"item-{:06d}"``: 42 -> ``item-000042``, the keys of ``mmrec sample-data``; ``"{}"`` = as is).
    ``author``: None when the log has no author column. ``sparse``: further categorical columns.
    """

    log: str
    tasks: list[str]
    user: str = "user_id"
    item: str = "item_id"
    author: str | None = "author_id"
    domain: str = "domain"
    ts: str = "ts"
    sparse: list[str] = field(default_factory=list)
    item_key: str = "item-{:06d}"
    test_fraction: float = 0.2
    validation_fraction: float = 0.0
    history: HistoryConfig = field(default_factory=HistoryConfig)

    def __post_init__(self) -> None:
        if isinstance(self.history, dict):
            self.history = from_dict(HistoryConfig, self.history, "data.history")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise UsageError(f"tasks must be a non-empty list of distinct label columns, got {self.tasks}")
        if not 0.0 < self.test_fraction < 1.0:
            raise UsageError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0 - self.test_fraction:
            raise UsageError(f"validation_fraction must be in [0, 1 - test_fraction), got {self.validation_fraction}")
        if self.history.length and self.history.positive not in self.tasks:
            raise UsageError(f"history.positive {self.history.positive!r} must be one of the tasks {self.tasks}")
        reserved = {USER_ID, ITEM_ID, AUTHOR_ID}
        clash = [c for c in self.sparse if c in reserved or c in (self.user, self.item, self.author, self.domain)]
        if clash:
            raise UsageError(f"sparse column {clash[0]!r} is already an id or domain column")

    def sparse_fields(self) -> list[str]:
        """Names of the sparse fields the batches will hold."""
        return [USER_ID, ITEM_ID, *([AUTHOR_ID] if self.author else []), *self.sparse]


@dataclass
class FeatureConfig:
    """One feature (see the module docstring); ``dim`` / ``levels`` are checked at load.

    ``key_column`` / ``key_format`` / ``node_type``: for ``user_dense`` only, the key column of the
    file, the ``str.format`` pattern from a raw user id to that key, and the ``node_type`` rows to
    keep (graph exports hold users and authors in one file)."""

    name: str
    kind: str
    path: str | None = None
    column: str = "fused"
    dim: int | None = None
    levels: int | None = None
    spec: str | None = None
    weights: str | None = None
    source: str | None = None
    source_column: str = "text"
    cache_size: int = 4096
    key_column: str = "key"
    key_format: str = "{}"
    node_type: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise UsageError("a feature needs a name")
        if self.kind not in FEATURE_KINDS:
            raise UsageError(f"kind must be one of {', '.join(FEATURE_KINDS)}, got {self.kind!r}")
        if self.kind in ("embeddings", "codes", "code_cross", "user_dense") and not self.path:
            raise UsageError(f"a feature of kind {self.kind!r} needs path")
        if self.kind == "encoder" and not (self.spec and self.source):
            raise UsageError("a feature of kind 'encoder' needs spec and source")
        if self.kind == "embeddings" and bool(self.spec) != bool(self.source):
            raise UsageError("to encode items missing from the cache, give both spec and source")
        if (self.dim is not None and self.dim < 1) or (self.levels is not None and self.levels < 1) or self.cache_size < 0:
            raise UsageError(f"dim and levels must be >= 1 and cache_size >= 0, got {self.dim}, {self.levels}, {self.cache_size}")


@dataclass
class OptimConfig:
    """Optimiser and loop: ``device`` auto|cpu|cuda|cuda:N; ``amp`` auto (on with CUDA) | on | off.

    ``threads``: torch CPU threads during the run (None = torch's default); 1 is fastest for
    these small models on a CPU other jobs also use. ``patience`` / ``min_delta``: early stopping on
    the validation rows (``data.validation_fraction``), as :class:`mmrec.training.LoopConfig` has them.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 512
    eval_batch_size: int = 8192
    epochs: int = 3
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    task_weights: dict[str, float] | None = None
    threads: int | None = None
    patience: int | None = None
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be >= 1, got {self.patience}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise UsageError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.epochs < 1:
            raise UsageError(f"batch sizes and epochs must be >= 1, got {self.batch_size}, {self.eval_batch_size}, {self.epochs}")
        if self.amp not in ("auto", "on", "off"):
            raise UsageError(f"amp must be auto, on or off, got {self.amp!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UsageError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class RankConfig:
    """The whole run; ``model`` is the chosen ranker's config (a dict with ``name`` is resolved)."""

    data: DataConfig
    model: dict[str, Any] | RankerConfig
    features: list[FeatureConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str | None = None

    def __post_init__(self) -> None:
        self.data = from_dict(DataConfig, self.data, "data")
        self.optim = from_dict(OptimConfig, self.optim, "optim")
        self.features = [from_dict(FeatureConfig, f, f"features[{i}]") for i, f in enumerate(self.features)]
        if not isinstance(self.model, RankerConfig):
            model = dict(self.model or {})
            if "name" not in model:
                raise UsageError(f"model: missing field 'name'; rankers: {', '.join(RANKERS.names())}")
            self.model = RANKERS.get(model["name"]).coerce_config(model)
        self.model.check_inputs(self.data.tasks, self.data.sparse_fields())
        names = [f.name for f in self.features]
        for name in names:
            if names.count(name) > 1 or name in self.data.sparse_fields():
                raise UsageError(f"features: name {name!r} is used twice (features and sparse fields need distinct names)")
        if self.optim.patience is not None and not self.data.validation_fraction:
            raise UsageError("optim.patience needs validation rows: set data.validation_fraction > 0")
        if not self.data.history.length and any(f.kind == "code_cross" for f in self.features):
            raise UsageError("a code_cross feature compares the candidate with the history: set data.history.length > 0")
        unknown = set(self.optim.task_weights or {}) - set(self.data.tasks)
        if unknown:
            raise UsageError(f"optim.task_weights: {sorted(unknown)[0]!r} is not a task; tasks: {', '.join(self.data.tasks)}")

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _resolve(path: str | None, base: Path) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str(base / path)


def load_config(source: RankConfig | dict[str, Any] | str | Path, overrides: Sequence[str] = ()) -> RankConfig:
    """A :class:`RankConfig` from itself, a dict, or a YAML file (relative paths from its folder),
    with ``overrides`` (``KEY=VALUE``, dotted paths: :func:`apply_overrides`) applied last; relative
    paths in overrides stay relative to the working directory."""
    if isinstance(source, RankConfig):
        if not overrides:
            return source
        source = source.as_dict()
    if isinstance(source, (str, Path)):
        path = Path(source)
        data = read_yaml(path)
        base = path.resolve().parent
        if isinstance(data.get("data"), dict) and "log" in data["data"]:
            data["data"]["log"] = _resolve(data["data"]["log"], base)
        for feature in data.get("features") or []:
            if isinstance(feature, dict):
                for key in ("path", "source", "weights"):
                    if isinstance(feature.get(key), str):
                        feature[key] = _resolve(feature[key], base)
        if isinstance(data.get("out"), str):
            data["out"] = _resolve(data["out"], base)
        source = data
    if not isinstance(source, dict):
        raise UsageError(f"config must be a RankConfig, a dict or a YAML path, got {type(source).__name__}")
    if overrides:
        source = apply_overrides(copy.deepcopy(source), overrides)
    return from_dict(RankConfig, source, "")
