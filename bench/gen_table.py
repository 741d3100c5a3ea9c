"""Generative retrieval on real Amazon data (validation split): code sets, the generative table, cornac's TIGER.

    OMP_NUM_THREADS=1 python bench/gen_table.py --datasets Scientific,Beauty --seeds 0,1,2 \
        --cornac-venv /work/bench-venvs/peer-cornac

(docs/benchmarks.md, "Generative retrieval", gives the reduced command that fits a shared 2-core VM.)
Scientific's item text is title, brand and categories (``--description-chars 0``: TIGER's fields, no
description; 4x fewer MiniLM tokens).

Stages, each skipped when its output is already there (``--fresh`` retrains the compared runs):

1. *Data*: ``mmrec seq import --format lcrec`` of ``--data-root/DS`` into ``OUT/data/DS``.
2. *Item vectors*: Scientific: MiniLM over the item text (``mmrec extract --image none --audio none``)
   and the same QARM-aligned (``mmrec align --emb``; pairs mined with ``positive=train``: the log's
   ``train`` label is 0 on each user's last listed item, the validation target, so no pair sees it).
   Beauty (no text): the item vectors of a SASRec run (seed 0 of the SASRec row) through
   ``mmrec retrieve export`` (collaborative semantic IDs).
3. *Code sets*: ``mmrec quantize`` per source x method (``rq-kmeans``, ``balanced``: ``--dedup level``;
   ``rq-vae``: ``--dedup suffix``, the collision-aware level needs residual k-means); collision rate
   before dedup and usage entropy per level from ``report.json``; each set trains one generative run
   (``--code-arch``, seed 0) for its Recall/NDCG@5/10.
4. *Table*: generative encoder-decoder and lazy decoder-only over each of ``--table-codes`` (seeds
   ``--seeds``; ``+`` separates several code sets of one data set, e.g. MiniLM and QARM codes, and
   ``NAME:lazy`` / ``NAME:ed`` trains one form only), SASRec (seeds ``--seeds``) and cooc; mean ± std; training seconds (best-epoch
   selection on validation NDCG@10 included, as for every mmrec retriever); users/s of constrained beam
   search (``evaluate_run`` over all validation users) vs FAISS exact inner-product search of the same
   users' SASRec vectors (user encoding + search, and search alone).
5. *Peer* (after every data set's mmrec runs): cornac 3.0.1's TIGER, ``GRID_CONFIG`` (rkmeans tokenizer,
   3 x 256 + its dedup level, Adam 5e-4, best-on-val NDCG@10 checkpoint over ``val_sample`` sessions)
   with ``--cornac-set`` overrides (sizes matched to mmrec's here), ``--cornac-epochs`` epochs under the
   same training-minutes cap as mmrec's runs (the epoch in progress ends at the deadline, as
   ``LoopConfig.max_minutes`` does), fed the same item vectors (``--peer-codes``), trained on the same
   training parts in its own venv; scored here by the same protocol (full ranking by beam search, beam
   20, history = the last 20 training items) on all validation users or a seeded ``--peer-users`` sample.

Every learned run is capped by ``--max-minutes`` (``--beauty-max-minutes`` on Beauty); the JSON says
which stopped on the cap. Figures go to ``OUT/gen_table.json`` and the tables to stdout (markdown).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
SOURCES = {"Scientific": ("minilm", "qarm"), "Beauty": ("sasrec",)}
METHODS = ("rq-kmeans", "balanced", "rq-vae")
_TAGS = {"encoder-decoder": "ed", "lazy-decoder": "lazy"}  # run-folder names
# cornac's pinned set (bench/peers.py) plus what its TIGER imports (cornac/models/tiger/requirements.txt)


def _log(message: str) -> None:
    print(f"[gen] {time.strftime('%H:%M:%S')} {message}", flush=True)


def _row(entry_report: dict, **extra) -> dict:
    v = entry_report["validation"]
    t = entry_report.get("train", {})
    return {**{m: v[m] for m in METRICS}, "train_s": t.get("seconds"), "epochs": len(t.get("history", [])) or None,
            "best_epoch": t.get("best_epoch"), "stopped": t.get("stopped"), "parameters": t.get("parameters"),
            "beam_users_per_s": v.get("beam_users_per_s"),
            "reused": entry_report.get("reused", False), **extra}


_TRAINED: set[Path] = set()  # runs trained by this invocation


def _train(data: Path, run: Path, job: dict, fresh: bool) -> dict:
    from mmrec.pipelines.retrieve import train

    if (run in _TRAINED or not fresh) and (run / "metrics.json").is_file():
        return {**json.loads((run / "metrics.json").read_text()), "reused": run not in _TRAINED}
    _log(f"train {job['model']} -> {run}")
    _TRAINED.add(run)
    return train(data, run, job, progress=False)


def _vectors(args, ds: str, data: Path, out: Path) -> dict[str, Path]:
    """The item-vector folders quantized on ``ds``: ``{source: emb folder}``."""
    from mmrec.pipelines.retrieve import export_run

    if ds == "Beauty":
        emb = out / "emb" / "Beauty-sasrec"
        if not (emb / "manifest.json").is_file():
            export_run(out / "runs" / ds / "sasrec-s0", emb)
        return {"sasrec": emb}
    from mmrec.pipelines.align import run_align
    from mmrec.pipelines.extract import extract

    minilm, qarm = out / "emb" / ds, out / "emb" / f"{ds}-qarm"
    if not (minilm / "manifest.json").is_file():
        _log(f"MiniLM over {ds}'s item text")
        shards = sorted(str(p) for p in data.glob("items-*.tar"))
        extract(shards, minilm, image=None, text="hf-text:all-MiniLM-L6-v2", audio=None, threads=args.threads,
                num_workers=1, device="cpu", progress=False)
    if not (qarm / "align.json").is_file():
        _log(f"QARM alignment of {ds}'s MiniLM vectors, pairs from the training part only")
        run_align(data / "behaviour.parquet", qarm, emb=minilm, progress=False,
                  config={"threads": args.threads, "pairs": {"positive": ["train"]}, "train": {"epochs": args.align_epochs}})
    return {"minilm": minilm, "qarm": qarm}


def _code_sets(args, ds: str, vectors: dict[str, Path], out: Path) -> dict[str, dict]:
    """``{name: {"codes": codes.parquet, "report": figures}}`` for every source x method."""
    from mmrec.pipelines.quantize import quantize

    sets = {}
    for source, emb in vectors.items():
        for method in METHODS:
            name = f"{source}-{method}"
            folder = out / "codes" / ds / name
            if not (folder / "report.json").is_file():
                _log(f"quantize {name}")
                quantize(emb, folder, method=method, dedup="suffix" if method == "rq-vae" else "level", seed=0,
                         threads=args.threads, progress=False)
            r = json.loads((folder / "report.json").read_text())
            sets[name] = {"codes": folder / "codes.parquet", "report": {
                "collision_rate_before_dedup": r["before_dedup"]["collision_rate"],
                "unique_id_pct_before_dedup": r["before_dedup"]["unique_id_pct"],
                "max_collision_before_dedup": r["before_dedup"]["max_collision"],
                "collision_rate_after_dedup": r["collision_rate"], "dedup": r["dedup"],
                "normalized_entropy_per_level": [round(lv["normalized_entropy"], 4) for lv in r["levels"]],
                "entropy_bits_per_level": [round(lv["entropy_bits"], 3) for lv in r["levels"]],
                "fit_s": r["fit_s"]}}
    return sets


def _loop(args, ds: str) -> dict:
    minutes = args.beauty_max_minutes if ds == "Beauty" else args.max_minutes
    return {"epochs": args.epochs, "max_minutes": minutes, "patience": args.patience, "progress": False}


def _archs(args) -> dict[str, dict]:
    """The two generative forms at about equal parameters: ``--gen-set`` plus each form's ``--*-set``."""
    return {"generative (encoder-decoder)": {**args.gen_set, "arch": "encoder-decoder", **args.ed_set},
            "generative (lazy decoder-only)": {**args.gen_set, "arch": "lazy-decoder", **args.lazy_set}}


def _gen_job(args, ds: str, codes: Path, arch: dict, seed: int) -> dict:
    return {"model": "generative", "codes": str(codes), "seed": seed, "generative": arch, "loop": _loop(args, ds)}


def _faiss_speed(run: Path, k: int = 10) -> dict:
    """Exact inner-product FAISS search of every validation user's SASRec vector: users/s with the user
    encoding (the transformer over the history) and of the search alone."""
    import numpy as np
    import torch

    from mmrec.index.exact import faiss_module
    from mmrec.pipelines.retrieve import load_run
    from mmrec.retrieval.data import read_sequences

    faiss = faiss_module()
    model, config = load_run(run)
    history, _ = read_sequences(config["job"]["data"])[0].split_last()
    users = np.arange(len(history))
    start = time.perf_counter()
    with torch.no_grad():
        queries = torch.cat([model(torch.as_tensor(history.padded(users[i: i + 1024], config["model"]["max_len"])))
                             for i in range(0, len(users), 1024)]).numpy()[:, 0]  # (U, D): one interest
        items = model.item_vectors().numpy()
    encoded = time.perf_counter()
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(np.ascontiguousarray(items, dtype=np.float32))
    index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    done = time.perf_counter()
    return {"users": len(users), "users_per_s": round(len(users) / (done - start), 1),
            "search_users_per_s": round(len(users) / (done - encoded), 1), "k": k}


def _cornac(args, ds: str, data: Path, emb: Path, out: Path, seed: int) -> dict:
    """cornac's TIGER in its venv (this file's ``--cornac-worker`` mode): spec and inputs under ``out``."""
    import numpy as np

    from mmrec.retrieval.data import ITEM_KEY, read_sequences
    from mmrec.store import read_embeddings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peers import ensure_venv, peer_python

    venv = ensure_venv("cornac", Path(args.cornac_venv) if args.cornac_venv else None)
    seqs, _ = read_sequences(data)
    keys, vectors = read_embeddings(emb)
    row = {k: i for i, k in enumerate(keys)}
    features = np.stack([vectors[row[ITEM_KEY.format(i)]] for i in range(seqs.n_items)]).astype(np.float32)
    work = out / "cornac" / ds
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "features.npy", features)
    (work / "sequences.json").write_text(json.dumps([seqs[u].tolist() for u in range(len(seqs))]))
    train_minutes = args.beauty_max_minutes if ds == "Beauty" else args.max_minutes
    spec = {"work": str(work), "seed": seed, "threads": args.threads, "users": args.peer_users, "train_minutes": train_minutes,
            "config": {"n_epochs": args.cornac_epochs, "n_beams": 20, "max_len": 20, **args.cornac_set}}
    (work / "spec.json").write_text(json.dumps(spec))
    minutes = args.cornac_max_minutes
    _log(f"cornac TIGER on {ds}: {args.cornac_epochs} epochs, cap {minutes:.0f} min")
    start = time.perf_counter()
    try:
        done = subprocess.run([peer_python(venv["venv"]), __file__, "--cornac-worker", str(work / "spec.json")],
                              capture_output=True, text=True, timeout=minutes * 60, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"killed at the cap of {minutes:.0f} min", "wall_s": round(time.perf_counter() - start, 1)}
    (work / "worker.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return {**json.loads((work / "result.json").read_text()), "versions": venv["versions"], "wall_s": round(time.perf_counter() - start, 1)}


def _cornac_worker(spec_path: str) -> int:
    """Runs in cornac's venv (numpy + cornac only): TIGER ``GRID_CONFIG`` on the training parts, then
    every user's validation target ranked from its last ``max_len`` training items (beam search)."""
    import numpy as np
    import torch
    from cornac.data import FeatureModality
    from cornac.eval_methods import NextItemEvaluation
    from cornac.models import TIGER
    from cornac.models.tiger import GRID_CONFIG

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    work = Path(spec["work"])
    sequences = json.loads((work / "sequences.json").read_text())
    features = np.load(work / "features.npy")
    train = [(str(u), str(i), float(t)) for u, s in enumerate(sequences) for t, i in enumerate(s[:-1])]
    val = [(str(u), str(i), float(t)) for u, s in enumerate(sequences) for t, i in enumerate(s)]
    ids = [str(i) for i in range(len(features))]
    method = NextItemEvaluation.from_splits(train_data=train, test_data=val, val_data=val, fmt="SIT", mode="last",
                                            item_feature=FeatureModality(features=features, ids=ids))
    config = {**GRID_CONFIG, **spec["config"], "seed": spec["seed"], "device": "cpu"}
    model = TIGER(**config)
    start = time.perf_counter()
    if spec["train_minutes"]:  # mmrec's max_minutes: the epoch in progress ends at the deadline
        import cornac.models.tiger.recom_tiger as recom

        deadline, batches = start + 60 * spec["train_minutes"], recom.session_seq_iter

        def capped(*a, **k):
            for batch in batches(*a, **k):
                if time.perf_counter() > deadline:
                    return
                yield batch

        recom.session_seq_iter = capped
    model.fit(method.train_set, method.val_set)
    train_s = time.perf_counter() - start
    iid = method.global_iid_map
    ranks = []
    start = time.perf_counter()
    users = np.arange(len(sequences))
    if spec["users"] and spec["users"] < len(users):
        users = np.sort(np.random.default_rng(0).choice(len(users), spec["users"], replace=False))
    for u in users:
        s = sequences[u]
        history = [iid[str(i)] for i in s[:-1]][-config["max_len"]:]
        scores = model.score(0, history)
        target = iid[str(s[-1])]
        ranks.append(int((scores > scores[target]).sum()) if scores[target] > -1e9 else 10**9)
    score_s = time.perf_counter() - start
    ranks = np.array(ranks)
    result = {"train_s": round(train_s, 1), "users": len(ranks), "train_minutes_cap": spec["train_minutes"], "beam_users_per_s": round(len(ranks) / score_s, 1),
              "recipe": "GRID_CONFIG", "overrides": spec["config"],
              "parameters": sum(p.numel() for p in model.model.parameters())}
    for k in (5, 10):
        result[f"recall@{k}"] = float((ranks < k).mean())
        result[f"ndcg@{k}"] = float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    (work / "result.json").write_text(json.dumps(result))
    return 0


def _cell(runs: list[dict], m: str) -> str:
    values = [r[m] for r in runs if r.get(m) is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def _print_tables(result: dict) -> None:
    for ds, block in result["datasets"].items():
        print(f"\n### {ds}: code sets ({block.get('code_arch', 'generative')}, seed 0)\n")
        print("| code set | collision rate before dedup | dedup | entropy per level (normalised) | "
              + " | ".join(METRICS) + " | train s | stopped |")
        print("|---" * (6 + len(METRICS)) + "|")
        for name, s in block["code_sets"].items():
            r, run = s["report"], s.get("run", {})
            print(f"| {name} | {r['collision_rate_before_dedup']:.4f} | {r['dedup']} | "
                  f"{' / '.join(f'{abs(e):.3f}' for e in r['normalized_entropy_per_level'])} | "
                  + " | ".join(f"{run[m]:.4f}" if m in run else "-" for m in METRICS)
                  + f" | {run.get('train_s', '-')} | {run.get('stopped', '-')} |")
        print(f"\n### {ds}: validation, full ranking over {block['items']:,} items, {block['users']:,} users\n")
        print("| model | seeds | " + " | ".join(METRICS) + " | train s | users/s |")
        print("|---" * (4 + len(METRICS)) + "|")
        for name, row in block["table"].items():
            runs = row["runs"]
            train_s = [r["train_s"] for r in runs if r.get("train_s") is not None]
            seconds = f"{statistics.mean(train_s):.0f}" if train_s else "-"
            print(f"| {name} | {len(runs)} | " + " | ".join(_cell(runs, m) for m in METRICS)
                  + f" | {seconds} | {row.get('users_per_s', '-')} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cornac-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data-root", default="/work/shared/data/amazon-seq")
    p.add_argument("--datasets", default="Scientific,Beauty")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the table's generative and SASRec rows")
    p.add_argument("--beauty-seeds", default=None, help="seeds on Beauty (default --seeds)")
    p.add_argument("--table-codes", default="Scientific=minilm-rq-kmeans,Beauty=sasrec-rq-kmeans",
                   help="DS=code set(s) of the table's generative rows, several joined by +; NAME:lazy or NAME:ed "
                        "trains only that form on NAME (default both)")
    p.add_argument("--code-runs", default="all", help="code sets that train one generative run (--code-arch), "
                   "comma-separated, or all / none")
    p.add_argument("--code-arch", default="encoder-decoder", choices=("encoder-decoder", "lazy-decoder"),
                   help="the generative form of the code-set runs")
    p.add_argument("--peer-codes", default="Scientific=minilm,Beauty=sasrec", help="DS=item vectors fed to cornac's TIGER")
    p.add_argument("--out", default="bench-out/gen")
    p.add_argument("--description-chars", type=int, default=0, help="description characters in an item's text")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-minutes", type=float, default=3.0, help="training minutes per learned run (Scientific)")
    p.add_argument("--beauty-max-minutes", type=float, default=5.0, help="training minutes per learned run on Beauty")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--align-epochs", type=int, default=10)
    p.add_argument("--gen-set", default="{}", help="JSON: GenerativeConfig fields of every generative run")
    p.add_argument("--ed-set", default="{}", help="JSON: GenerativeConfig fields of the encoder-decoder runs")
    p.add_argument("--lazy-set", default='{"encoder_layers": 0}', help="JSON: GenerativeConfig fields of the lazy decoder-only runs")
    p.add_argument("--peer-datasets", default="Scientific,Beauty", help="data sets cornac's TIGER runs on")
    p.add_argument("--peer-users", type=int, default=None, help="validation users cornac's TIGER is scored on "
                   "(a seeded sample; default all)")
    p.add_argument("--cornac-set", default="{}", help="JSON: TIGER constructor arguments over GRID_CONFIG")
    p.add_argument("--cornac-venv", default=None, help="cornac 3.0.1 venv (default: made under bench-out/peer-cornac)")
    p.add_argument("--cornac-epochs", type=int, default=5)
    p.add_argument("--cornac-max-minutes", type=float, default=20.0, help="cornac's wall-clock cap per data set (fit + scoring)")
    p.add_argument("--no-peer", action="store_true", help="skip cornac")
    p.add_argument("--prep-only", action="store_true", help="stop after the baselines and code sets (no generative runs)")
    p.add_argument("--fresh", action="store_true", help="retrain the generative runs even when their folders exist")
    args = p.parse_args(argv)
    if args.cornac_worker:
        return _cornac_worker(args.cornac_worker)
    args.gen_set, args.ed_set, args.lazy_set, args.cornac_set = map(json.loads, (args.gen_set, args.ed_set, args.lazy_set,
                                                                               args.cornac_set))

    import torch

    from mmrec.pipelines.seq_import import import_sequences
    from mmrec.retrieval.data import read_sequences

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    table_codes = dict(x.split("=") for x in args.table_codes.split(","))
    peer_codes = dict(x.split("=") for x in args.peer_codes.split(","))
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": sys.argv[1:], "datasets": {}}
    json_path = out / "gen_table.json"
    for ds in args.datasets.split(","):
        seeds = [int(s) for s in (args.beauty_seeds if ds == "Beauty" and args.beauty_seeds else args.seeds).split(",")]
        data = out / "data" / ds
        if not (data / "seq.json").is_file():
            import_sequences(Path(args.data_root) / ds, ds, data, format="lcrec", description_chars=args.description_chars)
        seqs, _ = read_sequences(data)
        block = result["datasets"][ds] = {"users": len(seqs), "items": seqs.n_items, "table": {}, "code_sets": {}}
        loop = _loop(args, ds)
        sasrec = [_row(_train(data, out / "runs" / ds / f"sasrec-s{s}", {"model": "sasrec", "seed": s, "loop": loop}, False), seed=s)
                  for s in seeds]
        cooc = _row(_train(data, out / "runs" / ds / "cooc", {"model": "cooc"}, False))
        sets = _code_sets(args, ds, _vectors(args, ds, data, out), out)
        block["code_sets"] = sets
        if args.prep_only:
            for s in sets.values():
                s["codes"] = str(s["codes"])
            block["table"] = {"SASRec (mmrec)": {"runs": sasrec}, "cooc": {"runs": [cooc]}}
            continue
        code_label, code_arch = next((label, arch) for label, arch in _archs(args).items() if arch["arch"] == args.code_arch)
        block["code_arch"] = code_label
        for name, s in sets.items():
            if args.code_runs == "all" or name in args.code_runs.split(","):
                run = out / "runs" / ds / f"gen-{_TAGS[args.code_arch]}-{name}-s0"
                s["run"] = _row(_train(data, run, _gen_job(args, ds, s["codes"], code_arch, 0), args.fresh))
            s["codes"] = str(s["codes"])
        for entry in table_codes[ds].split("+"):
            codes, _, forms = entry.partition(":")
            for label, arch in _archs(args).items():
                if forms and _TAGS[arch["arch"]] not in forms.split("/"):
                    continue
                runs = []
                for seed in seeds:
                    run = out / "runs" / ds / f"gen-{_TAGS[arch['arch']]}-{codes}-s{seed}"
                    runs.append(_row(_train(data, run, _gen_job(args, ds, sets[codes]["codes"], arch, seed), args.fresh), seed=seed))
                speeds = [r["beam_users_per_s"] for r in runs if r.get("beam_users_per_s")]
                block["table"][f"{label}, {codes}"] = {"runs": runs, "users_per_s": round(statistics.mean(speeds), 1) if speeds else None}
        speed = _faiss_speed(out / "runs" / ds / f"sasrec-s{seeds[0]}")
        block["table"]["SASRec (mmrec)"] = {"runs": sasrec, "users_per_s": speed["users_per_s"],
                                           "faiss_search_users_per_s": speed["search_users_per_s"]}
        block["table"]["cooc"] = {"runs": [cooc]}
        json_path.write_text(json.dumps(result, indent=2, default=str))
    for ds in [] if args.no_peer else [d for d in args.datasets.split(",") if d in args.peer_datasets.split(",")]:
        vectors = {"minilm": out / "emb" / ds, "qarm": out / "emb" / f"{ds}-qarm", "sasrec": out / "emb" / f"{ds}-sasrec"}
        seed = int((args.beauty_seeds if ds == "Beauty" and args.beauty_seeds else args.seeds).split(",")[0])
        peer = _cornac(args, ds, out / "data" / ds, vectors[peer_codes[ds]], out, seed)
        result["datasets"][ds]["table"][f"cornac TIGER (GRID_CONFIG, {peer_codes[ds]} vectors)"] = {
            "runs": [peer] if "error" not in peer else [], "users_per_s": peer.get("beam_users_per_s"), "peer": peer}
        json_path.write_text(json.dumps(result, indent=2, default=str))
    _print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
