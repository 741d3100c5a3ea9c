"""``mmrec tune``: hyper-parameter search over any job that trains through :func:`mmrec.training.fit`,
with Optuna (Akiba et al., KDD 2019; docs/papers.md): TPE sampler (Bergstra et al., NeurIPS 2011),
median pruning on the loop's per-epoch validation metric, SQLite storage in the output folder.

A search space (:class:`TuneJob`, one YAML file) names the job (``TUNE_JOBS``: retrieve, cdr, rank, toy),
its fixed arguments (``fixed``: data folder, pair, rank YAML), overrides of its config applied to every
trial (``base``), the metric to maximise among the per-epoch values the loop reports
(:func:`mmrec.training.epoch_callback`) and ``space``: dotted field path of the job's config dataclass ->
``{low, high}`` (+ ``log: true``, + ``step``; an ``int`` field samples integers) or ``{choices: [...]}``.
Every path and every extreme value is checked against the config before any trial runs.

Decisions the issue leaves open:

- A trial's value is its best epoch's metric (the jobs keep their best epoch). Pruning compares the
  value reported at each epoch with the median of earlier trials at that epoch (``MedianPruner``; off for
  the first ``pruner.startup`` trials and the first ``pruner.warmup`` epochs); a pruned trial stops
  after that epoch (:class:`~mmrec.training.StopTraining`) and keeps its folder.
- ``--trials N`` is the total of finished trials (complete, pruned, failed) in the study, so a rerun
  after a kill runs only what is missing. A trial left RUNNING by a killed process is marked FAIL
  (``interrupted``) and its parameters are tried again first; a lock file keeps two processes off
  one folder. The sampler is seeded with ``seed`` plus the trials already in the study, so a resumed
  run does not draw the same points again. ``--minutes``: no trial starts after that wall-clock budget.
- A trial whose loss turns non-finite (:class:`~mmrec.training.TrainingError`) is FAIL and the search
  goes on; any other error stops it.
- Validation only: the jobs tuned here read their training and validation data only, and a space
  whose fixed arguments, overrides or choices name a test file (a key ``test`` or a file named
  ``test*``) is refused.

Writes to ``out``: ``study.db``, ``trials/NNNN/`` (each trial's run folder), ``trials.parquet`` (one row a
trial: number, state, value, params, per-epoch values), ``best.json`` (the best trial's whole job config:
``mmrec retrieve train --config best.json`` / the ``command`` in ``tune.json``), ``tune.json`` (the
report), ``history.png`` and ``importance.png``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrec.config import apply_overrides, build_config, check_bounds, read_yaml
from mmrec.errors import UsageError
from mmrec.registry import Registry

_SPEC_KEYS = {"low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Target:
    """How the tuner runs one job: the config dataclass the space's paths name, the fixed arguments
    (``required`` and ``optional`` names), the default metric, and three functions: ``build(fixed,
    overrides)`` -> config, ``run(fixed, config, out)`` -> report, ``command(fixed, overrides, best)`` -> the
    command line that trains the best config again."""

    config: type
    required: tuple[str, ...]
    optional: tuple[str, ...]
    metric: str
    build: Callable[[dict[str, Any], dict[str, Any]], Any]
    run: Callable[[dict[str, Any], Any, Path], dict[str, Any]]
    command: Callable[[dict[str, Any], dict[str, Any], Path], str]
    paths: tuple[str, ...] = ()  # fixed arguments that are paths (relative ones are taken from the space file's folder)
    means: str = ""  # what the default metric is


TUNE_JOBS = Registry("tune job")


def _nested(cls: type, overrides: dict[str, Any], what: str) -> Any:
    """``cls`` with dotted-path ``overrides`` set on its defaults."""
    data = json.loads(json.dumps(dataclasses.asdict(cls()), default=list))
    return build_config(cls, apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in overrides.items()]), what)


def _value_text(value: Any) -> str:
    """A value as ``--set`` reads it back: JSON, or the bare string where that is not JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value, separators=(",", ":"))


def _sets(overrides: dict[str, Any]) -> str:
    import shlex

    return " ".join(f"--set {shlex.quote(f'{k}={_value_text(v)}')}" for k, v in overrides.items())


@TUNE_JOBS.register("retrieve")
def _retrieve() -> Target:
    from mmrec.pipelines.retrieve import TrainJob, train

    return Target(TrainJob, ("data",), (), "ndcg@10",
                  build=lambda fixed, o: _nested(TrainJob, o, "retrieve train"),
                  run=lambda fixed, config, out: train(fixed["data"], out, config, progress=False),
                  command=lambda fixed, o, best: f"mmrec retrieve train --data {fixed['data']} --config {best} --out RUN",
                  paths=("data",), means="validation NDCG@10 (leave-one-out, full ranking)")


@TUNE_JOBS.register("cdr")
def _cdr() -> Target:
    from mmrec.crossdomain.config import CDRConfig
    from mmrec.pipelines.cdr import train_cdr

    def command(fixed: dict[str, Any], o: dict[str, Any], best: Path) -> str:
        model = o.get("model", CDRConfig.model)
        target = f" --target {','.join(_names(fixed['target']))}" if fixed.get("target") else ""
        rest = {k: v for k, v in o.items() if k != "model"}
        return f"mmrec cdr train --data {fixed['data']} --pair {fixed['pair']} --model {model}{target} {_sets(rest)} --out RUN".replace("  ", " ")

    return Target(CDRConfig, ("data", "pair"), ("target",), "metric",
                  build=lambda fixed, o: build_config(CDRConfig, o, "cdr"),
                  run=lambda fixed, config, out: train_cdr(fixed["data"], fixed["pair"], out=out, config=config,
                                                           targets=_names(fixed.get("target", ()))),
                  command=command, paths=("data",), means="mean validation NDCG@10 over the target domains")


def _names(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v) if isinstance(value, str) else tuple(value)


@TUNE_JOBS.register("rank")
def _rank() -> Target:
    from mmrec.pipelines.rank import RankConfig, train
    from mmrec.rankers.config import load_config

    def build(fixed: dict[str, Any], o: dict[str, Any]) -> Any:
        config = load_config(fixed["config"], [f"{k}={json.dumps(v)}" for k, v in o.items()])
        if not config.data.validation_fraction:
            raise UsageError("rank: tuning needs validation rows: set data.validation_fraction > 0 (in the YAML or base)")
        return config

    return Target(RankConfig, ("config",), (), "metric", build=build,
                  run=lambda fixed, config, out: train(config, out=out, progress=False),
                  command=lambda fixed, o, best: f"mmrec rank train --config {fixed['config']} {_sets(o)} --out RUN",
                  paths=("config",), means="mean validation AUC over the tasks")


@TUNE_JOBS.register("toy")
def _toy() -> Target:
    from mmrec.synthetic.toy import ToyJob, train_toy

    return Target(ToyJob, (), (), "score", build=lambda fixed, o: build_config(ToyJob, o, "toy"),
                  run=lambda fixed, config, out: train_toy(out, config),
                  command=lambda fixed, o, best: "python -c 'from mmrec.synthetic.toy import train_toy; "
                                                 f"train_toy(\"RUN\", {json.dumps(o)})'")


@dataclass
class PrunerConfig:
    """Median pruning (Optuna's ``MedianPruner``)."""

    enabled: bool = field(default=True, metadata={"help": "prune trials below the median at an epoch"})
    startup: int = field(default=5, metadata={"help": "trials that finish before any is pruned", "min": 0})
    warmup: int = field(default=1, metadata={"help": "epochs of a trial never pruned", "min": 0})

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class TuneJob:
    """A search space (one YAML file maps onto it)."""

    job: str = field(metadata={"help": "the job tuned: retrieve, cdr, rank or toy"})
    space: dict[str, Any] = field(metadata={"help": "field path -> {low, high[, log][, step]} or {choices: [...]}"})
    fixed: dict[str, Any] = field(default_factory=dict, metadata={"help": "the job's fixed arguments (data, pair, config)"})
    base: dict[str, Any] = field(default_factory=dict, metadata={"help": "config overrides of every trial (dotted paths)"})
    metric: str | None = field(default=None, metadata={"help": "per-epoch validation value maximised; none = the job's"})
    trials: int = field(default=20, metadata={"help": "finished trials the study ends with", "min": 1})
    minutes: float | None = field(default=None, metadata={"help": "no trial starts after this many minutes"})
    seed: int = field(default=0, metadata={"help": "seed of the TPE sampler"})
    start: list[dict[str, Any]] = field(default_factory=list, metadata={
        "help": "points tried first, before the sampler draws (e.g. the job's defaults): space path -> value"})
    pruner: PrunerConfig = field(default_factory=PrunerConfig)

    def __post_init__(self) -> None:
        check_bounds(self)
        TUNE_JOBS.get(self.job)  # an unknown job lists the known ones
        if self.minutes is not None and self.minutes <= 0:
            raise UsageError(f"minutes must be > 0, got {self.minutes}")
        if not self.space:
            raise UsageError("space: no field to search")
        self.base = _flatten(self.base)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dotted keys kept as they are)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unwrap(hint: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint


def field_type(cls: type, path: str, what: str) -> Any:
    """The type of the field at dotted ``path`` of dataclass ``cls`` (Any below a dict or list field);
    an unknown field is one :class:`UsageError` naming the path, the closest known paths and the known
    fields at that level."""
    node: Any = cls
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return Any  # a dict (a ranker's config) or a list: checked when the config is built
        fields = {f.name: f for f in dataclasses.fields(node) if f.init}
        if part not in fields:
            prefix = ".".join(parts[:depth])
            close = [f"{prefix}.{n}" if prefix else n for n in difflib.get_close_matches(part, list(fields), n=2, cutoff=0.6)]
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UsageError(f"{what}: unknown field {path!r} of the {cls.__name__} config{hint} "
                             f"(known{' in ' + prefix if prefix else ''}: {', '.join(fields)})")
        node = _unwrap(typing.get_type_hints(node)[part])
    if dataclasses.is_dataclass(node):
        raise UsageError(f"{what}: {path!r} is a section of {cls.__name__}, not a field "
                         f"(its fields: {', '.join(f.name for f in dataclasses.fields(node))})")
    return node


@dataclass(frozen=True)
class Dimension:
    """One searched field: ``choices`` or a range ``[low, high]`` (``log`` scale, ``step``, integers)."""

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            encoded = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in self.choices]
            value = trial.suggest_categorical(self.path, encoded)
            return self.choices[encoded.index(value)]
        if self.integer:
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def encode(self, value: Any) -> Any:
        """``value`` as this dimension's Optuna parameter (for ``study.enqueue_trial``); one
        :class:`UsageError` when the space cannot draw it."""
        if self.choices:
            if value not in self.choices:
                raise UsageError(f"start: {self.path} = {value!r} is not one of the choices {list(self.choices)}")
            return json.dumps(value) if isinstance(value, (list, dict)) else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise UsageError(f"start: {self.path} = {value!r} is outside [{self.low}, {self.high}]")
        return int(value) if self.integer else float(value)

    def extremes(self) -> list[Any]:
        """The values every trial's config must accept (checked before any trial)."""
        return list(self.choices) if self.choices else [int(self.low) if self.integer else self.low,
                                                         int(self.high) if self.integer else self.high]


def dimension(path: str, spec: Any, hint: Any) -> Dimension:
    """A :class:`Dimension` from one space entry (``hint``: the field's type, Any when unknown)."""
    where = f"space: {path}"
    if not isinstance(spec, Mapping) or not spec:
        raise UsageError(f"{where}: expected {{low, high[, log][, step]}} or {{choices: [...]}}, got {spec!r}")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(_SPEC_KEYS))}")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise UsageError(f"{where}: choices go alone (no low, high, log or step)")
        if not isinstance(spec["choices"], (list, tuple)) or not spec["choices"]:
            raise UsageError(f"{where}: choices must be a non-empty list, got {spec['choices']!r}")
        return Dimension(path, choices=tuple(spec["choices"]))
    if "low" not in spec or "high" not in spec:
        raise UsageError(f"{where}: a range needs low and high")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise UsageError(f"{where}: {name} must be a number, got {value!r}")
    if not low < high:
        raise UsageError(f"{where}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise UsageError(f"{where}: step and log do not go together")
    if step is not None and step <= 0:
        raise UsageError(f"{where}: step must be > 0, got {step}")
    integer = hint is int or (hint is Any and all(isinstance(v, int) for v in (low, high) if v is not None)
                              and (step is None or isinstance(step, int)))
    if integer and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        raise UsageError(f"{where}: an integer field needs integer low, high and step")
    return Dimension(path, float(low) if not integer else low, float(high) if not integer else high, log, step, integer)


def _is_test_file(value: Any) -> bool:
    if isinstance(value, str):
        name = Path(value).name.lower()
        return name.startswith("test") and ("." in name or Path(value).is_file())
    if isinstance(value, (list, tuple)):
        return any(_is_test_file(v) for v in value)
    if isinstance(value, Mapping):
        return any(_is_test_file(v) for v in value.values())
    return False


def _refuse_test(section: str, entries: Mapping[str, Any]) -> None:
    """Tuning reads validation only: one :class:`UsageError` for an entry named ``test`` or naming a test file."""
    for key, value in entries.items():
        name = key.rsplit(".", 1)[-1].lower()
        if name == "test" or name.startswith("test_") or name.endswith("_test") or _is_test_file(value):
            raise UsageError(f"{section}: {key} names a test file ({value!r}); mmrec tune runs on validation only")


@dataclass
class Plan:
    """A checked space: the target, its fixed arguments, base overrides, dimensions and metric."""

    job: TuneJob
    target: Target
    fixed: dict[str, Any]
    dimensions: list[Dimension]
    metric: str
    start: list[dict[str, Any]] = field(default_factory=list)  # the space's start points as Optuna parameters

    def overrides(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.job.base, **params}


def plan(space: TuneJob | dict | str | Path, overrides: Sequence[str] = ()) -> Plan:
    """Check ``space`` (a :class:`TuneJob`, a dict or a YAML path; ``overrides``: ``KEY=VALUE`` dotted
    paths of it, ``fixed.pair=game_video``) before any trial: the job, its fixed arguments, every field
    path against the job's config, every range, that the config accepts each extreme value and choice,
    that nothing names a test file. One :class:`UsageError` otherwise."""
    folder = Path(space).expanduser().resolve().parent if isinstance(space, (str, Path)) else Path.cwd()
    if isinstance(space, (str, Path)):
        space = read_yaml(space, "search space")
    if overrides:
        if isinstance(space, TuneJob):
            space = dataclasses.asdict(space)
        space = apply_overrides(json.loads(json.dumps(space)), overrides)
    job = build_config(TuneJob, space, "")
    target: Target = TUNE_JOBS.get(job.job)()
    _refuse_test("fixed", job.fixed)
    _refuse_test("base", job.base)
    known = target.required + target.optional
    for key in job.fixed:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise UsageError(f"fixed: unknown argument {key!r} of job {job.job}{'; did you mean ' + close[0] + '?' if close else ''} "
                             f"(known: {', '.join(known) or 'none'})")
    missing = [k for k in target.required if k not in job.fixed]
    if missing:
        raise UsageError(f"fixed: job {job.job} needs {', '.join(missing)}")
    fixed = {k: str((folder / Path(v).expanduser()).resolve()) if k in target.paths and isinstance(v, str) else v
             for k, v in job.fixed.items()}
    for path in job.base:
        field_type(target.config, path, "base")
    dimensions = []
    for path, spec in job.space.items():
        dim = dimension(path, spec, field_type(target.config, path, "space"))
        _refuse_test("space", {path: list(dim.choices)})
        dimensions.append(dim)
    by_path = {d.path: d for d in dimensions}
    start = []
    for point in job.start:
        if not isinstance(point, Mapping) or not point:
            raise UsageError(f"start: each point is a mapping of space paths to values, got {point!r}")
        unknown = [path for path in _flatten(point) if path not in by_path]
        if unknown:
            raise UsageError(f"start: {unknown[0]!r} is not a path of the space (known: {', '.join(by_path)})")
        start.append({path: by_path[path].encode(value) for path, value in _flatten(point).items()})
    clash = sorted(set(job.base) & set(by_path))
    if clash:
        raise UsageError(f"base and space both set {clash[0]!r}; keep it in one of them")
    for dim in dimensions:
        for value in dim.extremes():
            try:
                target.build(fixed, {**job.base, dim.path: value})
            except UsageError as err:
                raise UsageError(f"space: {dim.path} = {value!r} is refused by the job's config: {err}") from None
    return Plan(job, target, fixed, dimensions, job.metric or target.metric, start)


def tune(space: TuneJob | dict | str | Path, out: str | Path, *, trials: int | None = None, minutes: float | None = None,
         seed: int | None = None, overrides: Sequence[str] = (), progress: bool = False) -> dict[str, Any]:
    """Search ``space`` (see the module docstring; ``overrides`` as in :func:`plan`), writing into ``out``;
    ``trials`` / ``minutes`` / ``seed`` replace the space's. Returns the report (also ``out/tune.json``)."""
    import fcntl

    p = plan(space, overrides)
    job = dataclasses.replace(p.job, trials=trials or p.job.trials, minutes=minutes if minutes is not None else p.job.minutes,
                              seed=p.job.seed if seed is None else seed)
    if job.trials < 1 or (job.minutes is not None and job.minutes <= 0):
        raise UsageError(f"trials must be >= 1 and minutes > 0, got {job.trials} and {job.minutes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".tune.lock", "w") as lock:  # held for the whole search; the OS frees it on a kill
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{out} is being tuned by another process; wait for it or use another --out") from None
        return _search(p, job, out, progress)


def _search(p: Plan, job: TuneJob, out: Path, progress: bool) -> dict[str, Any]:
    import logging

    import optuna

    from mmrec.io import write_json
    from mmrec.training import TrainingError

    optuna.logging.set_verbosity(logging.ERROR)  # a failed trial's traceback: its row in trials.parquet says why
    started = time.perf_counter()
    signature = {"job": job.job, "fixed": p.fixed, "base": job.base, "metric": p.metric,
                 "space": {k: job.space[k] for k in sorted(job.space)}}
    storage = optuna.storages.RDBStorage(f"sqlite:///{out.resolve() / 'study.db'}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
    existing = optuna.load_study(study_name="tune", storage=storage) if "tune" in [
        s.study_name for s in optuna.get_all_study_summaries(storage)] else None
    if existing is not None and existing.user_attrs.get("signature") is None and not existing.trials:
        existing = None  # killed between creating the study and signing it
    if existing is not None and existing.user_attrs.get("signature") != json.loads(json.dumps(signature)):
        raise UsageError(f"{out} holds a study of another search space (job, fixed, base, metric or space differ); "
                         "use another --out")
    interrupted = _fail_interrupted(existing, storage, len(p.dimensions)) if existing is not None else 0
    before = existing.trials if existing is not None else []
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=job.pruner.startup, n_warmup_steps=job.pruner.warmup)
              if job.pruner.enabled else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name="tune", storage=storage, load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=job.seed + len(before)), pruner=pruner)
    if existing is None:
        study.set_user_attr("signature", signature)
        for params in p.start:  # a new study only: a resumed one has queued them already
            study.enqueue_trial(params, user_attrs={"start": True})
    remaining = job.trials - _finished(study)
    bar = None
    if progress and remaining > 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=remaining, desc=f"tune {job.job}", unit="trial")
    if remaining > 0:
        study.optimize(_objective(p, out / "trials"), n_trials=remaining, timeout=None if job.minutes is None else 60 * job.minutes,
                       catch=(TrainingError, _Infeasible),
                       callbacks=[lambda s, t: bar.update(1)] if bar is not None else None)
    if bar is not None:
        bar.close()
    report = _write(study, p, job, out, resumed=len(before), interrupted=interrupted)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "tune.json", report)
    return report


def _finished(study: Any) -> int:
    """Trials that count towards the budget: complete, pruned, and failed ones that were not interrupted."""
    from optuna.trial import TrialState

    return sum(1 for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")))


def _fail_interrupted(study: Any, storage: Any, n_params: int) -> int:
    """Mark trials a killed process left RUNNING as FAIL (``interrupted``) and queue their parameters again."""
    from optuna.trial import TrialState

    stale = [t for t in study.trials if t.state == TrialState.RUNNING]
    for t in stale:
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if len(t.params) == n_params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(stale)


class _Infeasible(Exception):  # noqa: N818
    """A sampled combination the job's config refuses: that trial fails, the search goes on."""


def _objective(p: Plan, folder: Path) -> Callable[[Any], float]:
    import optuna

    from mmrec.training import StopTraining, epoch_callback

    def objective(trial: optuna.Trial) -> float:
        params = {d.path: d.suggest(trial) for d in p.dimensions}
        values: list[float] = []
        pruned: list[int] = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            if p.metric not in metrics:
                raise UsageError(f"metric {p.metric!r} is not among the per-epoch values of job {p.job.job}: "
                                 f"{', '.join(sorted(metrics))}")
            value = metrics[p.metric]
            trial.report(value, len(values))
            values.append(value)
            if trial.should_prune():
                pruned.append(len(values))
                raise StopTraining

        out = folder / f"{trial.number:04d}"
        trial.set_user_attr("out", str(out))
        try:
            try:
                config = p.target.build(p.fixed, p.overrides(params))
            except UsageError as err:  # a combination the config refuses (each value alone passed plan())
                raise _Infeasible(str(err)) from None
            with epoch_callback(on_epoch):
                p.target.run(p.fixed, config, out)
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            raise
        trial.set_user_attr("values", values)
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {pruned[0]}")
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            raise UsageError(f"job {p.job.job} reported no validation value per epoch (does it hold out validation data?)")
        return max(finite)

    return objective


def _write(study: Any, p: Plan, job: TuneJob, out: Path, *, resumed: int, interrupted: int) -> dict[str, Any]:
    """trials.parquet, best.json, the plots; returns the report."""
    from optuna.trial import TrialState

    from mmrec.io import write_json

    trials = study.trials
    _write_trials(trials, [d.path for d in p.dimensions], out / "trials.parquet")
    states = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState if any(t.state == s for t in trials)}
    report: dict[str, Any] = {"job": job.job, "metric": p.metric, "metric_means": p.target.means if p.metric == p.target.metric else "",
                              "trials": len(trials), "states": states,
                              "resumed_with": resumed, "interrupted_marked_failed": interrupted,
                              "files": {"study": str(out / "study.db"), "trials": str(out / "trials.parquet")}}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        params = {d.path: _decoded(d, best.params[d.path]) for d in p.dimensions}
        overrides = p.overrides(params)
        config = p.target.build(p.fixed, overrides)
        write_json(out / "best.json", json.loads(json.dumps(dataclasses.asdict(config), default=list)))
        report["best"] = {"trial": best.number, "value": best.value, "params": params, "overrides": overrides,
                          "out": best.user_attrs.get("out"),
                          "config": str(out / "best.json"), "command": p.target.command(p.fixed, overrides, out / "best.json")}
        report["files"].update(best=str(out / "best.json"), **_plots(study, out))
    return report


def _decoded(d: Dimension, value: Any) -> Any:
    if d.choices:
        encoded = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in d.choices]
        return d.choices[encoded.index(value)]
    return value


def _write_trials(trials: list[Any], paths: list[str], target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.io import atomic_path

    def seconds(t: Any) -> float | None:
        return (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None

    columns: dict[str, Any] = {
        "number": pa.array([t.number for t in trials], pa.int32()),
        "state": pa.array([t.state.name.lower() for t in trials], pa.string()),
        "value": pa.array([t.value for t in trials], pa.float64()),
        "epochs": pa.array([len(t.intermediate_values) for t in trials], pa.int32()),
        "values": pa.array([[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in trials],
                           pa.list_(pa.float64())),
        "seconds": pa.array([seconds(t) for t in trials], pa.float64()),
        "retry_of": pa.array([t.user_attrs.get("retry_of") for t in trials], pa.int32()),
        "out": pa.array([t.user_attrs.get("out") for t in trials], pa.string()),
        "error": pa.array([t.user_attrs.get("error") for t in trials], pa.string()),
    }
    for path in paths:
        values = [t.params.get(path) for t in trials]
        kinds = {type(v) for v in values if v is not None}
        columns[f"param.{path}"] = pa.array([None if v is None else (v if kinds <= {int, float, bool} else str(v)) for v in values])
    with atomic_path(target) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _plots(study: Any, out: Path) -> dict[str, str]:
    """history.png (every trial's value and the best so far) and importance.png (fANOVA parameter
    importance; a note on the figure when fewer than two trials completed)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.importance import FanovaImportanceEvaluator

    from mmrec.io import atomic_path

    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are marked experimental
        importance = FanovaImportanceEvaluator(n_trees=16, seed=0)  # optuna's default has 64 trees: seconds on a busy core
        for name, draw in (("history", vis.plot_optimization_history),
                           ("importance", lambda s: vis.plot_param_importances(s, evaluator=importance))):
            try:
                fig = draw(study).figure
            except (ValueError, RuntimeError) as err:  # importance of one trial, or of one value per parameter
                fig, ax = plt.subplots(figsize=(6, 3))
                ax.text(0.5, 0.5, f"no {name} plot: {err}", ha="center", va="center", wrap=True)
                ax.set_axis_off()
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            with atomic_path(out / f"{name}.png") as tmp:
                fig.savefig(tmp, format="png", dpi=100)
            plt.close(fig)
            files[name] = str(out / f"{name}.png")
    return files
