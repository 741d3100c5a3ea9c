"""The cross-domain grid: 4 models x 2 Amazon pairs (both directions) x 3 seeds, one process, CPU.

Each run is ``mmrec.pipelines.cdr.train_cdr`` (the same function as ``mmrec cdr train``) with the
``CDRConfig`` defaults (chosen on valid.txt), trained on both domains of the pair and evaluated
on both ``valid.txt`` files (the only held-out data in the folder). Finished runs are appended to
``OUT/results.jsonl`` and skipped when the script is started again, so a killed grid resumes. The
markdown table (mean ± std over seeds of NDCG@10, HR@10 and MRR per model x target domain, minutes
per run and best epoch / epochs run of each seed) is printed at the end and written to ``OUT/table.md``, with the non-learned and shallow
baseline rows of :func:`baseline_rows` per direction (co-occurrence count, cross-domain EASE, item-kNN on
the same candidates; computed once per pair and kept in ``results.jsonl`` like the runs).

    OMP_NUM_THREADS=1 .venv/bin/python bench/cdr_table.py --data /work/shared/data/amazon-cdr --out bench-out/cdr
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODELS = ("single-domain", "unicdr", "unicdr+", "farm")  # table row order (baseline first); CDR_MODELS checks the names
PAIRS = ("sport_cloth", "game_video")


BASELINES = ("count", "ease", "item_knn")  # mmrec.crossdomain.baselines.GRID: their parameter grids


def baseline_rows(data_dir: str, pair: str, names: tuple[str, ...] = BASELINES) -> list[dict]:
    """One result row per baseline for ``pair``: both directions, the parameter of
    ``mmrec.crossdomain.baselines.GRID`` picked per direction on valid NDCG@10 (``select_baseline``, the
    same function as ``mmrec cdr train --model count|ease|item-knn``), the models' candidates (evaluator
    seed 0); ``seconds``: fit + evaluation of both directions, every grid value."""
    from mmrec.crossdomain.baselines import select_baseline
    from mmrec.crossdomain.files import load_pair

    data = load_pair(data_dir, pair)
    rows = []
    for name in names:
        metrics, params, seconds = {}, {}, 0.0
        for t, dom in enumerate(data.domains):
            t0 = time.perf_counter()
            params[dom.name], metrics[dom.name], _ = select_baseline(name, data, t)
            seconds += time.perf_counter() - t0
        rows.append({"pair": pair, "model": name, "seed": None, "seconds": round(seconds, 1), "metrics": metrics,
                     "params": params})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table from result rows (one per model x pair x seed; baselines have seed None)."""
    out = ["| target (source → target) | model | NDCG@10 | HR@10 | MRR | seeds | min / run | best epoch |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    targets = []
    for r in rows:
        for t in r["metrics"]:
            if (r["pair"], t) not in targets:
                targets.append((r["pair"], t))
    for pair, target in targets:
        names = pair.split("_")
        source = names[1] if target == names[0] else names[0]
        labels = [m for m in (*MODELS, *BASELINES) if any(r["model"] == m for r in rows)]
        labels += [r["model"] for r in rows if r["model"] not in labels]
        for model in dict.fromkeys(labels):
            runs = [r for r in rows if r["pair"] == pair and r["model"] == model and target in r["metrics"]]
            if not runs:
                continue
            cells = []
            for metric in ("NDCG@10", "HR@10", "MRR"):
                v = np.array([r["metrics"][target][metric] for r in runs])
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}")
            seconds = np.mean([r["seconds"] for r in runs])
            baseline = runs[0]["seed"] is None
            if baseline:  # deterministic: one run, no spread
                cells = [f"{runs[0]['metrics'][target][m]:.4f}" for m in ("NDCG@10", "HR@10", "MRR")]
                params = runs[0]["params"].get(target, {})
                model = f"*{model}*" + (f" ({', '.join(f'{k} {v:g}' for k, v in params.items())})" if params else "")
            epochs = "–" if baseline else ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in runs)
            out.append(f"| {target} ({source} → {target}) | {model} | " + " | ".join(cells)
                       + f" | {'–' if baseline else len(runs)} | {seconds / 60:.1f} | {epochs} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the amazon-cdr folder")
    parser.add_argument("--out", default="bench-out/cdr")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="none: the baseline rows only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="CDRConfig override for every run (an ablation); rows are labelled model[KEY=VALUE,...]")
    parser.add_argument("--config", help="YAML of tuned settings, {model: {pair: {field: value}}} (bench/configs/cdr-tuned.yaml), "
                        "applied before --set; rows keep the model's name")
    parser.add_argument("--save-runs", action="store_true", help="keep each run folder under OUT/runs/")
    parser.add_argument("--table-only", action="store_true", help="print the table of OUT/results.jsonl")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false",
                        help="leave out the count / EASE / item-kNN rows")
    parser.add_argument("--baselines", dest="baseline_names", nargs="+", default=list(BASELINES), choices=BASELINES,
                        help="which baseline rows to compute (those of a pair already in results.jsonl are kept)")
    parser.add_argument("--epochs", type=int, help="CDRConfig.epochs of every run (not part of the row label)")
    parser.add_argument("--max-minutes", type=float, help="CDRConfig.max_minutes of every run (not in the label)")
    args = parser.parse_args(argv)

    from mmrec.io import atomic_open
    from mmrec.pipelines.cdr import apply_overrides, train_cdr

    tuned = {}
    if args.config:
        import yaml

        tuned = yaml.safe_load(Path(args.config).read_text()) or {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    if not args.table_only and args.baselines:
        for pair in args.pairs:
            names = [n for n in args.baseline_names if not any(r["pair"] == pair and r["model"] == n for r in rows)]
            for row in baseline_rows(args.data, pair, tuple(names)) if names else []:
                rows.append(row)
                with open(results, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{pair} {row['model']} {row['params']}: " + ", ".join(
                    f"{t} NDCG@10 {m['NDCG@10']:.4f}" for t, m in row["metrics"].items()), flush=True)
    if not args.table_only:
        for seed in args.seeds:
            for pair in args.pairs:
                for model in args.models:
                    label = f"{model}[{','.join(args.set)}]" if args.set else model
                    if any(r["pair"] == pair and r["model"] == label and r["seed"] == seed for r in rows):
                        continue
                    t0 = time.perf_counter()
                    caps = {k: v for k, v in (("epochs", args.epochs), ("max_minutes", args.max_minutes)) if v is not None}
                    config = apply_overrides({**tuned.get(model, {}).get(pair, {}), "model": model, "seed": seed, **caps},
                                             args.set)
                    run_dir = out / "runs" / f"{pair}-{model}-{seed}" if args.save_runs else None
                    report = train_cdr(args.data, pair, out=run_dir, config=config)
                    row = {k: report[k] for k in ("pair", "seed", "best_epoch", "epochs_run", "seconds", "metrics", "stopped")}
                    row["steps"] = sum(h["steps"] for h in report["history"])
                    row["history"] = [{k: h[k] for k in ("epoch", "seconds", "valid_ndcg10")} for h in report["history"]]
                    row["model"] = label
                    row["config"] = report["config"]
                    rows.append(row)
                    with open(results, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{pair} {label} seed {seed}: " + ", ".join(
                        f"{t} NDCG@10 {m['NDCG@10']:.4f}" for t, m in report["metrics"].items())
                        + f" ({time.perf_counter() - t0:.0f} s, best epoch {report['best_epoch']})", flush=True)
    text = table([r for r in rows if r["pair"] in args.pairs])
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
