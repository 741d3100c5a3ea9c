"""train, evaluate, predict with and export multi-task, multi-domain rankers (PEPNet, MMoE, HoME, PLE, ESMM, SMES) on codes and embeddings

Rankers over behaviour logs with item features from mmrec extract / quantize; a SYNTHETIC log simulator with
planted per-domain and per-user effects.
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, Options, config_from_args, emit
from mmrec.pipelines.rank import RankEvaluateJob, RankExportJob, RankPredictJob
from mmrec.synthetic.rank_sim import SimulationConfig
from mmrec.threads import THREADS_HELP

cli = Commands("rank", __doc__)


@cli.command(
    "simulate",
    arguments={"--out": "output folder"},
    configs=(SimulationConfig,),
    json_help="print the summary as JSON",
)
def _simulate(args: argparse.Namespace) -> int:
    """write a SYNTHETIC multi-task, multi-domain behaviour log with planted effects

    Write a SYNTHETIC behaviour log (click, like, follow over the domains video, live, mall) with planted per-
    domain and per-user effects, item content vectors in the mmrec extract layout, the planted probabilities,
    and a rank.yaml to train on it. --tasks N (> 3) adds tasks t03.. with positive rates down to --min-rate and
    planted relations to a parent task, for many-task rankers (SMES).
    """
    from mmrec.rankers import simulate

    summary = simulate(args.out, config=config_from_args(args, SimulationConfig, what="simulation"))
    return emit(args, summary, f"wrote a SYNTHETIC log of {summary['rows']} rows ({args.users} users, {args.items} items, "
                f"domains {', '.join(summary['domains'])}, tasks {', '.join(summary['tasks'])}) to {args.out}; next: "
                f"mmrec quantize --emb {args.out}/emb --out {args.out}/codes --levels 3 --codebook-size 16, then "
                f"mmrec rank train --config {args.out}/rank.yaml")


@cli.command(
    "train",
    arguments={
        "--config": "YAML config file; relative paths in it are taken from its folder",
        "--out": dict(default=None, help="output folder (default: the config's out, else rank-out)"),
        "--threads": dict(
            type=int, default=None, metavar="N", help=f"{THREADS_HELP}; overrides the config's optim.threads"
        ),
        "--set": dict(
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override a config field by its dotted path (optim.lr=0.01, model.tower=[32,16], "
            "data.history.length=10); the value is parsed as JSON when it parses; repeatable",
        ),
        "--resume": dict(
            action="store_true",
            help="continue from OUT/checkpoint.pt (written after every epoch) after its last epoch",
        ),
    },
)
def _train(args: argparse.Namespace) -> int:
    """train a ranker from a YAML config; AUC/UAUC/GAUC per task x domain, safetensors checkpoint

    Train the ranker a YAML config describes (sections data, features, model, optim, out), evaluate it on the
    latest rows of the log and write model.safetensors, metrics.json and vocab.json. CUDA with AMP when present,
    CPU otherwise; DDP under torchrun.
    """
    from mmrec.pipelines.rank import train

    report = train(args.config, out=args.out, progress=not args.json, threads=args.threads,
                   overrides=args.overrides, resume=args.resume)
    if not report:  # a DDP rank other than 0
        return 0
    table = report.pop("table")
    t = report["train"]
    return emit(args, report, f"{report['model']}: {report['parameters']:,} parameters on {report['device']}"
                + (f" (AMP {report['amp']})" if report["amp"] else "") + f", {report['world_size']} process(es); "
                f"{t['rows']} training rows x {t['epochs']} epochs in {t['seconds']:.1f} s ({t['samples_per_s'] or 0:.0f} samples/s"
                + (", resumed" if t["resumed"] else "") + "); "
                f"test rows {report['test']['rows']} -> {report['checkpoint']}\n{table}")


@cli.command("evaluate", configs=(Options(RankEvaluateJob, required=("run",)),))
def _evaluate(args: argparse.Namespace) -> int:
    """AUC/UAUC/GAUC per task x domain of a saved run, on its test rows or on another log

    Score a run folder of mmrec rank train (model.safetensors, vocab.json, metrics.json) on every row of --log,
    or without --log on the test rows of the run's own log (its metrics.json numbers). Ids are mapped with the
    run's vocab.json; item features come from the run's feature files.
    """
    from mmrec.pipelines.rank import evaluate_run

    job = config_from_args(args, RankEvaluateJob, what="rank evaluate")
    report = evaluate_run(job.run, job.log, batch_size=job.batch_size, device=job.device)
    table = report.pop("table")
    return emit(args, report, f"{report['model']} on {report['rows']} {report['split']} rows of {report['log']}\n{table}")


@cli.command(
    "predict",
    configs=(Options(RankPredictJob, required=("run", "log", "out")),),
    json_help="print the summary as JSON",
)
def _predict(args: argparse.Namespace) -> int:
    """write per-task probabilities of a saved run for every row of a log (Parquet)

    Score every row of --log with a saved run and write --out: the log's id and ts columns then probs_<task> per
    task (pCTR / pCTCVR for ESMM), in the log's row order. Label columns may be missing.
    """
    from mmrec.pipelines.rank import predict_run

    job = config_from_args(args, RankPredictJob, what="rank predict")
    summary = predict_run(job.run, job.log, job.out, batch_size=job.batch_size, device=job.device)
    return emit(args, summary, f"{summary['rows']} rows scored by {summary['model']} ({', '.join(summary['columns'])}) -> {summary['out']}")


@cli.command("export", configs=(Options(RankExportJob, required=("run", "out")),), json_help="print export.json")
def _export(args: argparse.Namespace) -> int:
    """export a saved run for serving: torch.export program (ranker.pt2) and ONNX where possible

    Write OUT/ranker.pt2 (torch.export; load with torch.export.load), OUT/ranker.onnx when the onnx extra is
    installed and the exporter takes the model, vocab.json and export.json (the named inputs, tasks, and the
    largest gap between exported and eager probabilities on test rows of the run).
    """
    from mmrec.pipelines.rank import export_run

    job = config_from_args(args, RankExportJob, what="rank export")
    report = export_run(job.run, job.out, onnx=job.onnx, rows=job.rows)
    onnx = "ranker.onnx" if report["onnx"] else f"no ONNX ({report['onnx_skipped']})"
    return emit(args, report, f"{report['model']} -> {job.out}: ranker.pt2, {onnx}; exported vs eager max |diff| "
                f"{report['max_abs_diff']:.2e} on {report['check_rows']} test rows")
