"""Train and evaluate cross-domain models on a pair; save and reload runs.

``train_cdr(data, pair, config=CDRConfig(model=...), out=RUN)`` trains on both domains' ``train.txt`` (batches of one
domain at a time, the two domains interleaved at random), evaluates every epoch on the held-out
files (``valid.txt``) of the target domains, stops after ``patience`` epochs without a better mean
NDCG@10 and keeps the best epoch's weights ([I] model selection on valid, as the issue allows; no
test split is read). A run folder holds ``config.json``, ``model.safetensors`` (weights plus the
training histories and graphs the model needs to score users later), ``data.json`` (domain names,
sizes, vocabularies of a Parquet log) and ``metrics.json``. ``evaluate_run(RUN, FILE)`` scores any
``user<TAB>item`` file of one domain of the pair with the same protocol.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrec.crossdomain.data import CDRData, Domain, histories, load_log_pair, load_pair, make_batch, read_pairs
from mmrec.crossdomain.evaluate import evaluate_scores, sample_candidates
from mmrec.errors import UsageError
from mmrec.io import atomic_path, write_json

MODELS = ("single-domain", "unicdr", "unicdr+", "farm")
# per-model settings chosen on valid.txt (README); CDRConfig's own defaults are UniCDR's
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"single-domain": {}, "unicdr": {}, "unicdr+": {}, "farm": {}}
_DEFAULT_AGG = {"single-domain": "mean", "unicdr": "user_attention", "unicdr+": "position_attention", "farm": "mean"}


@dataclass
class CDRConfig:
    """Training settings. UniCDR's are kept (batch 1024, 10 negatives, maxlen 10, dropout 0.3, λ 0.5,
    10 % interaction masking, 0.6 critic weight) except, to fit the CPU budget (3 epochs, 1 thread), dim 64
    instead of 128, Adam 5e-3 instead of 1e-3 and the sampled softmax instead of the BCE (chosen on
    valid.txt; the same for every model)."""

    model: str = "unicdr"
    dim: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.0
    batch_size: int = 1024
    negatives: int = 10
    maxlen: int = 10
    dropout: float = 0.3
    lam: float = 0.5
    aggregator: str = ""  # "" = the model's default (_DEFAULT_AGG)
    interaction_mask: float = 0.1
    domain_mask: float = 0.5
    critic_weight: float = 0.6
    objective: str = "softmax"  # "bce" (UniCDR's) or "softmax" (sampled softmax over 1 + negatives)
    epochs: int = 3
    patience: int = 1
    seed: int = 0
    eval_seed: int = 0
    threads: int = 1
    max_minutes: float = 14.0
    ease_items: int = 4000
    # UniCDR+ and FARM
    gnn_layers: int = 1
    gnn_topk: int = 10
    gnn_cross: bool = True
    contrast_weight: float = 0.1
    soft_weight: float = 0.5
    temperature: float = 0.2
    experts: int = 2
    tasks: tuple[str, ...] = ()
    item_emb: str = ""
    emb_column: str = "fused"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UsageError(f"model must be one of {MODELS}, got {self.model!r}")
        for name in ("dim", "batch_size", "negatives", "maxlen", "epochs", "threads", "gnn_topk", "experts"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "lam", "interaction_mask", "domain_mask", "critic_weight", "soft_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.objective not in ("bce", "softmax"):
            raise UsageError(f"objective must be 'bce' or 'softmax', got {self.objective!r}")
        self.tasks = tuple(self.tasks)
        self.aggregator = self.aggregator or _DEFAULT_AGG[self.model]


def build_model(config: CDRConfig, data: CDRData, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The model named by ``config.model`` for ``data`` (``state``: tensors of a saved run)."""
    model = _build_model(config, data, state)
    model.objective = config.objective
    return model


def _build_model(config: CDRConfig, data: CDRData, state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    n_items = (data.domains[0].n_items, data.domains[1].n_items)
    common = dict(dim=config.dim, dropout=config.dropout, maxlen=config.maxlen)
    if config.model == "single-domain":
        from mmrec.crossdomain.single_domain import SingleDomain

        return SingleDomain(data.n_users, n_items, aggregator=config.aggregator, lam=config.lam, **common)
    if config.model == "unicdr":
        from mmrec.crossdomain.aggregators import ease_weights
        from mmrec.crossdomain.unicdr import UniCDR

        similarity = (None, None)
        if config.aggregator == "item_similarity":
            similarity = tuple(ease_weights(d.train, d.n_items, max_items=config.ease_items) for d in data.domains)
        return UniCDR(data.n_users, n_items, aggregator=config.aggregator, lam=config.lam,
                      critic_weight=config.critic_weight, similarity=similarity, **common)
    if config.model == "unicdr+":
        from mmrec.crossdomain.unicdr_plus import UniCDRPlus, item_features

        features = item_features(config, data, state)
        return UniCDRPlus(data.n_users, n_items, features=features, aggregator=config.aggregator, lam=config.lam,
                          critic_weight=config.critic_weight, gnn_layers=config.gnn_layers,
                          contrast_weight=config.contrast_weight, soft_weight=config.soft_weight,
                          temperature=config.temperature, experts=config.experts, tasks=len(data.tasks), **common)
    from mmrec.crossdomain.farm import FARM
    from mmrec.crossdomain.unicdr_plus import item_features

    return FARM(data.n_users, n_items, features=item_features(config, data, state), gnn_layers=config.gnn_layers,
                align_weight=config.contrast_weight, temperature=config.temperature, **common)


def _optimizers(model: torch.nn.Module, config: CDRConfig) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters, SparseAdam for the sparse user tables (only touched rows move)."""
    sparse = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    out = [torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay)]
    if sparse:
        out.append(torch.optim.SparseAdam([p for p in model.parameters() if id(p) in sparse], lr=config.lr))
    return out


def _histories(data: CDRData, maxlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.as_tensor(histories(d.train, data.n_users, maxlen)) for d in data.domains)


class _Evaluator:
    """Fixed candidates for the held-out pairs of each target domain; scores a model on them."""

    def __init__(self, data: CDRData, hist, targets: dict[int, np.ndarray], seed: int) -> None:
        self.data, self.hist, self.sets = data, hist, {}
        for d, heldout in targets.items():
            dom = data.domains[d]
            if dom.n_items < 1000 + 100:
                raise UsageError(f"domain {dom.name} has {dom.n_items} items; the protocol samples 999 negatives "
                                 "per held-out item and needs at least 1,100")
            seen = np.concatenate([dom.train, heldout])
            self.sets[d] = (heldout, sample_candidates(heldout, seen, dom.n_items, seed=seed))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, task: int = 0) -> dict[str, dict[str, float]]:
        model.eval()
        tables = model.item_tables()
        out = {}
        for d, (heldout, candidates) in self.sets.items():
            def score(users: np.ndarray, items: np.ndarray, d=d) -> torch.Tensor:
                users = torch.as_tensor(users)
                own, other = self.hist[d][users], self.hist[1 - d][users]
                cold = (own < 0).all(1)
                user = model.user_vectors(d, users, own, other, cold, tables)
                return model.score(d, user, torch.as_tensor(items), tables)

            out[self.data.domains[d].name] = evaluate_scores(score, heldout, candidates)
        model.train()
        return out


def _mean_ndcg(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["NDCG@10"] for m in metrics.values()]))


def _load_data(data: str | Path, pair: str, tasks: tuple[str, ...] = ()) -> CDRData:
    path = Path(data)
    if path.suffix == ".parquet":
        names = pair.split("_")
        if len(names) != 2:
            raise UsageError(f"with a Parquet log, --pair names its two domains as 'a_b', got {pair!r}")
        return load_log_pair(path, (names[0], names[1]), tasks=tasks)
    return load_pair(path, pair)


def train_cdr(data: str | Path | CDRData, pair: str, *, out: str | Path | None = None,
              config: CDRConfig | dict | None = None, targets: tuple[str, ...] = (),
              progress: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on both domains of ``pair`` and evaluate on the targets' held-out files.

    ``targets``: domain names to evaluate and select on (default: every domain with a ``valid.txt``).
    Returns the report (also written to ``out/metrics.json`` when ``out`` is given).
    """
    config = config if isinstance(config, CDRConfig) else CDRConfig(**(config or {}))
    previous = torch.get_num_threads()  # the process's thread count is the caller's: restored after
    torch.set_num_threads(config.threads)
    try:
        return _train_cdr(data, pair, out, config, targets, progress)
    finally:
        torch.set_num_threads(previous)


def _train_cdr(data: str | Path | CDRData, pair: str, out: str | Path | None, config: CDRConfig,
               targets: tuple[str, ...], progress: bool) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    data = data if isinstance(data, CDRData) else _load_data(data, pair, config.tasks)
    target_ids = [data.domain_index(t) for t in targets] if targets else \
        [d for d, dom in enumerate(data.domains) if dom.valid is not None]
    missing = [data.domains[d].name for d in target_ids if data.domains[d].valid is None]
    if missing:
        raise UsageError(f"no held-out file for target domain(s) {missing}")
    hist = _histories(data, config.maxlen)
    evaluator = _Evaluator(data, hist, {d: data.domains[d].valid for d in target_ids}, config.eval_seed)
    started = time.perf_counter()
    model = build_model(config, data)
    optimizers = _optimizers(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    train = [(torch.as_tensor(d.train[:, 0]), torch.as_tensor(d.train[:, 1]),
              None if d.labels is None else torch.as_tensor(d.labels)) for d in data.domains]
    best, best_state, best_epoch, history, stale = -1.0, None, 0, [], 0
    deadline = started + 60 * config.max_minutes
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        batches = []
        for d, (users, _, _) in enumerate(train):
            perm = torch.randperm(len(users), generator=gen)
            batches += [(d, perm[i:i + config.batch_size]) for i in range(0, len(perm), config.batch_size)]
        order = torch.randperm(len(batches), generator=gen).tolist()
        losses: dict[str, float] = {}
        for step in order:
            d, idx = batches[step]
            users, items, labels = train[d]
            batch = make_batch(d, users[idx], items[idx], hist, data.domains[d].n_items, negatives=config.negatives,
                               interaction_mask=config.interaction_mask, domain_mask=config.domain_mask,
                               labels=None if labels is None else labels[idx], generator=gen)
            loss, parts = model.loss(batch)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            for k, v in parts.items():
                losses[k] = losses.get(k, 0.0) + v / len(order)
        metrics = evaluator(model) if evaluator.sets else {}
        score = _mean_ndcg(metrics) if metrics else float(epoch)  # nothing held out: keep the last epoch
        history.append({"epoch": epoch, "seconds": round(time.perf_counter() - t0, 2), "loss": losses,
                        "valid_ndcg10": {k: round(v["NDCG@10"], 4) for k, v in metrics.items()}})
        if progress:
            print(json.dumps(history[-1]), flush=True)
        if score > best:
            best, best_state, best_epoch, best_metrics, stale = score, copy.deepcopy(model.state_dict()), epoch, metrics, 0
        else:
            stale += 1
        if stale >= config.patience or time.perf_counter() > deadline:
            break
    model.load_state_dict(best_state)
    report = {"model": config.model, "pair": pair, "seed": config.seed, "best_epoch": best_epoch,
              "epochs_run": len(history), "seconds": round(time.perf_counter() - started, 1),
              "metrics": best_metrics, "history": history, "config": dataclasses.asdict(config)}
    if out is not None:
        save_run(out, model, config, data, pair, report)
    return report


def _data_info(data: CDRData, pair: str) -> dict[str, Any]:
    return {"pair": pair, "n_users": data.n_users, "tasks": list(data.tasks), "user_vocab": data.user_vocab,
            "domains": [{"name": d.name, "folder": d.folder, "n_items": d.n_items, "item_vocab": d.item_vocab}
                        for d in data.domains]}


def save_run(out: str | Path, model: torch.nn.Module, config: CDRConfig, data: CDRData, pair: str,
             report: dict[str, Any]) -> Path:
    """Write a run folder: config.json, data.json, model.safetensors (weights + train data), metrics.json."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for d, dom in enumerate(data.domains):
        tensors[f"train.{d}"] = torch.as_tensor(dom.train).contiguous()
        if dom.labels is not None:
            tensors[f"labels.{d}"] = torch.as_tensor(dom.labels).contiguous()
    tensors.update({f"extra.{k}": v.contiguous() for k, v in getattr(model, "extra_tensors", dict)().items()})
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(out / "config.json", dataclasses.asdict(config))
    write_json(out / "data.json", _data_info(data, pair))
    write_json(out / "metrics.json", report)
    return out


def load_run(run: str | Path) -> tuple[torch.nn.Module, CDRConfig, CDRData]:
    """Rebuild a saved run's model (eval mode), config and training data."""
    from safetensors.torch import load_file

    run = Path(run)
    for name in ("config.json", "data.json", "model.safetensors"):
        if not (run / name).is_file():
            raise UsageError(f"{run} is not a cdr run folder: {name} missing")
    config = CDRConfig(**json.loads((run / "config.json").read_text()))
    info = json.loads((run / "data.json").read_text())
    tensors = load_file(str(run / "model.safetensors"))
    domains = []
    for d, dom in enumerate(info["domains"]):
        labels = tensors.get(f"labels.{d}")
        domains.append(Domain(name=dom["name"], folder=dom["folder"], n_items=dom["n_items"],
                              train=tensors[f"train.{d}"].numpy(), labels=None if labels is None else labels.numpy(),
                              item_vocab=dom["item_vocab"]))
    data = CDRData(domains=(domains[0], domains[1]), n_users=info["n_users"], tasks=tuple(info["tasks"]),
                   user_vocab=info["user_vocab"])
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    model = build_model(config, data, state=extra)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    return model, config, data


def evaluate_run(run: str | Path, test: str | Path, *, target: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Evaluate a saved run on a ``user<TAB>item`` file of one domain (``target``; by default the domain
    whose folder name is the file's parent folder)."""
    model, config, data = load_run(run)
    test = Path(test)
    if target is None:
        folders = {dom.folder: dom.name for dom in data.domains}
        if test.parent.name not in folders:
            raise UsageError(f"cannot tell the target domain of {test}; pass --target "
                             f"{' or '.join(d.name for d in data.domains)}")
        target = folders[test.parent.name]
    d = data.domain_index(target)
    heldout = _read_heldout(test, data, d)
    bad = (heldout[:, 0] >= data.n_users) | (heldout[:, 1] >= data.domains[d].n_items)
    if bad.any():
        raise UsageError(f"{test}: {int(bad.sum())} pair(s) with ids outside the run's vocabulary "
                         f"({data.n_users} users, {data.domains[d].n_items} items in {target})")
    hist = _histories(data, config.maxlen)
    evaluator = _Evaluator(data, hist, {d: heldout}, config.eval_seed if seed is None else seed)
    metrics = evaluator(model)
    return {"run": str(run), "test": str(test), "model": config.model, "target": target, "metrics": metrics[target]}


def _read_heldout(test: Path, data: CDRData, d: int) -> np.ndarray:
    """A ``user<TAB>item`` file as indices: integers as they are, or raw ids through a Parquet run's vocabularies."""
    if data.user_vocab is None:
        return read_pairs(test)
    users = {u: i for i, u in enumerate(data.user_vocab)}
    items = {v: i for i, v in enumerate(data.domains[d].item_vocab)}
    rows = []
    for number, line in enumerate(test.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in users or parts[1] not in items:
            raise UsageError(f"{test}:{number}: expected 'user<TAB>item' with ids known to the run, got {line!r}")
        rows.append((users[parts[0]], items[parts[1]]))
    if not rows:
        raise UsageError(f"{test}: no pairs")
    return np.asarray(rows, dtype=np.int64)


def format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A markdown table of metrics rows ``(label, metrics)``."""
    cols = ["MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10"]
    lines = ["| target | " + " | ".join(cols) + " | n |", "|---|" + "---:|" * (len(cols) + 1)]
    for label, m in rows:
        lines.append(f"| {label} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + f" | {m['n']} |")
    return "\n".join(lines)


def config_from_args(model: str, *, seed: int = 0, epochs: int | None = None, threads: int | None = None,
                     item_emb: str | None = None, emb_column: str | None = None, tasks: list[str] | None = None,
                     overrides: list[str] = ()) -> CDRConfig:
    """A :class:`CDRConfig` for ``model`` (its tuned defaults, :data:`MODEL_DEFAULTS`) plus ``KEY=VALUE``
    overrides (values parsed as JSON when they parse, else kept as strings)."""
    fields = {f.name: f for f in dataclasses.fields(CDRConfig)}
    values: dict[str, Any] = {**MODEL_DEFAULTS.get(model, {}), "model": model, "seed": seed}
    for name, value in (("epochs", epochs), ("threads", threads), ("item_emb", item_emb),
                        ("emb_column", emb_column), ("tasks", tasks)):
        if value is not None:
            values[name] = value
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise UsageError(f"--set expects KEY=VALUE with KEY a CDRConfig field ({', '.join(fields)}), got {item!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return CDRConfig(**values)


def export_user_features(run: str | Path, out: str | Path, *, target: str, users: np.ndarray | None = None,
                         batch: int = 4096) -> Path:
    """Write target-domain user vectors of a run as Parquet (``key`` = ``"user-<id>"``, ``fused``).

    The file has the layout of ``mmrec extract`` outputs (name it ``emb-000000.parquet``), so
    ``mmrec.features.EmbeddingProvider`` serves it to the rankers as a user embedding feature (FARM as a
    plug-in; it works for every model of this module). Cold-start users get their cross-domain vector.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    model, config, data = load_run(run)
    d = data.domain_index(target)
    hist = _histories(data, config.maxlen)
    users = np.arange(data.n_users) if users is None else np.asarray(users, np.int64)
    vectors = []
    with torch.no_grad():
        tables = model.item_tables()
        for start in range(0, len(users), batch):
            u = torch.as_tensor(users[start:start + batch])
            own, other = hist[d][u], hist[1 - d][u]
            vectors.append(model.user_vectors(d, u, own, other, (own < 0).all(1), tables).numpy())
    vectors = np.concatenate(vectors).astype(np.float32)
    names = data.user_vocab
    keys = [f"user-{names[u] if names else u}" for u in users]
    table = pa.table({"key": keys, "fused": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])})
    table = table.replace_schema_metadata({"model": f"mmrec.crossdomain.{config.model}", "dim": str(vectors.shape[1])})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return Path(out)
