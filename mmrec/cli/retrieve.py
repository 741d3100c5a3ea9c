"""sequential retrieval: KuaiFormer / SASRec / pop / cooc / generative, leave-one-out full-ranking metrics, FAISS serving

Train retrievers on a `mmrec seq import` folder (last item per user = validation), evaluate with
Recall/NDCG@5/10 over all items, serve the user vectors through FAISS; align a generative run with
watch-time feedback of a SYNTHETIC world (GBPO, DPO).
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, Options, config_from_args, emit, overlay_given
from mmrec.config import build_config, read_yaml
from mmrec.pipelines.retrieve import EvaluateJob, ExportJob, ServeJob, TrainJob
from mmrec.pipelines.retrieve_align import AlignJob
from mmrec.retrieval.generative import GenerativeConfig
from mmrec.retrieval.kuaiformer import RetrieverConfig
from mmrec.retrieval.preference import PreferenceConfig
from mmrec.synthetic.watch_world import WatchWorldConfig
from mmrec.training import LoopConfig

_LOOP_EXCLUDE = ("checkpoint", "resume", "desc", "progress")
_GEN_EXCLUDE = ("n_items", "code_sizes")


cli = Commands("retrieve", __doc__)


def _metrics_line(m: dict) -> str:
    tail = m.get("tail")
    tail_text = (f"; long tail (target seen <= {tail['max_train_interactions']}x in training, {tail['users']:,} users): "
                 f"Recall@10 {tail['recall@10']:.4f}  NDCG@10 {tail['ndcg@10']:.4f}") if tail else ""
    return (f"Recall@5 {m['recall@5']:.4f}  NDCG@5 {m['ndcg@5']:.4f}  Recall@10 {m['recall@10']:.4f}  "
            f"NDCG@10 {m['ndcg@10']:.4f}  ({m['users']:,} users, full ranking over {m['items']:,} items, history {m['history']}){tail_text}")


@cli.command(
    "train",
    arguments={"--data": "data folder of `mmrec seq import`", "--out": "run folder",
               "--config": dict(default=None, metavar="FILE", help="TrainJob as JSON or YAML (best.json of mmrec tune, or a run's "
                                "config.json: the job it ran); options given on the command line override it")},
    configs=(
        Options(TrainJob, exclude=("model_config", "loop", "generative")),
        Options(RetrieverConfig, "model (RetrieverConfig)", exclude=("n_items", "code_sizes", "content_dim")),
        Options(LoopConfig, "training loop (LoopConfig)", exclude=_LOOP_EXCLUDE, dest_prefix="loop_"),
        Options(GenerativeConfig, "--model generative (GenerativeConfig)", exclude=_GEN_EXCLUDE, prefix="gen-",
                dest_prefix="gen_"),
    ),
)
def _train(args: argparse.Namespace) -> int:
    """train a retriever; run folder with model.safetensors, config.json, vocab.json, metrics.json

    KuaiFormer (k interest queries, in-batch softmax with logQ correction), SASRec (ids, one interest, full
    softmax), pop, cooc, or generative (TIGER encoder-decoder or OneRec-V2 lazy decoder over the semantic IDs of
    --codes; its sizes are the --gen-* options); early stopping on validation NDCG@10.
    """
    from mmrec.pipelines.retrieve import train

    job = config_from_args(args, TrainJob, exclude=("model_config", "loop", "generative"), what="retrieve train",
                           generative=config_from_args(args, GenerativeConfig, exclude=_GEN_EXCLUDE, dest_prefix="gen_"),
                           model_config=config_from_args(args, RetrieverConfig, exclude=("n_items", "code_sizes", "content_dim")),
                           loop=config_from_args(args, LoopConfig, exclude=_LOOP_EXCLUDE, dest_prefix="loop_"))
    if args.config is not None:
        given = read_yaml(args.config, "retrieve train --config")
        if given.get("kind") == "retrieve":  # a run's config.json: the job it ran, less where it read its data
            given = {k: v for k, v in given["job"].items() if k not in ("data", "align", "aligned_from")}
        job = overlay_given(build_config(TrainJob, given, "retrieve train"), job, "retrieve train")
    report = train(args.data, args.out, job, progress=not args.json)
    t = report["train"]
    speed = f", {t['samples_per_s']:.0f} samples/s, best epoch {t['best_epoch']}" if t.get("samples_per_s") else ""
    return emit(args, report, f"{report['model']} on {report['dataset']}: trained in {t['seconds']:.1f} s{speed} -> {args.out}\n"
                f"validation: {_metrics_line(report['validation'])}")


@cli.command("evaluate", configs=(Options(EvaluateJob, required=("run",)),))
def _evaluate(args: argparse.Namespace) -> int:
    """leave-one-out Recall/NDCG@5/10 of a run over all items (validation, or --test FILE)

    Validation: each user's last item from the items before it. --test: user<TAB>item lines (raw ids), each
    predicted from the whole sequence; unknown ids are skipped and counted.
    """
    from mmrec.pipelines.retrieve import evaluate_run

    job = config_from_args(args, EvaluateJob, what="retrieve evaluate")
    report = evaluate_run(job.run, test=job.test, data=job.data, exclude_history=job.exclude_history)
    skipped = f"; skipped {report['skipped']}" if "skipped" in report else ""
    return emit(args, report, f"{report['model']} {report['split']}: {_metrics_line(report)}{skipped}")


@cli.command("export", arguments={"--run": "run folder of `mmrec retrieve train`", "--out": "embeddings folder"},
             configs=(ExportJob,))
def _export(args: argparse.Namespace) -> int:
    """write a run's item vectors as an emb-*.parquet folder keyed item-NNNNNN (for mmrec quantize)

    The learned item vectors of a kuaiformer / sasrec run, so that `mmrec quantize` makes collaborative
    semantic IDs from them.
    """
    from mmrec.pipelines.retrieve import export_run

    m = export_run(args.run, args.out, config_from_args(args, ExportJob, what="retrieve export"))
    return emit(args, m, f"{m['samples']:,} item vectors of dim {m['dim']} ({m['untrained_items']:,} never in training) -> {args.out}")


@cli.command("serve", arguments={"--run": "run folder of `mmrec retrieve train`"}, configs=(ServeJob,))
def _serve(args: argparse.Namespace) -> int:
    """search the validation users' interest vectors through FAISS or the MISS tree; recall vs exact, items scored per query

    k interests = k queries merged by max score, against exact search over the same item vectors.
    """
    from mmrec.pipelines.retrieve import serve_run

    r = serve_run(args.run, config_from_args(args, ServeJob, what="retrieve serve"), progress=not args.json)
    scored = "n/a" if r["items_scored_per_query"] is None else f"{r['items_scored_per_query']:.0f}"
    recall = r[f"recall@{r['k']}_vs_exact"]
    return emit(args, r, f"{r['factory']}: recall@{r['k']} vs exact {recall:.4f}, items scored per query "
                f"{scored} of {r['items']:,}, {r['queries_per_s']} queries/s; validation Recall@10 {r['validation_recall@10']:.4f} "
                f"(exact {r['validation_recall@10_exact']:.4f}), {r['users']} users x {r['interests']} interests")


@cli.command("world", arguments={"--out": "world folder"}, configs=(WatchWorldConfig,), json_help="print world.json as JSON")
def _world(args: argparse.Namespace) -> int:
    """write a SYNTHETIC watch-time world with a known truth, for mmrec retrieve align

    Planted user topic preferences, item quality and durations; watch time follows the match and the duration, so
    raw watch time favours long items. Writes train/ and heldout/ data folders (mmrec seq import format, plus
    watch_s), codes.parquet (topic, duration class, slot) and the truth.
    """
    from mmrec.synthetic.watch_world import simulate_watch_world

    w = simulate_watch_world(args.out, config_from_args(args, WatchWorldConfig, what="watch world"))
    return emit(args, w, f"wrote a SYNTHETIC watch world of {w['items']} items ({w['long_items']} long), {w['train_users']} training and "
                f"{w['heldout_users']} held-out users to {args.out}; next: mmrec retrieve train --model generative "
                f"--data {args.out}/train --codes {args.out}/codes.parquet --out RUN, then mmrec retrieve align --run RUN --world {args.out}")


@cli.command(
    "align",
    arguments={"--run": "generative run folder of `mmrec retrieve train` on a world's train/", "--out": "aligned run folder"},
    configs=(
        Options(AlignJob, exclude=("preference", "loop"), required=("world",)),
        Options(PreferenceConfig, "preference alignment (PreferenceConfig)"),
        Options(LoopConfig, "training loop (LoopConfig)", exclude=_LOOP_EXCLUDE + ("patience", "min_delta", "restore_best"), dest_prefix="loop_"),
    ),
)
def _align(args: argparse.Namespace) -> int:
    """align a generative run with watch-time feedback: GBPO (OneRec-V2) or DPO (OneRec-V1); judged against the world's truth

    Samples items per user, serves them to a SYNTHETIC watch world, shapes the watch times (duration-aware
    percentile or raw seconds) and updates the policy; reports the true expected reward, true watch time, long-item
    share, Recall@10 and code entropy of the held-out users' top-10 before and after, and writes a run folder.
    """
    from mmrec.pipelines.retrieve_align import align_run

    job = config_from_args(args, AlignJob, exclude=("preference", "loop"), what="retrieve align",
                           preference=config_from_args(args, PreferenceConfig, what="preference"),
                           loop=config_from_args(args, LoopConfig, exclude=_LOOP_EXCLUDE + ("patience", "min_delta", "restore_best"),
                                                 dest_prefix="loop_"))
    r = align_run(args.run, args.out, job, progress=not args.json)
    b, a = r["before"], r["after"]
    rows = "\n".join(f"  {key:<13} {b[key]:10.4f} -> {a[key]:10.4f}" for key in ("true_reward", "true_watch_s", "long_share", "recall@10",
                                                                                 "code_entropy"))
    return emit(args, r, f"{r['method']} on {r['reward']} rewards, {r['train']['steps']} steps in {r['seconds']:.1f} s -> {args.out}\n"
                f"top-{a['k']} of {a['users']:,} held-out users (SYNTHETIC truth), before -> after:\n{rows}")
