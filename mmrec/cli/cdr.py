"""`mmrec cdr train|evaluate`: cross-domain models."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    cdr = sub.add_parser(
        "cdr",
        help="cross-domain cold-start models (UniCDR, UniCDR+, FARM, single-domain) on user<TAB>item pair data",
        description="Train cross-domain user models on both domains of a pair (folders a_b/ and b_a/ with "
        "train.txt, valid.txt) and rank each held-out item of the cold-start users among 999 sampled negatives "
        "(MRR, NDCG@5/10, HR@1/5/10).",
    )
    csub = cdr.add_subparsers(dest="cdr_command", metavar="ACTION", required=True)
    p = csub.add_parser("train", help="train on a pair and evaluate on the valid.txt of both domains (or --target)",
                        description="Train on both domains' train.txt; evaluate every epoch on valid.txt, keep the "
                        "best epoch (mean NDCG@10 of the targets); write config.json, data.json, model.safetensors, "
                        "metrics.json to --out.")
    p.add_argument("--data", required=True, help="folder holding the pair's two folders (e.g. amazon-cdr/), or a Parquet log")
    p.add_argument("--pair", required=True, help="sport_cloth, game_video, or any a_b with folders a_b/ and b_a/")
    p.add_argument("--model", required=True, choices=("single-domain", "unicdr", "unicdr+", "farm"))
    p.add_argument("--out", default=None, help="run folder to write")
    p.add_argument("--target", action="append", default=[], help="domain name to evaluate (repeatable; default both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on valid NDCG@10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    p.add_argument("--item-emb", default=None, help="Parquet of item embeddings (key '<domain>:<item>' + vector) for unicdr+/farm")
    p.add_argument("--emb-column", default=None, help="vector column of --item-emb (default fused)")
    p.add_argument("--tasks", nargs="+", default=None, help="label columns of a Parquet log (MMoE head tasks)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any CDRConfig field")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = csub.add_parser("evaluate", help="evaluate a trained run on a user<TAB>item file of one domain",
                        description="Rank each (user, item) of FILE among 999 sampled negatives with a saved run.")
    p.add_argument("--run", required=True, help="run folder written by mmrec cdr train")
    p.add_argument("--test", required=True, help="user<TAB>item file (same id spaces as the run's data)")
    p.add_argument("--target", default=None, help="domain of FILE (default: from its folder name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    cdr.set_defaults(_run=_cdr)


def _cdr(args: argparse.Namespace) -> int:
    from mmrec.crossdomain import evaluate_run, format_table, train_cdr

    if args.cdr_command == "evaluate":
        result = evaluate_run(args.run, args.test, target=args.target)
        print(json.dumps(result, indent=2) if args.json else format_table([(result["target"], result["metrics"])]))
        return 0
    from mmrec.crossdomain import config_from_args

    config = config_from_args(args.model, seed=args.seed, epochs=args.epochs, threads=args.threads,
                              item_emb=args.item_emb, emb_column=args.emb_column, tasks=args.tasks, overrides=args.set)
    report = train_cdr(args.data, args.pair, out=args.out, config=config, targets=tuple(args.target),
                       progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['model']} on {report['pair']}: best epoch {report['best_epoch']} of {report['epochs_run']}, "
              f"{report['seconds']:.0f} s" + (f" -> {args.out}" if args.out else ""))
        print(format_table(list(report["metrics"].items())))
    return 0
