"""Sequential retrieval on real Amazon data (validation split): pop, cooc, SASRec, KuaiFormer variants.

    OMP_NUM_THREADS=1 python bench/seq_table.py --datasets Scientific,Beauty --seeds 0 \
        --variants pop,cooc,sasrec,kuaiformer --max-minutes 8

Imports each data set from ``--data-root`` (``mmrec seq import --format lcrec``) into ``--out``, trains
every variant x seed with :func:`mmrec.pipelines.retrieve.train` (epochs capped by ``--epochs`` and
``--max-minutes``; early stopping on validation NDCG@10) and prints Recall/NDCG@5/10 (mean ± std over
seeds), Recall@10 over the long tail (targets with <= 5 training interactions), epochs, training
samples/s, wall time and whether the run hit the time cap; all figures go to
``OUT/seq_table-<datasets>.json``. For the first seed of each learned variant the validation users'
interests are also served (:func:`mmrec.pipelines.retrieve.serve_run`, ``--serve-users`` users, k=100)
through FAISS ``auto`` and the MISS tree; the table shows their queries/s and recall@100 against exact search.
Content / code variants read ``--emb-root/DS`` (``mmrec extract`` output over the imported shards),
``--codes-root/DS/codes.parquet`` (``mmrec quantize`` over those embeddings) and
``--qarm-codes-root/DS/codes.parquet`` (``mmrec quantize`` over ``mmrec align --positive train`` output:
QARM-aligned embeddings, pairs mined from the training part only). Validation figures are selected on the same
split by early stopping (the protocol's test items are not in the data folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

VARIANTS = {
    "pop": {"model": "pop"},
    "cooc": {"model": "cooc"},
    "sasrec": {"model": "sasrec"},
    "kuaiformer": {"model": "kuaiformer"},
    "kuaiformer+content": {"model": "kuaiformer", "emb": True},
    "kuaiformer+codes": {"model": "kuaiformer", "codes": "codes_root"},
    "kuaiformer+qarm-codes": {"model": "kuaiformer", "codes": "qarm_codes_root"},
    "kuaiformer-inbatch": {"model": "kuaiformer", "job": {"loss": "inbatch"}},
    "sasrec+transition": {"model": "sasrec", "config": "bench/configs/sasrec-transition.yaml"},
    "kuaiformer+transition": {"model": "kuaiformer", "config": "bench/configs/kuaiformer-transition.yaml"},
    "sasrec+transition-scalar": {"model": "sasrec", "config": "bench/configs/sasrec-transition-scalar.yaml"},
    "sasrec+transition2": {"model": "sasrec", "config": "bench/configs/sasrec-transition2.yaml"},
    "kuaiformer+transition-inbatch": {"model": "kuaiformer", "config": "bench/configs/kuaiformer-transition-inbatch.yaml"},
    "sasrec-inbatch": {"model": "sasrec", "job": {"loss": "inbatch"}},
    "kuaiformer-full": {"model": "kuaiformer", "job": {"loss": "full"}},
    "sasrec+content+transition2": {"model": "sasrec", "emb": True, "config": "bench/configs/sasrec-content-transition2.yaml"},
    "kuaiformer+content+transition2": {"model": "kuaiformer", "emb": True, "config": "bench/configs/kuaiformer-content-transition2.yaml"},
    # `mmrec tune` results (best.json as YAML); the content path comes from --emb-root
    "sasrec-tuned": {"model": "sasrec", "emb": True, "config": "bench/configs/sasrec-content-scientific.best.yaml"},
    "kuaiformer-tuned": {"model": "kuaiformer", "emb": True, "config": "bench/configs/kuaiformer-content-scientific.best.yaml"},
    "kuaiformer-tuned-full": {"model": "kuaiformer", "emb": True, "config": "bench/configs/kuaiformer-content-scientific.best.yaml",
                              "job": {"loss": "full"}},  # the tuned kuaiformer with the full softmax (the search drew only in-batch)
    # kuaiformer's own search with the full softmax (query-token readout, 1-4 interests; the same budget as sasrec's)
    "kuaiformer-full-tuned": {"model": "kuaiformer", "emb": True, "config": "bench/configs/kuaiformer-full-scientific.best.yaml"},
    # Beauty (no text): that setting's readout, lr, dropout and gate start with the hybrid's sizes and first-order term
    "kuaiformer+transition-tuned": {"model": "kuaiformer", "config": "bench/configs/kuaiformer-transition-beauty.yaml"},
    # the Beauty hybrid's own search (sasrec-transition-beauty.space.yaml, the defaults as its first trial)
    "sasrec+transition-tuned": {"model": "sasrec", "config": "bench/configs/sasrec-transition-beauty.best.yaml"},
    # kuaiformer with the two settings that search moved (max_len 20, gate start 4.6), dropout 0.3 (0.1: --set)
    "kuaiformer+transition-short-d3": {"model": "kuaiformer", "config": "bench/configs/kuaiformer-transition-beauty-short-d3.yaml"},
    # Scientific, the second round of both searches (*-scientific-round2.space.yaml: the same fields and budget)
    "sasrec-tuned2": {"model": "sasrec", "emb": True, "config": "bench/configs/sasrec-scientific-round2.best.yaml"},
    "kuaiformer-tuned2": {"model": "kuaiformer", "emb": True, "config": "bench/configs/kuaiformer-scientific-round2.best.yaml"},
}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
COLUMNS = (*METRICS, "tail_recall@10")  # tail: targets with <= 5 training interactions


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default="/work/shared/data/amazon-seq")
    p.add_argument("--datasets", default="Scientific,Beauty")
    p.add_argument("--variants", default="pop,cooc,sasrec,kuaiformer")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--out", default="bench-out/seq")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-minutes", type=float, default=8.0, help="training minutes per run (the cap)")
    p.add_argument("--serve-users", type=int, default=1000, help="validation users served through FAISS and the tree (0: no serving)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--emb-root", default=None)
    p.add_argument("--codes-root", default=None)
    p.add_argument("--qarm-codes-root", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainJob field for the learned variants (e.g. lr=0.002, model_config.dim=128)")
    args = p.parse_args(argv)

    import torch
    import yaml

    from mmrec.pipelines.retrieve import serve_run, train
    from mmrec.pipelines.seq_import import import_sequences

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    sets: dict = {}
    for text in args.set:
        key, _, value = text.partition("=")
        node = sets
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    rows, results = [], []
    for ds in args.datasets.split(","):
        data = out / "data" / ds
        if not (data / "seq.json").is_file():
            import_sequences(Path(args.data_root) / ds, ds, data, format="lcrec")
        for variant in args.variants.split(","):
            spec = dict(VARIANTS[variant])
            runs = []
            for seed in map(int, args.seeds.split(",")):
                job = {**(yaml.safe_load(Path(spec["config"]).read_text()) if "config" in spec else {}), **spec.get("job", {}),
                       "model": spec["model"], "seed": seed,
                       "loop": {"epochs": args.epochs, "max_minutes": args.max_minutes, "patience": args.patience, "progress": False}}
                if spec.get("emb"):
                    job["emb"] = str(Path(args.emb_root) / ds)
                if spec.get("codes"):
                    job["codes"] = str(Path(getattr(args, spec["codes"])) / ds / "codes.parquet")
                if spec["model"] not in ("pop", "cooc"):
                    for k, v in sets.items():
                        job[k] = {**job.get(k, {}), **v} if isinstance(v, dict) else v
                start = time.perf_counter()
                run = out / "runs" / ds / f"{variant}-s{seed}"
                report = train(data, run, job, progress=False)
                wall = time.perf_counter() - start
                t = report["train"]
                tail = report["validation"]["tail"]
                entry = {"dataset": ds, "variant": variant, "seed": seed, **{m: report["validation"][m] for m in METRICS},
                         "tail_recall@10": tail["recall@10"], "tail_ndcg@10": tail["ndcg@10"], "tail_users": tail["users"],
                         "epochs": len(t.get("history", [])) or None, "best_epoch": t.get("best_epoch"),
                         "samples_per_s": t.get("samples_per_s"), "train_s": t.get("seconds"), "wall_s": round(wall, 1),
                         "stopped": t.get("stopped"), "hit_cap": t.get("stopped") == "time"}
                if args.serve_users and spec["model"] not in ("pop", "cooc") and not runs:
                    for kind in ("auto", "tree"):
                        served = serve_run(run, kind=kind, k=100, max_users=args.serve_users)
                        entry[f"{kind}_queries_per_s"] = served["queries_per_s"]
                        entry[f"{kind}_recall@100_vs_exact"] = served["recall@100_vs_exact"]
                        entry[f"{kind}_scored_fraction"] = served["scored_fraction"]
                results.append(entry)
                runs.append(entry)
                print(json.dumps(entry), flush=True)
            rows.append((ds, variant, runs))
    (out / f"seq_table-{args.datasets.replace(',', '-')}.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'dataset':<11}{'variant':<23}" + "".join(f"{m:>18}" for m in COLUMNS)
          + f"{'epochs':>8}{'samples/s':>11}{'train s':>9}{'capped':>7}{'faiss q/s':>10}{'tree q/s':>9}{'tree R@100':>11}")
    for ds, variant, runs in rows:
        def cell(m, runs=runs):
            values = [r[m] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {sd:.4f}"

        sps = [r["samples_per_s"] for r in runs if r["samples_per_s"]]
        epochs = [r["epochs"] for r in runs if r["epochs"]]
        first = runs[0]
        print(f"{ds:<11}{variant:<23}" + "".join(f"{cell(m):>18}" for m in COLUMNS)
              + f"{(statistics.mean(epochs) if epochs else 0):>8.0f}{(statistics.mean(sps) if sps else 0):>11.0f}"
              + f"{statistics.mean(r['train_s'] or 0 for r in runs):>9.0f}{sum(r['hit_cap'] for r in runs):>5}/{len(runs)}"
              + f"{first.get('auto_queries_per_s') or '-':>10}{first.get('tree_queries_per_s') or '-':>9}"
              + f"{first.get('tree_recall@100_vs_exact') or 0:>11.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
