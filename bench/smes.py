"""SMES against MMoE, PLE and HoME on the many-task SYNTHETIC simulator, and against a dense MoE for speed.

What it does, in one process on one torch thread:

1. **Data.** ``mmrec rank simulate --tasks 12`` (SYNTHETIC): click, like, follow and 9 related tasks
   ``t03 .. t11`` whose positive rates fall from 20 % to 0.3 % (the last three under 1 %: the *sparse
   tasks*), each planted with logit correlation 0.8 to a parent task. Inputs: ids, the item content
   vectors, a 10-click mean-pooled history. Latest 20 % of rows = test. The data are fixed; training
   repeats for ``--seeds`` seeds.
2. **Runs**, every expert one layer ``--expert-dim`` wide, same towers, Adam, same epochs:

   - *equal total parameters* (``--experts`` experts each): SMES (``k_shared`` + ``k_private`` per
     task, balance loss on), SMES without the balance loss, MMoE, PLE (one CGC level: 1 expert per
     task + the rest shared), HoME (1 shared + 1 per task family + 1 per task; families = the planted
     parents, as a HoME user would group tasks by kind);
   - *equal activated experts per instance*: ``A`` = SMES's measured experts per instance of seed 0,
     rounded; MMoE with ``A`` experts and HoME with ``A`` level-1 experts (``A - 3`` shared + 1 per
     family, no task experts). PLE is left out there: with 12 tasks and at least one expert per task
     it runs at least 12, and with none it is MMoE;
   - *speed*: after a seed's runs, SMES, the same SMES weights with ``dispatch: dense`` (every expert on
     every row, mixed over all of them with the same routing) and MMoE of ``--experts`` (the plain dense
     MoE of the same total size) are timed in turn in this process on the same data, best of
     ``--repeats``: ``--speed-steps`` training steps (forward, losses, backward, Adam) on the same
     training batches, and ``predict`` over the test rows.
3. **Measures**: AUC / GAUC per task on the test rows (``mmrec.rankers.metrics``), experts run per
   instance (SMES: the union of its tasks' experts, measured; others: all their experts), the
   coefficient of variation of the expert loads (SMES: picks per expert summed over tasks, the load
   the balance loss acts on, and rows per expert, the compute load).

Results: a table on stdout, ``OUT/smes-bench.json`` and ``OUT/smes-gauc.png``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/smes.py                      # the full run (490-633 s here, other jobs on the other core)
    OMP_NUM_THREADS=1 .venv/bin/python bench/smes.py --users 200 --seeds 1 --epochs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch

from mmrec.pipelines.rank import load_run, train
from mmrec.rankers import SMES, simulate
from mmrec.rankers.data import prepare_data, prepare_scoring
from mmrec.rankers.features.collate import collate
from mmrec.rankers.losses import training_loss
from mmrec.rankers.predict import predict
from mmrec.rankers.smes import load_cv

FAMILIES = ("click", "like", "follow")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out/smes")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--impressions", type=int, default=80)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--experts", type=int, default=32)
    p.add_argument("--expert-dim", type=int, default=64)
    p.add_argument("--k-shared", type=int, default=4)
    p.add_argument("--k-private", type=int, default=1)
    p.add_argument("--balance-weight", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--speed-steps", type=int, default=8)
    return p.parse_args()


def _families(tasks: list[str], parents: dict[str, str]) -> list[list[str]]:
    return [[t for t in tasks if parents.get(t, t) == f] for f in FAMILIES]


def _models(a: argparse.Namespace, tasks: list[str], parents: dict[str, str], activated: int | None) -> dict[str, dict[str, Any]]:
    common = {"embedding_dim": 16, "history_attention": "mean", "tower": [16]}
    families = _families(tasks, parents)
    n, h, K = a.experts, a.expert_dim, len(tasks)
    smes = {"name": "smes", "experts": n, "expert": [h], "k_shared": a.k_shared, "k_private": a.k_private,
            "balance_weight": a.balance_weight}
    models = {
        "SMES": smes,
        "SMES, no balance loss": {**smes, "balance_weight": 0.0},
        f"MMoE {n}": {"name": "mmoe", "experts": n, "expert": [h]},
        f"PLE {n}": {"name": "ple", "levels": 1, "expert": [h], "task_experts": 1, "shared_experts": max(n - K, 1)},
        f"HoME {n}": {"name": "home", "expert_dim": h, "shared_experts": max(n - K - len(FAMILIES), 1), "group_experts": 1,
                      "task_experts": 1, "task_groups": families},
    }
    if activated is not None:
        models[f"MMoE {activated}"] = {"name": "mmoe", "experts": activated, "expert": [h]}
        models[f"HoME {activated}"] = {"name": "home", "expert_dim": h, "shared_experts": max(activated - len(FAMILIES), 1),
                                       "group_experts": 1, "task_experts": 0, "task_groups": families}
    return {name: {**common, **m} for name, m in models.items()}


def _experts_run(model, name: str) -> int:
    """Experts a dense ranker runs per instance."""
    cfg = model.config
    if name == "mmoe":
        return cfg.experts
    if name == "ple":
        return model.levels[0].experts.layers[0].weight.shape[0]
    if name == "home":
        return model.mask1.shape[1] + (model.level2.linear.weight.shape[0] if model.level2 is not None else 0)
    raise ValueError(name)


@torch.no_grad()
def _routing_stats(run) -> dict[str, float]:
    """SMES on the run's test rows: experts per instance, task picks and rows per expert, their CVs."""
    model = run.model.eval()
    samples, items, _ = prepare_scoring(run.config.data, run.config.features, vocabs=run.vocabs, domains=model.schema.domains)
    per_instance, picks, rows = [], 0, 0
    for idx in torch.arange(len(samples)).split(4096):
        r = model.routing(collate(samples, items, idx))
        per_instance.append(r.active.sum(1).float())
        picks = picks + r.select.sum((0, 1))
        rows = rows + r.active.sum(0)
    return {"experts_per_instance": float(torch.cat(per_instance).mean()), "max_experts_per_instance": int(torch.cat(per_instance).max()),
            "load_cv_picks": load_cv(picks), "load_cv_rows": load_cv(rows)}


def _speed(runs: dict[str, Any], a: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Training and inference samples/s of each model, interleaved in this process, best of ``--repeats``:
    ``--speed-steps`` training steps (forward, losses, backward, Adam) on the same training batches, and
    ``predict`` over the test rows."""
    import copy

    first = next(iter(runs.values()))
    data = prepare_data(first.config.data, first.config.features)
    samples, items, _ = prepare_scoring(first.config.data, first.config.features, vocabs=first.vocabs, domains=first.model.schema.domains)
    batches = [collate(data.train, data.items, rows) for rows in torch.randperm(len(data.train))[: a.speed_steps * a.batch_size].split(a.batch_size)]
    best = {name: {"train": 0.0, "infer": 0.0} for name in runs}
    for _ in range(a.repeats):
        for name, run in runs.items():
            model = copy.deepcopy(run.model).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            start = time.perf_counter()
            for batch in batches:
                loss = training_loss(model, batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            best[name]["train"] = max(best[name]["train"], sum(len(b.domain) for b in batches) / (time.perf_counter() - start))
            start = time.perf_counter()
            predict(run.model, samples, items, batch_size=4096)
            best[name]["infer"] = max(best[name]["infer"], len(samples) / (time.perf_counter() - start))
    return best


def main() -> None:
    a = _args()
    torch.set_num_threads(1)
    out = Path(a.out)
    summary = simulate(out / "data", users=a.users, items=a.items, impressions=a.impressions, tasks=a.tasks, seed=0)
    tasks, parents = summary["tasks"], summary["task_parent"]
    rates = summary["positive_rate"]
    sparse = [t for t in tasks if rates[t] < 0.01]
    print(f"SYNTHETIC log: {summary['rows']} rows, {len(tasks)} tasks; sparse (< 1 %): {', '.join(sparse)}", flush=True)
    base = {"data": {"log": str(out / "data" / "behaviour.parquet"), "tasks": tasks, "history": {"length": 10, "positive": "click"},
                     "test_fraction": 0.2},
            "features": [{"name": "content", "kind": "embeddings", "path": str(out / "data" / "emb"), "dim": 32}],
            "optim": {"lr": 0.003, "batch_size": a.batch_size, "epochs": a.epochs, "threads": 1, "eval_batch_size": 4096}}
    results: dict[str, list[dict[str, Any]]] = {}
    speeds: dict[str, list[dict[str, Any]]] = {}
    activated = None
    started = time.perf_counter()
    for seed in range(a.seeds):
        loaded = {}
        models = _models(a, tasks, parents, activated)  # seed 0: the equal-activated runs join once SMES has measured A
        queue = list(models.items())
        while queue:
            label, model = queue.pop(0)
            cfg = {**base, "model": model, "optim": {**base["optim"], "seed": seed}}
            folder = out / "runs" / f"{label.replace(' ', '_').replace(',', '')}-{seed}"
            report = train(cfg, out=folder, progress=False, threads=1)
            run = load_run(folder)
            row = {"seed": seed, "parameters": report["parameters"], "train_samples_per_s": report["train"]["samples_per_s"],
                   **{m: {t: _number(report["metrics"][t]["all"][m]) for t in tasks} for m in ("auc", "gauc")}}
            if model["name"] == "smes":
                row.update(_routing_stats(run))
            else:
                row["experts_per_instance"] = _experts_run(run.model, model["name"])
            loaded[label] = run
            results.setdefault(label, []).append(row)
            print(f"seed {seed} {label:<24} {row['parameters']:>8,} params  {row['train_samples_per_s']:>9,.0f} train/s  "
                  f"experts/instance {row['experts_per_instance']:.2f}  mean GAUC {np.nanmean(list(row['gauc'].values())):.4f}  "
                  f"[{time.perf_counter() - started:.0f} s]", flush=True)
            if label == "SMES" and activated is None:
                activated = max(round(row["experts_per_instance"]), len(FAMILIES) + 1)
                queue += [(k, v) for k, v in _models(a, tasks, parents, activated).items() if k not in models]
        smes = loaded["SMES"]
        dense = SMES(smes.model.schema, replace(smes.model.config, dispatch="dense"))
        dense.load_state_dict(smes.model.state_dict())
        peers = {"SMES": smes, "SMES, dense dispatch": replace(smes, model=dense.eval()), f"MMoE {a.experts}": loaded[f"MMoE {a.experts}"]}
        for label, value in _speed(peers, a).items():
            speeds.setdefault(label, []).append({"seed": seed, "train_samples_per_s": value["train"], "infer_samples_per_s": value["infer"]})
        print(f"seed {seed} speed (samples/s, train / infer): " + ", ".join(
            f"{k} {v[-1]['train_samples_per_s']:,.0f} / {v[-1]['infer_samples_per_s']:,.0f}" for k, v in speeds.items()), flush=True)
    report = {"synthetic": True, "machine": "2-core CPU VM, one torch thread", "args": vars(a), "rows": summary["rows"],
              "tasks": tasks, "positive_rate": rates, "task_parent": parents, "sparse_tasks": sparse, "activated": activated,
              "seconds": time.perf_counter() - started, "runs": results, "speed": speeds}
    (out / "smes-bench.json").write_text(json.dumps(report, indent=1))
    _print(report, a)
    _plot(report, out / "smes-gauc.png")


def _number(value: float | None) -> float:
    """A metric of the report (null where a task had one class in the test rows) as a float, NaN for null."""
    return float("nan") if value is None else float(value)


def _mean(values: list[float]) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def _print(report: dict[str, Any], a: argparse.Namespace) -> None:
    tasks, sparse, runs = report["tasks"], report["sparse_tasks"], report["runs"]
    dense_tasks = [t for t in tasks if t not in sparse]
    print(f"\n{report['rows']} rows, seeds {a.seeds}, {report['seconds']:.0f} s; A = {report['activated']} experts per instance")
    print("| run | parameters | experts run per instance | mean GAUC, dense tasks | mean GAUC, sparse tasks | mean AUC, sparse tasks "
          "| load CV (picks / rows) | train samples/s (own run) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, rows in runs.items():
        cv = (f"{median(r['load_cv_picks'] for r in rows):.3f} / {median(r['load_cv_rows'] for r in rows):.3f}"
              if "load_cv_picks" in rows[0] else "")
        print(f"| {label} | {rows[0]['parameters']:,} | {np.mean([r['experts_per_instance'] for r in rows]):.2f} "
              f"| {_mean([np.nanmean([r['gauc'][t] for t in dense_tasks]) for r in rows])} "
              f"| {_mean([np.nanmean([r['gauc'][t] for t in sparse]) for r in rows])} "
              f"| {_mean([np.nanmean([r['auc'][t] for t in sparse]) for r in rows])} "
              f"| {cv} | {median(r['train_samples_per_s'] for r in rows):,.0f} |")
    print("\nGAUC per task (mean over seeds):")
    print("| run | " + " | ".join(f"{t} ({report['positive_rate'][t]:.1%})" for t in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for label, rows in runs.items():
        print(f"| {label} | " + " | ".join(f"{np.nanmean([r['gauc'][t] for r in rows]):.3f}" for t in tasks) + " |")
    speeds = report["speed"]
    print("\n| model (same weights for the SMES rows) | train samples/s | infer samples/s | SMES ÷ this, train | SMES ÷ this, infer |")
    print("|---|---|---|---|---|")
    for label, rows in speeds.items():
        ratio = {w: median(s[w] / r[w] for s, r in zip(speeds["SMES"], rows)) for w in ("train_samples_per_s", "infer_samples_per_s")}
        print(f"| {label} | {median(r['train_samples_per_s'] for r in rows):,.0f} | {median(r['infer_samples_per_s'] for r in rows):,.0f} "
              f"| {ratio['train_samples_per_s']:.2f} | {ratio['infer_samples_per_s']:.2f} |")


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, rates = report["tasks"], report["positive_rate"]
    order = sorted(tasks, key=lambda t: -rates[t])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, rows in report["runs"].items():
        ax.plot(range(len(order)), [np.nanmean([r["gauc"][t] for r in rows]) for t in order], marker="o", label=label)
    ax.set_xticks(range(len(order)), [f"{t}\n{rates[t]:.1%}" for t in order], fontsize=7)
    ax.set_ylabel("test GAUC (mean over seeds)")
    ax.set_title("SYNTHETIC many-task log: GAUC per task, tasks by positive rate (2-core CPU VM, 1 thread)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
