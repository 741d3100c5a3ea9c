"""Training speed and test AUC of mmrec's MMoE and PEPNet against torch-rechub's MMOE, same data.

What it does, in one run on this machine:

1. **Data.** A SYNTHETIC log from ``mmrec rank simulate`` (default 5000 users x ~100 impressions,
   10,000 items) and RQ-Kmeans codes of its item content vectors from ``mmrec quantize`` (3 levels x
   32), in ``OUT/data``. :func:`mmrec.rankers.prepare_data` splits it by time (latest 20 % = test) and
   encodes the ids; the encoded columns ``user_id, item_id, author_id, domain, c1, c2, c3``, the
   click histories and the labels ``click, like`` of both splits go to ``OUT/data/arrays.npz``. Both
   tools see exactly these rows and ids: mmrec re-reads the log and codes files (the same
   deterministic preparation), torch-rechub reads the ``.npz``. ``follow`` is left out:
   torch-rechub has no label masks.
2. **Peer.** torch-rechub 0.9.0 in its own venv (``--peer-venv``, made here when missing as in
   /work/shared/BENCH-PEERS.md: ``python3 -m venv DIR && DIR/bin/pip install torch==2.14.1
   torchvision==0.29.1 && DIR/bin/pip install torch-rechub``): 7 ``SparseFeature``s (embed dim 16),
   ``MMOE(n_expert=4, expert dims [64, 32], tower dims [16])``, ``MTLTrainer`` with Adam lr 1e-3, no
   weight decay, its ``DataGenerator`` loaders (batch ``--batch-size``, no workers). Training time is
   its own ``train_one_epoch`` calls, timed around each call.
3. **mmrec.** ``mmrec.pipelines.rank.train`` on the same inputs: MMoE with the same sizes, and PEPNet
   (tower [64, 32], gate hidden 64); Adam lr 1e-3, same batch size and epochs. Training time is the
   trainer's own epoch loop (``train.seconds``); test metrics are the trainer's report, computed on
   the same test rows by the same code.
   Two input sets, each with its own torch-rechub baseline: *ids + codes* (the 7 columns above, no
   history) and *+ 20 clicks*: each row's latest 20 earlier clicks of the same user, as item ids
   and codes (``.npz`` columns ``hist_*``, 0 = padding). torch-rechub mean-pools them
   (``SequenceFeature(pooling="mean", shared_with=...)``); mmrec's MMoE mean-pools them too
   (``history_attention: mean``) and PEPNet uses DIN target attention.
4. **GPU.** Where CUDA is present, PEPNet again on the GPU with AMP (bfloat16, else float16).

Every run is a fresh subprocess, one after the other, with ``--threads`` torch threads (default 1:
on this 2-core machine shared with other jobs, 2 threads thrash). Test AUC and GAUC of all runs are
computed by the same code (:mod:`mmrec.rankers.metrics`) on the same test rows. The data is fixed;
training is repeated for ``--seeds`` seeds (default 3), all tools for one seed before the next, since
a single seed's test AUC moves by about +-0.01 here (torch-rechub's MMOE: 0.7226 with seed 0, 0.7105
with seed 1). One run per seed: the machine is shared, so samples/s can move by tens of percent from
run to run; the table gives medians of samples/s and of the per-seed speed ratio, and AUC means.
Results go to a table on stdout and to ``bench-out/rankers-bench.json`` (``--json-out``).

    .venv/bin/python bench/rankers.py                         # the full run (about 15 minutes here)
    .venv/bin/python bench/rankers.py --users 500 --epochs 1  # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from peers import ensure_venv

REPO = Path(__file__).resolve().parents[1]
TASKS = ["click", "like"]
COLUMNS = ["user_id", "item_id", "author_id", "domain", "c1", "c2", "c3"]
EMBED_DIM = 16
HISTORY = 20

RECHUB_CHILD = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[3]))
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.multi_task import MMOE
from torch_rechub.trainers import MTLTrainer
from torch_rechub.utils.data import DataGenerator
arrays, out, threads, batch, epochs, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
history = sys.argv[7] == "history"
a = np.load(arrays)
columns = json.loads(str(a["columns"]))
sizes = json.loads(str(a["sizes"]))
torch.manual_seed(seed)
features = [SparseFeature(c, vocab_size=sizes[c], embed_dim=16) for c in columns]
if history:  # the click history, mean-pooled over the item's id and code tables (0 = padding)
    features += [SequenceFeature(f"hist_{c}", vocab_size=sizes[c], embed_dim=16, pooling="mean", shared_with=c, padding_idx=0)
                 for c in ("item_id", "c1", "c2", "c3")]
names = [f.name for f in features]
x = {split: {c: a[f"{split}_{c}"] for c in names} for split in ("train", "test")}
y = {split: a[f"{split}_labels"] for split in ("train", "test")}
train_dl, val_dl, test_dl = DataGenerator(x["train"], y["train"]).generate_dataloader(
    x_val=x["test"], y_val=y["test"], x_test=x["test"], y_test=y["test"], batch_size=batch)
model = MMOE(features, ["classification"] * 2, n_expert=4, expert_params={"dims": [64, 32]},
             tower_params_list=[{"dims": [16]}] * 2)
trainer = MTLTrainer(model, task_types=["classification"] * 2, optimizer_params={"lr": 1e-3, "weight_decay": 0.0},
                     n_epoch=epochs, device="cpu", model_path=out)
seconds = []
for _ in range(epochs):
    t0 = time.perf_counter()
    trainer.train_one_epoch(train_dl)
    seconds.append(time.perf_counter() - t0)
model.eval()
with torch.no_grad():  # its predict() wants a loader without labels; same forward pass
    preds = np.concatenate([model(x_dict).numpy() for x_dict, _ in test_dl]).astype(np.float64)
np.save(out + "/rechub-preds.npy", preds)
del trainer
print("RESULT " + json.dumps({"epoch_seconds": seconds, "rows": int(len(y["train"])) * epochs,
                              "parameters": sum(p.numel() for p in model.parameters())}))
"""

MMREC_CHILD = r"""
import json, sys
from mmrec.pipelines.rank import train
config = json.loads(sys.argv[1])
report = train(config, progress=False)
report.pop("table")
print("RESULT " + json.dumps({k: report[k] for k in ("train", "parameters", "device", "amp", "metrics")}))
"""

def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ensure_peer(venv: Path) -> dict[str, Any]:
    """torch-rechub's own venv, made unless a working one is there (:func:`peers.ensure_venv`)."""
    peer = ensure_venv("torch-rechub", venv)
    return {**peer, "torch_rechub": peer["versions"]["torch-rechub"]}


def _child(python: str, code: str, args: list[str], threads: int, log: Path) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO)
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        sys.exit(f"child failed ({python}); see {log}")
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT ")) if "RESULT" in done.stdout else "RESULT {}"
    return {**json.loads(line[len("RESULT "):]), "wall_s": round(time.perf_counter() - start, 2)}


def make_data(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Simulated log + codes + the shared encoded arrays; returns the base mmrec config."""
    from mmrec.pipelines.quantize import quantize
    from mmrec.rankers import load_config, prepare_data, simulate

    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    _log(f"simulating {args.users} users x ~{args.impressions} impressions over {args.items} items (SYNTHETIC)")
    summary = simulate(data, users=args.users, items=args.items, authors=max(args.items // 20, 1),
                       impressions=args.impressions, seed=args.seed)
    quantize(data / "emb", data / "codes", levels=3, codebook_size=args.codebook_size, seed=args.seed, progress=False)
    base = {
        "data": {"log": str(data / "behaviour.parquet"), "tasks": TASKS, "history": {"length": 0}},
        "features": [{"name": "sid", "kind": "codes", "path": str(data / "codes"), "levels": 3}],
        "optim": {"lr": 1e-3, "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
                  "threads": args.threads, "device": "cpu", "eval_batch_size": 8192},
    }
    cfg = load_config({**base, "data": {**base["data"], "history": {"length": HISTORY, "positive": "click"}},
                       "model": {"name": "mmoe"}})
    prepared = prepare_data(cfg.data, cfg.features)
    arrays: dict[str, np.ndarray] = {}
    for split, s in (("train", prepared.train), ("test", prepared.test)):
        codes = prepared.items.codes["sid"][s.item_row].numpy() + 1  # rechub has no -1 padding: shift, 0 = none
        cols = {"user_id": s.sparse["user_id"], "item_id": prepared.items.item_id[s.item_row],
                "author_id": s.sparse["author_id"], "domain": s.domain}
        for name, values in cols.items():
            arrays[f"{split}_{name}"] = values.numpy().astype(np.int64)
        for j in range(3):
            arrays[f"{split}_c{j + 1}"] = codes[:, j].astype(np.int64)
        hist_codes = prepared.items.codes["sid"][s.history].numpy() + 1  # (N, T, 3); padding rows -> 0
        arrays[f"{split}_hist_item_id"] = prepared.items.item_id[s.history].numpy().astype(np.int64)  # padding -> 0
        for j in range(3):
            arrays[f"{split}_hist_c{j + 1}"] = hist_codes[:, :, j].astype(np.int64)
        arrays[f"{split}_labels"] = s.labels.numpy().astype(np.float32)
        arrays[f"{split}_group"] = s.group.numpy()
        arrays[f"{split}_domain_id"] = s.domain.numpy()
    sizes = {name: int(prepared.schema.sparse[name]) for name in ("user_id", "item_id", "author_id")}
    sizes["domain"] = len(prepared.schema.domains)
    sizes.update({f"c{j + 1}": int(prepared.schema.codes["sid"][j]) + 1 for j in range(3)})
    np.savez(data / "arrays.npz", columns=json.dumps(COLUMNS), sizes=json.dumps(sizes), **arrays)
    return {"base": base, "rows": summary["rows"], "train_rows": len(prepared.train), "test_rows": len(prepared.test),
            "domains": list(prepared.schema.domains), "sizes": sizes}


def _record(rows: dict[str, dict[str, Any]], name: str, group: str, device: str, parameters: int, seed: int,
            samples_per_s: float, train_s: float, test: dict[str, Any]) -> None:
    row = rows.setdefault(name, {"group": group, "device": device, "parameters": parameters, "seeds": [],
                                 "samples_per_s": [], "train_s": [], "test": []})
    row["seeds"].append(seed)
    row["samples_per_s"].append(samples_per_s)
    row["train_s"].append(round(train_s, 2))
    row["test"].append(test)


def score(preds: np.ndarray, npz: dict[str, np.ndarray], domains: list[str]) -> dict[str, Any]:
    """Test AUC and GAUC per task of the peer's predictions, by the code mmrec's trainer reports with."""
    from mmrec.rankers.metrics import metrics_table

    labels = npz["test_labels"]
    table = metrics_table(labels, np.ones_like(labels, bool), preds, npz["test_domain_id"], npz["test_group"], TASKS, domains)
    return {t: {"auc": table[t]["all"]["auc"], "gauc": table[t]["all"]["gauc"]} for t in TASKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--impressions", type=int, default=100)
    parser.add_argument("--codebook-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every run (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the first training run")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per run, one after the other (default 3)")
    parser.add_argument("--no-history", action="store_true", help="skip the runs with a click history")
    parser.add_argument("--peer-venv", default=str(REPO / "bench-out" / "peer-rechub"))
    parser.add_argument("--out", default=str(REPO / "bench-out" / "rankers"), help="work folder")
    parser.add_argument("--json-out", default=str(REPO / "bench-out" / "rankers-bench.json"))
    args = parser.parse_args()

    import torch

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    peer = ensure_peer(Path(args.peer_venv))
    data = make_data(work, args)
    npz = dict(np.load(work / "data" / "arrays.npz"))
    base = data["base"]
    mmoe = {"name": "mmoe", "experts": 4, "expert": [64, 32], "tower": [16]}
    pepnet = {"name": "pepnet", "tower": [64, 32], "gate_hidden": 64}
    hist = {"history": {"length": HISTORY, "positive": "click"}}
    rechub = f"torch-rechub {peer['torch_rechub']} MMOE"
    # (group, row name, tool, model config or None for the peer, data overrides, device)
    plans = [("ids + codes", rechub, "rechub", None, {}, "cpu"),
             ("ids + codes", "mmrec MMoE", "mmrec", {**mmoe, "history_attention": "none"}, {}, "cpu"),
             ("ids + codes", "mmrec PEPNet", "mmrec", {**pepnet, "history_attention": "none"}, {}, "cpu")]
    if not args.no_history:
        plans += [(f"+ {HISTORY} clicks", f"{rechub}, mean-pooled", "rechub", None, hist, "cpu"),
                  (f"+ {HISTORY} clicks", "mmrec MMoE, mean-pooled", "mmrec", {**mmoe, "history_attention": "mean"}, hist, "cpu"),
                  (f"+ {HISTORY} clicks", "mmrec PEPNet, DIN", "mmrec", pepnet, hist, "cpu")]
    if torch.cuda.is_available():
        plans.append(("ids + codes", "mmrec PEPNet, CUDA + AMP", "mmrec", {**pepnet, "history_attention": "none"}, {}, "cuda"))
    rows: dict[str, dict[str, Any]] = {}  # one row per plan, one entry per training seed
    for i in range(args.seeds):
        seed = args.seed + i
        for group, name, tool, model, data_extra, device in plans:
            _log(f"seed {seed}: {name} ({group}) on {device}: {data['train_rows']} training rows x {args.epochs} epochs, batch {args.batch_size}")
            if tool == "rechub":
                r = _child(str(Path(args.peer_venv) / "bin" / "python"), RECHUB_CHILD,
                           [str(work / "data" / "arrays.npz"), str(work), str(args.threads), str(args.batch_size),
                            str(args.epochs), str(seed), "history" if data_extra else "none"], args.threads, work / f"rechub-{seed}.log")
                _record(rows, name, group, "cpu", r["parameters"], seed, r["rows"] / sum(r["epoch_seconds"]),
                        sum(r["epoch_seconds"]), score(np.load(work / "rechub-preds.npy"), npz, data["domains"]))
                continue
            config = json.loads(json.dumps(base))
            config["model"] = {"embedding_dim": EMBED_DIM, **model}
            config["data"].update(data_extra)
            config["optim"].update(device=device, seed=seed)
            config["out"] = str(work / "mmrec-run")
            r = _child(sys.executable, MMREC_CHILD, [json.dumps(config)], args.threads, work / f"mmrec-{seed}.log")
            test = {t: {"auc": r["metrics"][t]["all"]["auc"], "gauc": r["metrics"][t]["all"]["gauc"]} for t in TASKS}
            _record(rows, name, group, r["device"], r["parameters"], seed, r["train"]["samples_per_s"], r["train"]["seconds"], test)

    peers = {row["group"]: row for row in rows.values() if row is rows.get(rechub) or row is rows.get(f"{rechub}, mean-pooled")}
    for row in rows.values():
        ratios = [a / b for a, b in zip(row["samples_per_s"], peers[row["group"]]["samples_per_s"])]
        row["speed_vs_rechub_median"] = round(float(np.median(ratios)), 2)
        row["samples_per_s_median"] = round(float(np.median(row["samples_per_s"])))
        for t in TASKS:
            for m in ("auc", "gauc"):
                values = [test[t][m] for test in row["test"]]
                row[f"{t}_{m}_mean"], row[f"{t}_{m}_range"] = float(np.mean(values)), [min(values), max(values)]
    header = f"{'inputs':<12} {'run':<40} {'samples/s':>9} {'x rechub':>8} " + \
        " ".join(f"{t + ' AUC':>16} {t + ' GAUC':>10}" for t in TASKS)
    lines = [header]
    for name, row in rows.items():
        metrics = " ".join(f"{row[f'{t}_auc_mean']:.4f} ±{(row[f'{t}_auc_range'][1] - row[f'{t}_auc_range'][0]) / 2:.4f} "
                           f"{row[f'{t}_gauc_mean']:10.4f}" for t in TASKS)
        lines.append(f"{row['group']:<12} {name:<40} {row['samples_per_s_median']:9.0f} {row['speed_vs_rechub_median']:8.2f} {metrics}")
    print("\n".join(lines))
    print(f"(median over {args.seeds} training seed(s) of samples/s and of the per-seed ratio to torch-rechub; "
          "AUC/GAUC: mean, ± half the range over seeds)")
    if not torch.cuda.is_available():
        print("(no GPU here: the CUDA + AMP row is measured only where one is present)")
    result = {
        "synthetic_data": True, "machine": f"{os.cpu_count()} CPUs, shared with other jobs; one run per seed",
        "load_average_at_end": os.getloadavg()[0], "args": vars(args), "peer": peer,
        "data": {k: v for k, v in data.items() if k != "base"}, "runs": rows, "table": lines,
        "cuda": torch.cuda.is_available(), "mmrec_version": __import__("mmrec").__version__,
    }
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    _log(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
