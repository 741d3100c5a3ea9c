"""The cross-domain grid: 4 models x 2 Amazon pairs (both directions) x 3 seeds, one process, CPU.

Each run is ``mmrec.pipelines.cdr.train_cdr`` (the same function as ``mmrec cdr train``) with the
``CDRConfig`` defaults (chosen on valid.txt), trained on both domains of the pair and evaluated
on both ``valid.txt`` files (the only held-out data in the folder). Finished runs are appended to
``OUT/results.jsonl`` and skipped when the script is started again, so a killed grid resumes. The
markdown table (mean ± std over seeds of NDCG@10, HR@10 and MRR per model x target domain, and
seconds per run) is printed at the end and written to ``OUT/table.md``, with a non-learned reference row
per direction: the cross-domain co-occurrence count of :func:`cooccurrence_reference`.

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


def cooccurrence_reference(data_dir: str, pair: str) -> dict[str, dict[str, float]]:
    """Metrics of a non-learned score: for a cold user, the number of training users who interacted
    with both one of the user's other-domain items and the candidate (a cross-domain item-CF count),
    ties broken by target-domain popularity; same candidates as the models (evaluator seed 0)."""
    import scipy.sparse as sp

    from mmrec.crossdomain import metrics_from_ranks, ranks, sample_candidates
    from mmrec.pipelines.cdr_data import load_pair

    data = load_pair(data_dir, pair)
    x = [sp.csr_matrix((np.ones(len(d.train), np.float32), (d.train[:, 0], d.train[:, 1])),
                       shape=(data.n_users, d.n_items)).minimum(1) for d in data.domains]
    out = {}
    for t, dom in enumerate(data.domains):
        other = x[1 - t]
        scores = (other @ (other.T @ x[t])).tocsr()  # (users, target items) co-occurrence counts
        pop = np.asarray(x[t].sum(0)).ravel()
        cand = sample_candidates(dom.valid, np.concatenate([dom.train, dom.valid]), dom.n_items, seed=0)
        s = np.take_along_axis(np.asarray(scores[dom.valid[:, 0]].todense()), cand, 1) + 1e-6 * pop[cand]
        out[dom.name] = metrics_from_ranks(ranks(s))
    return out


def table(rows: list[dict], reference: dict | None = None) -> str:
    """Markdown table from result rows (one per model x pair x seed) and reference metrics by (pair, target)."""
    out = ["| target (source → target) | model | NDCG@10 | HR@10 | MRR | seeds | s / run |",
           "|---|---|---:|---:|---:|---:|---:|"]
    targets = []
    for r in rows:
        for t in r["metrics"]:
            if (r["pair"], t) not in targets:
                targets.append((r["pair"], t))
    for pair, target in targets:
        names = pair.split("_")
        source = names[1] if target == names[0] else names[0]
        labels = [m for m in MODELS if any(r["model"] == m for r in rows)]
        labels += [r["model"] for r in rows if r["model"] not in labels and r["model"] not in MODELS]
        for model in dict.fromkeys(labels):
            runs = [r for r in rows if r["pair"] == pair and r["model"] == model and target in r["metrics"]]
            if not runs:
                continue
            cells = []
            for metric in ("NDCG@10", "HR@10", "MRR"):
                v = np.array([r["metrics"][target][metric] for r in runs])
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}")
            seconds = np.mean([r["seconds"] for r in runs])
            out.append(f"| {target} ({source} → {target}) | {model} | " + " | ".join(cells)
                       + f" | {len(runs)} | {seconds:.0f} |")
        if reference and (pair, target) in reference:
            m = reference[(pair, target)]
            out.append(f"| {target} ({source} → {target}) | *co-occurrence count (not learned)* | {m['NDCG@10']:.4f} | "
                       f"{m['HR@10']:.4f} | {m['MRR']:.4f} | – | – |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the amazon-cdr folder")
    parser.add_argument("--out", default="bench-out/cdr")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="CDRConfig override for every run (an ablation); rows are labelled model[KEY=VALUE,...]")
    parser.add_argument("--save-runs", action="store_true", help="keep each run folder under OUT/runs/")
    parser.add_argument("--table-only", action="store_true", help="print the table of OUT/results.jsonl")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="leave out the non-learned co-occurrence rows")
    args = parser.parse_args(argv)

    from mmrec.io import atomic_open
    from mmrec.pipelines.cdr import apply_overrides, train_cdr

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    if not args.table_only:
        for seed in args.seeds:
            for pair in args.pairs:
                for model in args.models:
                    label = f"{model}[{','.join(args.set)}]" if args.set else model
                    if any(r["pair"] == pair and r["model"] == label and r["seed"] == seed for r in rows):
                        continue
                    t0 = time.perf_counter()
                    config = apply_overrides({"model": model, "seed": seed}, args.set)
                    run_dir = out / "runs" / f"{pair}-{model}-{seed}" if args.save_runs else None
                    report = train_cdr(args.data, pair, out=run_dir, config=config)
                    row = {k: report[k] for k in ("pair", "seed", "best_epoch", "epochs_run", "seconds", "metrics")}
                    row["model"] = label
                    row["config"] = report["config"]
                    rows.append(row)
                    with open(results, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{pair} {label} seed {seed}: " + ", ".join(
                        f"{t} NDCG@10 {m['NDCG@10']:.4f}" for t, m in report["metrics"].items())
                        + f" ({time.perf_counter() - t0:.0f} s, best epoch {report['best_epoch']})", flush=True)
    reference = {}
    if args.reference:
        for pair in args.pairs:
            reference.update({(pair, t): m for t, m in cooccurrence_reference(args.data, pair).items()})
    text = table(rows, reference)
    with atomic_open(out / "table.md") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
