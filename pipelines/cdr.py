"""``mmrec cdr train|evaluate|export``: cross-domain runs from pair folders or a Parquet log to run folders.

``train_cdr(DATA, PAIR, config=CDRConfig(model=...), out=RUN)`` reads the pair (:mod:`mmrec.crossdomain.files`),
trains with :func:`mmrec.crossdomain.train_model` (evaluation every epoch on the held-out ``valid.txt``
of the target domains, early stopping, best epoch kept) and writes a run folder (:mod:`mmrec.runs`, kind
``cdr``): ``config.json`` (the CDRConfig; the pair, domain names and sizes), ``model.safetensors``
(weights plus the training interactions the histories are rebuilt from and the fixed item content
tables), ``vocab.json`` (the raw ids of a Parquet log) and ``metrics.json``.
``evaluate_run(RUN, FILE)`` scores any ``user<TAB>item`` file of one domain of the pair
with the same protocol; ``export_user_features(RUN, OUT, target=...)`` writes every user's target-domain
vector in the extract layout, keyed by the raw user id, for the rankers' user-side features.

Each command's options are a job dataclass here (:class:`CDRTrainJob`, :class:`CDREvaluateJob`,
:class:`CDRExportJob`) plus the model's :class:`~mmrec.crossdomain.config.CDRConfig`; the CLI builds its
flags from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec import runs
from mmrec.config import apply_overrides as set_overrides
from mmrec.config import build_config
from mmrec.crossdomain.config import CDRConfig
from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.io import output_folder
from mmrec.threads import announce_threads

if TYPE_CHECKING:  # torch and the models load when a job runs, not when the CLI builds its parser
    import torch

    from mmrec.crossdomain.data import CDRData


@dataclass
class CDRTrainJob:
    """Where ``mmrec cdr train`` reads and writes."""

    data: str = field(metadata={"help": "folder holding the pair's two folders (e.g. amazon-cdr/), or a Parquet log"})
    pair: str = field(metadata={"help": "sport_cloth, game_video, or any a_b with folders a_b/ and b_a/ (a log: its two domains)"})
    out: str | None = field(default=None, metadata={"help": "run folder to write"})
    target: tuple[str, ...] = field(default=(), metadata={
        "help": "domain name(s) to evaluate and select on, comma-separated; none = every domain with a valid.txt"})


@dataclass
class CDREvaluateJob:
    """What ``mmrec cdr evaluate`` scores."""

    run: str = field(metadata={"help": "run folder written by mmrec cdr train"})
    test: str = field(metadata={"help": "user<TAB>item file (the run's id spaces, or raw ids of a Parquet log)"})
    target: str | None = field(default=None, metadata={"help": "domain of the file; none = the domain whose folder holds it"})
    seed: int | None = field(default=None, metadata={"help": "seed of the 999 negatives; none = the run's eval_seed"})


@dataclass
class CDRExportJob:
    """What ``mmrec cdr export`` writes."""

    run: str = field(metadata={"help": "run folder written by mmrec cdr train"})
    out: str = field(metadata={"help": "output folder (emb-users.parquet + manifest.json, the extract layout)"})
    target: str = field(metadata={"help": "domain whose user vectors to write"})
    batch: int = field(default=4096, metadata={"help": "users per forward pass"})

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise UsageError(f"batch must be >= 1, got {self.batch}")


def apply_overrides(config: CDRConfig | dict | None, overrides: Sequence[str] = ()) -> CDRConfig:
    """``config`` with ``KEY=VALUE`` overrides (:func:`mmrec.config.apply_overrides`: values parsed as JSON
    when they parse, else kept as strings); an unknown key is one error naming it and the known fields."""
    config = build_config(CDRConfig, config, "cdr")
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return build_config(CDRConfig, set_overrides(base, overrides), "cdr")


def train_cdr(data: str | Path | CDRData, pair: str, *, out: str | Path | None = None,
              config: CDRConfig | dict | str | None = None, targets: Sequence[str] = (),
              progress: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on both domains of ``pair`` and evaluate on the targets' held-out files.

    ``data``: a folder of pair folders, a Parquet log or a :class:`CDRData`; ``config``: a CDRConfig, a
    dict or a YAML path; ``targets``: domain names to evaluate and select on (default: every domain with
    a ``valid.txt``). Returns the report (also written to ``out/metrics.json`` when ``out`` is given).
    Under ``torchrun`` the model trains with DDP (gloo on CPU, NCCL on CUDA): ``batch_size`` is the global batch, each rank
    trains on its share of every batch, all evaluate alike; rank 0 writes the run folder.
    """
    from mmrec.crossdomain.data import CDRData
    from mmrec.crossdomain.files import load_data, read_item_embeddings
    from mmrec.crossdomain.train import train_model
    from mmrec.training import distributed, on_rank0, world

    config = build_config(CDRConfig, config, "cdr")
    with output_folder(out) if out is not None else contextlib.nullcontext():  # unwritable: fails before training
        if not isinstance(data, CDRData):
            data = load_data(data, pair, tasks=config.tasks, item_emb=config.item_emb, emb_column=config.emb_column)
        elif config.item_emb and data.item_content is None:
            data = dataclasses.replace(data, item_content=tuple(read_item_embeddings(
                config.item_emb, tuple(d.name for d in data.domains), tuple(d.n_items for d in data.domains),
                column=config.emb_column, vocab=tuple(d.item_vocab for d in data.domains))))
        if progress:  # crossdomain.train_model runs with config.threads
            announce_threads(config.threads, config.threads)
        with distributed(resolve_device(config.device)):
            model, report = train_model(data, config, targets=tuple(targets), progress=progress and world()[0] == 0)
            report = {"model": report.pop("model"), "pair": pair, **report}
            if out is not None:
                on_rank0(save_run, out, model, config, data, pair, report)
    return report


def _data_info(data: CDRData) -> dict[str, Any]:
    return {"n_users": data.n_users, "shared_users": data.shared_users, "tasks": list(data.tasks),
            "domains": [{"name": d.name, "folder": d.folder, "n_items": d.n_items} for d in data.domains]}


def save_run(out: str | Path, model: torch.nn.Module, config: CDRConfig, data: CDRData, pair: str,
             report: dict[str, Any]) -> Path:
    """Write a run folder (:func:`mmrec.runs.save_run`, kind ``cdr``): ``config.json`` (``model``: the CDRConfig;
    ``job``: the pair and the data's sizes and domains), ``model.safetensors`` (weights + the training
    interactions), ``vocab.json`` (the raw user and item ids of a Parquet log, null for pair files), ``metrics.json``."""
    import torch

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for d, dom in enumerate(data.domains):
        tensors[f"train.{d}"] = torch.as_tensor(dom.train).contiguous()
        if dom.labels is not None:
            tensors[f"labels.{d}"] = torch.as_tensor(dom.labels).contiguous()
    tensors.update({f"extra.{k}": v.contiguous() for k, v in getattr(model, "extra_tensors", dict)().items()})
    vocab = {"users": data.user_vocab, "items": [d.item_vocab for d in data.domains]}
    return runs.save_run(out, dataclasses.asdict(config), {"pair": pair, "data": _data_info(data)}, tensors, vocab, report, kind="cdr")


def load_run(run: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CDRConfig, CDRData]:
    """Rebuild a saved run's model (eval mode, on ``device``), config and training data (:func:`mmrec.runs.load_run`, kind ``cdr``)."""
    import torch

    from mmrec.crossdomain.data import CDRData, Domain
    from mmrec.crossdomain.train import build_model

    saved, tensors, vocab, _ = runs.load_run(run, kind="cdr")
    raw = dict(saved["model"])
    if "model.residual.weight" in tensors:  # a run from before the gate: its one weight per domain, w = bias
        raw.setdefault("residual_gate", "global")
        w = tensors.pop("model.residual.weight").clamp(min=1e-4)
        tensors["model.residual.bias"] = w + torch.log(-torch.expm1(-w))  # softplus(bias) = w
    config = build_config(CDRConfig, raw, f"{run}/config.json")
    info = saved["job"]["data"]
    domains = []
    for d, dom in enumerate(info["domains"]):
        labels = tensors.get(f"labels.{d}")
        domains.append(Domain(name=dom["name"], folder=dom["folder"], n_items=dom["n_items"],
                              train=tensors[f"train.{d}"].numpy(), labels=None if labels is None else labels.numpy(),
                              item_vocab=vocab["items"][d]))
    data = CDRData(domains=(domains[0], domains[1]), n_users=info["n_users"], tasks=tuple(info["tasks"]),
                   user_vocab=vocab["users"], shared_users=info.get("shared_users"))
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    model = build_model(config, data, state=extra)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.to(resolve_device(device)).eval(), config, data


def evaluate_run(run: str | Path, test: str | Path, *, target: str | None = None, seed: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate a saved run on a ``user<TAB>item`` file of one domain (``target``; by default the domain
    whose folder name is the file's parent folder), its model on ``device``."""
    from mmrec.crossdomain.data import domain_histories
    from mmrec.crossdomain.evaluate import HeldoutEvaluator
    from mmrec.crossdomain.files import read_heldout

    model, config, data = load_run(run, device=device)
    test = Path(test)
    if target is None:
        folders = {dom.folder: dom.name for dom in data.domains}
        if test.parent.name not in folders:
            raise UsageError(f"cannot tell the target domain of {test}; pass --target "
                             f"{' or '.join(d.name for d in data.domains)}")
        target = folders[test.parent.name]
    d = data.domain_index(target)
    heldout = read_heldout(test, data, d)
    bad = (heldout[:, 0] >= data.n_users) | (heldout[:, 1] >= data.domains[d].n_items)
    if bad.any():
        raise UsageError(f"{test}: {int(bad.sum())} pair(s) with ids outside the run's vocabulary "
                         f"({data.n_users} users, {data.domains[d].n_items} items in {target})")
    hist = domain_histories(data, config.maxlen)
    evaluator = HeldoutEvaluator(data, hist, {d: heldout}, config.eval_seed if seed is None else seed)
    metrics = evaluator(model)
    return {"run": str(run), "test": str(test), "model": config.model, "target": target, "metrics": metrics[target]}


def user_vectors(model: torch.nn.Module, config: CDRConfig, data: CDRData, domain: int, users: np.ndarray, *,
                 batch: int = 4096) -> np.ndarray:
    """Target-domain user vectors ``(len(users), D)`` float32 of user indices ``users`` (eval mode, on the
    model's device); a user cold in ``domain`` gets its cross-domain vector."""
    import torch

    from mmrec.crossdomain.base import device_of
    from mmrec.crossdomain.data import domain_histories, other_histories

    hist = domain_histories(data, config.maxlen)
    cross = other_histories(data, hist)
    device = device_of(model)
    vectors = []
    with torch.no_grad():
        tables = model.item_tables()
        for start in range(0, len(users), batch):
            u = torch.as_tensor(users[start:start + batch])
            own, other, u = hist[domain][u].to(device), cross[1 - domain][u].to(device), u.to(device)
            vectors.append(model.user_vectors(domain, u, own, other, (own < 0).all(1), tables).cpu().numpy())
    return np.concatenate(vectors).astype(np.float32)


def export_user_features(run: str | Path, out: str | Path, *, target: str, users: np.ndarray | None = None,
                         batch: int = 4096) -> dict[str, Any]:
    """Write target-domain user vectors of a run to the folder ``out`` in the extract layout
    (``emb-users.parquet``: ``key`` = the raw user id, ``fused`` = the vector; ``manifest.json``).

    ``users``: user indices of the run's data (default: all). Raw ids are those of the Parquet log, or the
    integer ids of the pair files. ``mmrec.store`` / ``mmrec.rankers.features.EmbeddingProvider`` read the folder,
    so a ranker can take the vectors as a user-side feature keyed by user id. Cold-start users get their
    cross-domain vector. Returns the manifest plus ``target``, ``model``, ``users``, ``dim``, ``out``.
    """
    from mmrec.store import write_embeddings

    model, config, data = load_run(run)
    d = data.domain_index(target)
    users = np.arange(data.n_users) if users is None else np.asarray(users, np.int64)
    if len(users) == 0:
        raise UsageError("no users to export")
    if users.min() < 0 or users.max() >= data.n_users:
        raise UsageError(f"user indices must be in [0, {data.n_users}), got {int(users.min())}..{int(users.max())}")
    with output_folder(out):
        vectors = user_vectors(model, config, data, d, users, batch=batch)
        keys = data.raw_user_ids(users)
        info = {"model": f"mmrec.crossdomain.{config.model}", "run": str(run), "target": target, "key": "user_id",
                "dim": int(vectors.shape[1])}
        manifest = write_embeddings(out, {"users": keys}, dict(zip(keys, vectors)), "fused", info=info)
    return {**manifest, "users": len(keys), "out": str(out)}


def format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A markdown table of metrics rows ``(label, metrics)``."""
    cols = ["MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10"]
    lines = ["| target | " + " | ".join(cols) + " | n |", "|---|" + "---:|" * (len(cols) + 1)]
    for label, m in rows:
        lines.append(f"| {label} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + f" | {m['n']} |")
    return "\n".join(lines)


__all__ = ["CDREvaluateJob", "CDRExportJob", "CDRTrainJob", "apply_overrides", "evaluate_run",
           "export_user_features", "format_table", "load_run", "save_run", "train_cdr", "user_vectors"]
