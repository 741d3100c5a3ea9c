"""cross-domain cold-start models (UniCDR, UniCDR+, FARM, single-domain; count, EASE, item-kNN) on user<TAB>item pairs

Train cross-domain user models on both domains of a pair (folders a_b/ and b_a/ with train.txt, valid.txt, or a
Parquet behaviour log) and rank each held-out item of the cold-start users among 999 sampled negatives (MRR,
NDCG@5/10, HR@1/5/10).
"""

from __future__ import annotations

import argparse
import dataclasses

from mmrec.cli._args import Commands, Options, config_from_args, emit
from mmrec.crossdomain.config import CDRConfig
from mmrec.crossdomain.registry import CDR_MODELS
from mmrec.pipelines.cdr import CDREvaluateJob, CDRExportJob, CDRTrainJob

cli = Commands("cdr", __doc__)


@cli.command(
    "train",
    arguments={
        "--model": dict(
            required=True, choices=CDR_MODELS.names(), help=dataclasses.fields(CDRConfig)[0].metadata["help"]
        ),
        "--set": dict(
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override any CDRConfig field (value parsed as JSON when it parses)",
        ),
    },
    configs=(
        Options(CDRTrainJob, required=("data", "pair")),
        Options(CDRConfig, "model and training (CDRConfig)", exclude=("model",)),
    ),
)
def _train(args: argparse.Namespace) -> int:
    """train on a pair and evaluate on the valid.txt of both domains (or --target)

    Train on both domains' train.txt; evaluate every epoch on valid.txt, keep the best epoch (mean NDCG@10 of
    the targets); write config.json, model.safetensors, vocab.json, metrics.json to --out. The baselines
    count, ease and item-knn train nothing: their parameter (EASE lambda, kNN k) is chosen on valid.txt.
    """
    from mmrec.pipelines.cdr import (
        CDRTrainJob,
        apply_overrides,
        format_table,
        train_cdr,
    )

    job = config_from_args(args, CDRTrainJob, what="cdr train")
    config = apply_overrides(config_from_args(args, CDRConfig, what="cdr"), args.set)
    report = train_cdr(job.data, job.pair, out=job.out, config=config, targets=job.target, progress=not args.json)
    done = (f"parameters {report['params']} chosen on valid" if "params" in report else
            f"best epoch {report['best_epoch']} of {report['epochs_run']}")
    return emit(args, report, f"{report['model']} on {report['pair']}: {done}, {report['seconds']:.0f} s"
                + (f" -> {job.out}" if job.out else "") + "\n" + format_table(list(report["metrics"].items())))


@cli.command(
    "evaluate", configs=(Options(CDREvaluateJob, required=("run", "test")),), json_help="print the result as JSON"
)
def _evaluate(args: argparse.Namespace) -> int:
    """evaluate a trained run on a user<TAB>item file of one domain

    Rank each (user, item) of FILE among 999 sampled negatives with a saved run.
    """
    from mmrec.pipelines.cdr import evaluate_run, format_table

    job = config_from_args(args, CDREvaluateJob, what="cdr evaluate")
    result = evaluate_run(job.run, job.test, target=job.target, seed=job.seed)
    return emit(args, result, format_table([(result["target"], result["metrics"])]))


@cli.command(
    "export",
    configs=(Options(CDRExportJob, required=("run", "out", "target")),),
    json_help="print the manifest as JSON",
)
def _export(args: argparse.Namespace) -> int:
    """write a run's target-domain user vectors keyed by raw user id

    Write every user's target-domain vector (cold-start users included) to OUT in the extract layout (key = raw
    user id, fused = vector), a user-side feature for mmrec rank.
    """
    from mmrec.pipelines.cdr import export_user_features

    job = config_from_args(args, CDRExportJob, what="cdr export")
    manifest = export_user_features(job.run, job.out, target=job.target, batch=job.batch)
    return emit(args, manifest, f"{manifest['users']} {job.target} user vectors (dim {manifest['dim']}) keyed by user id -> {job.out}")
