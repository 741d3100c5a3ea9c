"""``mmrec tune``: hyper-parameter search (Optuna TPE, median pruning, resumable) over retrieve, cdr or rank."""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, emit

cli = Commands()


@cli.command(
    "tune",
    arguments={
        "space": dict(metavar="SPACE.yaml", help="search space: job, fixed, base, metric, space (docs/tune.md)"),
        "--out": "study folder: study.db, trials/, trials.parquet, best.json, tune.json, history.png, importance.png",
        "--trials": dict(type=int, default=None, metavar="N", help="finished trials the study ends with (default: the space's trials, else 20)"),
        "--minutes": dict(type=float, default=None, metavar="M", help="no trial starts after M minutes (default: the space's, else none)"),
        "--seed": dict(type=int, default=None, metavar="S", help="seed of the TPE sampler (default: the space's, else 0)"),
        "--set": dict(action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                      help="override a field of the space file by its dotted path (fixed.pair=game_video, base.epochs=5, "
                           "space.lr.high=0.01); the value is parsed as JSON when it parses; repeatable"),
    },
)
def _tune(args: argparse.Namespace) -> int:
    """search a job's hyper-parameters on validation (Optuna TPE, pruning per epoch, resumable)

    Every trial trains the job (retrieve, cdr, rank) with the sampled fields into OUT/trials/NNNN and reports its
    validation metric after every epoch; trials below the median are pruned. Rerun the same command to resume a
    killed or finished search (SQLite in OUT/study.db). Writes trials.parquet, best.json (the best config),
    tune.json and the history / importance plots.
    """
    from mmrec.pipelines.tune import tune

    r = tune(args.space, args.out, trials=args.trials, minutes=args.minutes, seed=args.seed, overrides=args.overrides,
             progress=not args.json)
    states = ", ".join(f"{n} {s}" for s, n in r["states"].items())
    best = r.get("best")
    text = f"{r['job']}: {r['trials']} trials ({states}) in {r['seconds']:.0f} s -> {args.out}"
    if best:
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        means = f" ({r['metric_means']})" if r["metric_means"] else ""
        text += f"\nbest: trial {best['trial']}, {r['metric']}{means} {best['value']:.4f} ({params})\nreproduce: {best['command']}"
    return emit(args, r, text)
