"""MMBee on SYNTHETIC live-streaming data: GTR base vs +MFQ vs +GIE vs both, over seeds, by gifting activity.

The data is SYNTHETIC (:mod:`mmrec.synthetic.live_sim`): no public gifting log can be had offline. What the
simulator plants and therefore what each part can find: gifts depend on the *current* segment's
topic matched with the user's interests (MFQ's segment vector sees it, author ids cannot), on a
co-gifting community shared by users and authors (only the gifting / watching graphs reveal it:
GIE), on a per-author charisma and on a heavy-tailed per-user propensity.

Per seed (``--seeds``, default 0 1 2), in one process, one torch thread:

1. ``simulate_live(OUT/seed-S, users=--users, authors=--authors, seed=S)``;
2. :func:`mmrec.synthetic.live_sim.read_live_world`, :func:`mmrec.rankers.prepare_gtr_data` with tasks (watch, gift): the first 50 % of the log's
   time span is left to the offline graph store, training rows are the live impressions in 50-80 %,
   test rows those in 80-100 % (gift metrics on the watched test rows);
3. GIE on the rows before the training window only (no label leaks): :func:`mmrec.graphs.build_graphs`,
   :func:`mmrec.graphs.expand_metapaths` (``user>author>author`` over gifts and
   ``user-watches>author>author`` over watches, then Swing; top ``--expansion-k`` each) and
   :func:`mmrec.graphs.train_graphcl` with the authors' mean segment-token content as node attributes
   (the SYNTHETIC stand-in for ``mmrec extract`` author embeddings);
4. four GTR variants, same data, same seed: ``base`` (SIM search + DIN over ids and categories),
   ``+MFQ`` (MFQ over the target segment's frame / speech / comment tokens, trained end to end),
   ``+GIE`` (expanded-author sequences + GraphCL author embeddings), ``both``; ``--variants`` also
   offers ``"+MFQ no-orth"``, MFQ without its orthogonal projection (an ablation).

Output: a Markdown table (mean +- std over seeds of AUC, UAUC, GAUC of gifts; row ``planted``: the
simulator's own gift probabilities, the ceiling) overall and split by
the users' planted gift activity (``low`` = propensity below the 60th percentile, ``mid`` up to the
90th, ``high`` above), on stdout and in ``--out/live-table.md``, all runs in ``live-table.json``.

    .venv/bin/python bench/live_table.py                       # the README table (about 15 min here)
    .venv/bin/python bench/live_table.py --users 1500 --seeds 0 --epochs 1   # a smoke run
    .venv/bin/python bench/live_table.py --variants base +MFQ "+MFQ no-orth" --out bench-out/live-ablation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

MFQ = {"width": 32, "heads": 2, "queries": 2, "out_dim": 32}
VARIANTS = {  # name -> (MFQ config or None, GIE on)
    "base": (None, False), "+MFQ": (MFQ, False), "+GIE": (None, True), "both": (MFQ, True),
    "+MFQ no-orth": ({**MFQ, "orthogonal": False}, False),  # ablation: MFQ without the orthogonal projection
}
DEFAULT_VARIANTS = ("base", "+MFQ", "+GIE", "both")
GROUPS = ("low", "mid", "high")
METRICS = ("auc", "uauc", "gauc")
METAPATHS = ("user>author>author", "user-watches>author>author")


def author_content(folder: Path, data, graph_end_ts: int) -> torch.Tensor:
    """Per author, the mean over its segments before ``graph_end_ts`` of the segment's mean token (all modalities)."""
    from mmrec.synthetic.live_sim import SEGMENTS_FILE

    seg = pq.read_table(folder / SEGMENTS_FILE)
    author = seg.column("author_id").to_numpy()
    early = seg.column("start").to_numpy() < graph_end_ts
    pooled = sum((data.tokens[m] * data.masks[m][..., None]).sum(1) / data.masks[m].sum(1, keepdim=True).clamp(min=1)
                 for m in data.tokens).numpy()  # (S, d)
    sums = np.zeros((data.num_authors, pooled.shape[1]))
    np.add.at(sums, author[early], pooled[early])
    counts = np.bincount(author[early], minlength=data.num_authors)[:, None]
    return torch.from_numpy(sums / np.maximum(counts, 1)).float()


def planted_scores(folder: Path, data, sim: dict) -> np.ndarray:
    """The simulator's own gift probability logit of every sample row: the ceiling any model could reach."""
    from mmrec.synthetic.live_sim import AUTHORS_FILE, SEGMENTS_FILE, USERS_FILE

    cfg = sim["config"]
    users = pq.read_table(folder / USERS_FILE)
    authors = pq.read_table(folder / AUTHORS_FILE)
    interest = np.asarray(users.column("interest").to_pylist())
    topic = pq.read_table(folder / SEGMENTS_FILE, columns=["topic"]).column(0).to_numpy()
    u, a = data.user, data.author
    m = interest[u, topic[data.segment]]
    same = users.column("community").to_numpy()[u] == authors.column("community").to_numpy()[a]
    return (sim["gift_bias"] + np.log(users.column("propensity").to_numpy()[u]) + cfg["gift_match"] * cfg["topics"] * m
            + cfg["gift_community"] * same + authors.column("charisma").to_numpy()[a])


def run_seed(seed: int, args, out: Path) -> list[dict]:
    variants = args.variants
    from mmrec.graphs import build_graphs, expand_metapaths, train_graphcl
    from mmrec.rankers.gtr_data import prepare_gtr_data
    from mmrec.rankers.gtr_train import build_gtr, train_gtr
    from mmrec.synthetic.live_sim import read_live_world, simulate_live

    folder = out / f"seed-{seed}"
    t0 = time.perf_counter()
    sim = simulate_live(folder, users=args.users, authors=args.authors, seed=seed)
    world = read_live_world(folder)
    log = world.log
    data = prepare_gtr_data(world, tasks=("watch", "gift"))
    sim_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    graph = build_graphs(data.graph_rows(log), config={"n_users": args.users, "n_authors": args.authors})
    expansions = expand_metapaths(graph, METAPATHS, k=args.expansion_k)
    expand_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = {"author": author_content(folder, data, data.graph_end_ts)}
    embeddings = train_graphcl(graph, features=features, config={"dim": args.graph_dim, "epochs": args.graphcl_epochs,
                                                                  "seed": seed})
    graphcl_s = time.perf_counter() - t0
    author_graph = embeddings["author"]

    groups = np.array([GROUPS.index(a) for a in world.gift_activity])
    from mmrec.rankers.gtr_train import gtr_metrics

    gift = data.tasks.index("gift")
    test = data.test[data.label_mask[data.test, gift]]
    truth = planted_scores(folder, data, sim)[test]
    y, users = data.label[test, gift], data.user[test]
    runs = [{"seed": seed, "variant": "planted", "seconds": 0.0, "test": gtr_metrics(y, truth, users),
             "by_group": {g: gtr_metrics(y[groups[users] == i], truth[groups[users] == i], users[groups[users] == i])
                          for i, g in enumerate(GROUPS)}}]
    for variant in variants:
        mfq, use_gie = VARIANTS[variant]
        data.expansion, data.expansion_paths = None, 0
        if use_gie:
            data.set_expansions(expansions, METAPATHS, args.expansion_k)
        torch.manual_seed(seed)
        model = build_gtr(data, mfq=mfq, author_graph=author_graph if use_gie else None)
        t0 = time.perf_counter()
        report = train_gtr(model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                           user_groups=groups, group_names=GROUPS)
        run = {"seed": seed, "variant": variant, "seconds": round(time.perf_counter() - t0, 1),
               "test": report["test"], "by_group": report["by_group"], "test_watch": report.get("test_watch"),
               "train_rows": report["train_rows"], "parameters": report["parameters"]}
        runs.append(run)
        print(f"seed {seed} {variant:<5} AUC {run['test']['auc']:.4f} UAUC {run['test']['uauc']:.4f} "
              f"GAUC {run['test']['gauc']:.4f} | low AUC {run['by_group']['low']['auc']:.4f} "
              f"({run['seconds']:.0f} s)", flush=True)
    runs[1]["data"] = {k: sim[k] for k in ("rows", "live_rows", "video_rows", "live_watches", "gifts", "gift_rate")}
    runs[1]["data"].update(sim_s=round(sim_s, 1), graph_expand_s=round(expand_s, 1), graphcl_s=round(graphcl_s, 1),
                           gift_edges=int(graph["user", "gifts", "author"].edge_index.shape[1]),
                           watch_edges=int(graph["user", "watches", "author"].edge_index.shape[1]),
                           expanded_users=int(sum(1 for t in expansions.column("src_type").to_pylist() if t == "user")))
    return runs


def _cell(values: list[float]) -> str:
    v = np.asarray([x for x in values if x is not None and x == x], float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}" if len(v) else "n/a"


def table(runs: list[dict], variants: tuple[str, ...]) -> str:
    rows = (*variants, "planted")
    lines = ["| variant | AUC | UAUC | GAUC |", "|---|---|---|---|"]
    for variant in rows:
        mine = [r for r in runs if r["variant"] == variant]
        lines.append(f"| {variant} | " + " | ".join(_cell([r["test"][m] for r in mine]) for m in METRICS) + " |")
    lines += ["", "By user gifting activity (planted propensity: low < p60 <= mid < p90 <= high); "
              "test gifts per group and seed: " + ", ".join(
                  f"{g} {np.mean([r['by_group'][g]['positives'] for r in runs if r['variant'] == 'planted']):.0f}" for g in GROUPS), "",
              "| variant | group | AUC | UAUC | GAUC |", "|---|---|---|---|---|"]
    for group in GROUPS:
        for variant in rows:
            mine = [r for r in runs if r["variant"] == variant]
            lines.append(f"| {variant} | {group} | " + " | ".join(_cell([r["by_group"][group][m] for r in mine]) for m in METRICS) + " |")
    lines += ["", f"Gain over {variants[0]}, mean ± std over seeds of the per-seed difference (AUC):", "",
              "| variant | all | " + " | ".join(GROUPS) + " |", "|---|---|" + "---|" * len(GROUPS)]
    for variant in variants[1:]:
        cells = []
        for group in (None, *GROUPS):
            diffs = []
            for seed in sorted({r["seed"] for r in runs}):
                by = {r["variant"]: r for r in runs if r["seed"] == seed}
                pick = (lambda r: r["test"]["auc"]) if group is None else (lambda r, g=group: r["by_group"][g]["auc"])
                diffs.append(pick(by[variant]) - pick(by[variants[0]]))
            cells.append(f"{np.mean(diffs):+.4f} ± {np.std(diffs, ddof=1) if len(diffs) > 1 else 0.0:.4f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-out/live", help="working and output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--authors", type=int, default=200)
    from mmrec.cli._args import add_config_arguments
    from mmrec.pipelines.live import LiveTrainConfig

    shared = ("epochs", "batch_size", "lr", "expansion_k", "graph_dim", "graphcl_epochs")  # mmrec live train's defaults
    add_config_arguments(parser, LiveTrainConfig, exclude=[f.name for f in fields(LiveTrainConfig) if f.name not in shared])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        help="GTR variants, the first one the baseline of the gains (default: base +MFQ +GIE both)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        runs += run_seed(seed, args, out)
    text = ("SYNTHETIC data (mmrec.synthetic.live_sim), not real gifting logs. "
            f"{args.users} users, {args.authors} authors, seeds {args.seeds}, {args.epochs} epochs, "
            f"{args.threads} thread(s); wall time {time.perf_counter() - start:.0f} s.\n\n" + table(runs, tuple(args.variants)))
    print(text)
    (out / "live-table.md").write_text(text + "\n")
    (out / "live-table.json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
