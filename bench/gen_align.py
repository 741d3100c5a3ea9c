"""Preference alignment of the generative retriever on the SYNTHETIC watch world, judged against its planted truth.

    OMP_NUM_THREADS=1 python bench/gen_align.py --seeds 0,1,2 --out bench-out/gen_align

Per seed: a world (:func:`mmrec.synthetic.watch_world.simulate_watch_world`, seed = the seed; 1,000
training and 400 held-out users, 128 items), an SFT run (``mmrec retrieve train --model generative``,
lazy decoder) on its ``train/`` folder, then alignments of that run (``mmrec retrieve align``, 6
epochs, lr 1e-4): DPO on chosen / rejected sampled pairs of duration-aware rewards (OneRec-V1), GBPO
on raw watch time, GBPO on duration-aware rewards (OneRec-V2), and two references: plain policy
gradient (unbounded) on the same rewards, GBPO without the teacher-forcing term. A second table
repeats PG and GBPO under a harder schedule (lr 1e-3, 4 updates per rollout batch, 2 epochs), where
``pi`` drifts from ``pi_old``. Every row is scored on the held-out users' top-10 beams:
true expected reward and true watch time (the world's truth, never the training signal), share of
long items, Recall@10 of the held-out next items, code-level entropy within a list. The table (mean ±
std over seeds) goes to stdout (markdown), everything to ``OUT/gen_align.json``, the figure to
``--figure`` when given. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROWS = {"SFT only": None,
        "+DPO (duration-aware rewards)": {"preference": {"method": "dpo", "reward": "duration"}},
        "+GBPO raw watch time": {"preference": {"method": "gbpo", "reward": "watch"}},
        "+GBPO duration-aware": {"preference": {"method": "gbpo", "reward": "duration"}},
        "+PG duration-aware (unbounded)": {"preference": {"method": "pg", "reward": "duration"}},
        "+GBPO duration-aware, no SFT term": {"preference": {"method": "gbpo", "reward": "duration", "sft_weight": 0.0}}}
# a harder schedule: 10x the learning rate and 4 updates per rollout batch (pi drifts from pi_old)
STRESS = {"PG, lr 1e-3, 4 updates per rollout": {"preference": {"method": "pg", "reward": "duration", "updates": 4}, "lr": 1e-3, "epochs": 2},
          "GBPO, lr 1e-3, 4 updates per rollout": {"preference": {"method": "gbpo", "reward": "duration", "updates": 4}, "lr": 1e-3, "epochs": 2}}
COLUMNS = (("true_reward", "true reward@10", 4), ("true_watch_s", "true watch s@10", 1), ("long_share", "long share", 3),
           ("recall@10", "Recall@10", 4), ("code_entropy", "code entropy", 3), ("item_entropy", "item entropy", 3))
MODEL = {"arch": "lazy-decoder", "dim": 48, "heads": 2, "decoder_layers": 2, "dropout": 0.1, "max_len": 10, "beam": 20}


def _log(message: str) -> None:
    print(f"[align] {time.strftime('%H:%M:%S')} {message}", flush=True)


def run_seed(seed: int, out: Path, epochs: int, sft_epochs: int) -> dict[str, dict]:
    from mmrec.pipelines.retrieve import train
    from mmrec.pipelines.retrieve_align import align_run
    from mmrec.synthetic.watch_world import simulate_watch_world

    world = out / f"seed{seed}" / "world"
    simulate_watch_world(world, seed=seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    sft = train(world / "train", out / f"seed{seed}" / "sft", {"model": "generative", "codes": str(world / "codes.parquet"), "seed": seed,
                                                              "batch_size": 256, "lr": 3e-3, "generative": MODEL,
                                                              "loop": {"epochs": sft_epochs, "progress": False}}, progress=False)
    _log(f"seed {seed}: SFT trained in {time.perf_counter() - t0:.0f} s, validation Recall@10 {sft['validation']['recall@10']:.4f}")
    rows: dict[str, dict] = {}
    for name, spec in {**ROWS, **STRESS}.items():
        if spec is None:
            continue
        t0 = time.perf_counter()
        preference = spec["preference"]
        folder = "-".join(f"{k}{v}" for k, v in sorted({**preference, "lr": spec.get("lr", 1e-4)}.items()))
        report = align_run(out / f"seed{seed}" / "sft", out / f"seed{seed}" / folder,
                           {"world": str(world), "seed": seed, "preference": preference, "lr": spec.get("lr", 1e-4),
                            "loop": {"epochs": spec.get("epochs", epochs), "progress": False}}, progress=False)
        rows.setdefault("SFT only", {**report["before"], "seconds": sft["train"]["seconds"]})
        rows[name] = {**report["after"], "seconds": report["seconds"], "steps": report["train"]["steps"],
                      "sampled_true_reward": [h["true_reward"] for h in report["train"]["history"]],
                      "sampled_long_share": [h["long_share"] for h in report["train"]["history"]]}
        _log(f"seed {seed}: {name}: true reward {report['before']['true_reward']:.4f} -> {report['after']['true_reward']:.4f}, "
             f"long share {report['before']['long_share']:.3f} -> {report['after']['long_share']:.3f}, Recall@10 "
             f"{report['before']['recall@10']:.4f} -> {report['after']['recall@10']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return rows


def table(results: dict[int, dict[str, dict]], names) -> tuple[str, dict[str, dict[str, tuple[float, float]]]]:
    seeds = sorted(results)
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    lines = ["| row | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name in names:
        cells, summary[name] = [], {}
        for key, _, digits in COLUMNS:
            values = [results[s][name][key] for s in seeds]
            mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            summary[name][key] = (mean, std)
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), summary


def goals(results: dict[int, dict[str, dict]]) -> list[str]:
    """The issue's goals, per seed and on the means."""
    seeds = sorted(results)

    def mean(row: str, key: str) -> float:
        return statistics.mean(results[s][row][key] for s in seeds)

    sft, gbpo, raw = "SFT only", "+GBPO duration-aware", "+GBPO raw watch time"
    per_seed_reward = all(results[s][gbpo]["true_reward"] > results[s][sft]["true_reward"] for s in seeds)
    recall = mean(gbpo, "recall@10") / mean(sft, "recall@10")
    per_seed_recall = min(results[s][gbpo]["recall@10"] / results[s][sft]["recall@10"] for s in seeds)
    return [
        f"true reward: SFT {mean(sft, 'true_reward'):.4f} -> GBPO duration-aware {mean(gbpo, 'true_reward'):.4f}; "
        f"higher on every seed: {per_seed_reward}",
        f"Recall@10 ratio GBPO duration-aware / SFT: {recall:.3f} on the means, lowest seed {per_seed_recall:.3f} (goal >= 0.9)",
        f"long share: SFT {mean(sft, 'long_share'):.3f}, GBPO duration-aware {mean(gbpo, 'long_share'):.3f}, "
        f"GBPO raw watch time {mean(raw, 'long_share'):.3f}; duration-aware not above SFT on every seed: "
        f"{all(results[s][gbpo]['long_share'] <= results[s][sft]['long_share'] for s in seeds)}; raw above SFT on every seed: "
        f"{all(results[s][raw]['long_share'] > results[s][sft]['long_share'] for s in seeds)}",
    ]


def figure(summary: dict[str, dict[str, tuple[float, float]]], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, title) in zip(axes, (("true_reward", "true expected reward of the top-10"), ("long_share", "share of long items"),
                                       ("recall@10", "Recall@10 (held-out next item)"))):
        means = [summary[n][key][0] for n in names]
        stds = [summary[n][key][1] for n in names]
        ax.barh(range(len(names)), means, xerr=stds, color=["#888888", "#4c72b0", "#dd8452", "#55a868"])
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlim(min(means) * 0.8, max(means) * 1.08)
    fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="bench-out/gen_align")
    parser.add_argument("--epochs", type=int, default=6, help="alignment epochs (each: every training user once, 64 per step)")
    parser.add_argument("--sft-epochs", type=int, default=6)
    parser.add_argument("--figure", default=None, help="PNG of the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    start = time.perf_counter()
    results = {seed: run_seed(seed, out, args.epochs, args.sft_epochs) for seed in (int(s) for s in args.seeds.split(","))}
    text, summary = table(results, list(ROWS))
    stress, stress_summary = table(results, ["SFT only", *STRESS])
    minutes = (time.perf_counter() - start) / 60
    checks = goals(results)
    print(text)
    print()
    print(stress)
    print("\n".join(checks))
    print(f"total {minutes:.1f} min")
    (out / "gen_align.json").write_text(json.dumps({"seeds": results, "summary": summary, "stress": stress_summary, "goals": checks, "minutes": minutes,
                                                    "epochs": args.epochs, "sft_epochs": args.sft_epochs, "model": MODEL}, indent=2))
    if args.figure:
        figure({k: summary[k] for k in list(ROWS)[:4]}, Path(args.figure), f"SYNTHETIC watch world, {len(results)} seeds, 400 held-out users each; "
                                           f"bench/gen_align.py, 2-core CPU VM, one torch thread, 2026-12-07")


if __name__ == "__main__":
    main()
