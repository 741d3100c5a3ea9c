"""The ``mmrec`` command line: thin argument parsing over the public Python functions.

Every command calls the same function a Python user calls, with the same arguments. User-facing
failures print one ``mmrec: error: ...`` line and exit with 2 (usage) or 1 (data).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Callable, Sequence

from mmrec.errors import MMRecError

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def decorator(fn: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = fn
        return fn

    return decorator


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from mmrec import __version__

    parser = argparse.ArgumentParser(
        prog="mmrec",
        description="Multimodal and cross-domain representations for recommendation: "
        "encoders, embeddings, codes, indexes and rankers.",
    )
    parser.add_argument("--version", action="version", version=f"mmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "sample-data",
        help="write SYNTHETIC webdataset shards (items and live segments) with planted topics",
        description="Write SYNTHETIC webdataset shards of items (cover, title, audio, json) and live "
        "segments (frames, comments, speech, json) whose content follows planted latent topics, so "
        "later stages can be checked for recovering them.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--items", type=_positive_int, default=200, help="number of items (default 200)")
    p.add_argument("--segments", type=_positive_int, default=40, help="number of live segments (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    p.add_argument("--topics", type=int, default=8, help="number of planted topics (default 8)")
    p.add_argument("--shard-size", type=int, default=100, help="samples per tar shard (default 100)")
    p.add_argument("--users", type=_positive_int, default=100,
                   help="users in the SYNTHETIC behaviour log behaviour.parquet; 0 = no log (default 100)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser(
        "extract",
        help="embed every sample of webdataset shards into Parquet, resumable",
        description="Embed every item / live segment of webdataset shards with image, text and speech "
        "encoders; one emb-NAME.parquet per shard, errors-NAME.jsonl for failed samples, manifest.json. "
        "Complete shards are skipped on rerun. Under torchrun each rank takes its own shards.",
    )
    p.add_argument("--input", required=True, help="shards: 'DIR/items-{000000..000099}.tar', a glob or a folder")
    p.add_argument("--out", required=True, help="output folder")
    for modality, default in (("image", "open_clip:ViT-B-32"), ("text", "hf-text:all-MiniLM-L6-v2"), ("audio", "none")):
        p.add_argument(f"--{modality}", default=default, metavar="SPEC", help=f"{modality} encoder spec, or none (default {default})")
        p.add_argument(f"--{modality}-weights", default=None, metavar="PATH", help=f"local checkpoint for the {modality} encoder")
    p.add_argument("--fuse", default="concat", help="fusion of the modality vectors: concat, mean, mfq or none (default concat)")
    p.add_argument("--fusion-weights", default=None, metavar="PATH", help="trained fuser weights (a safetensors file from MFQ training; --fuse mfq)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--num-workers", type=_positive_int, default=2, help="DataLoader workers decoding shards (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto = autocast on CUDA, float32 on CPU; bf16 on CPU = bfloat16 weights (faster on "
                   "CPUs with AVX512-BF16/AMX; vectors agree to cosine ~0.9999); fp16 = CUDA only (default auto)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoders: a one-off compile of tens of seconds, then faster batches (long jobs)")
    p.add_argument("--shard-id", type=int, default=None, help="this process's part, without a launcher")
    p.add_argument("--num-shards", type=int, default=None, help="number of parts, without a launcher")
    p.add_argument("--overwrite", action="store_true", help="redo shards whose output exists")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    index = sub.add_parser(
        "index",
        help="build, add to, search, evaluate and serve FAISS / MISS-tree indexes over embeddings",
        description="Indexes over the Parquet embeddings of mmrec extract / mmrec align: FAISS with an "
        "automatic choice under memory and latency budgets, tuned to a recall target, or the MISS index tree.",
    )
    isub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = isub.add_parser(
        "build",
        help="build an index folder (index file, ids.parquet, index.json with measured recall and QPS)",
        description="Build an index over embeddings, streaming them; auto picks Flat, HNSW, IVF-Flat, IVF-SQ8 or "
        "OPQ-IVF-PQ from N, dim, --max-memory and --max-query-ms, then tunes nprobe/efSearch to --target-recall.",
    )
    p.add_argument("--emb", required=True, help="embeddings: a folder of emb-*.parquet, a Parquet file or a glob")
    p.add_argument("--out", required=True, help="output index folder")
    p.add_argument("--kind", default="auto", help="auto, faiss:<factory> (e.g. faiss:IVF1024,Flat) or tree (default auto)")
    p.add_argument("--column", default="fused", help="vector column: fused, image, text, audio ... (default fused)")
    p.add_argument("--metric", default="ip", choices=["ip", "l2"], help="inner product or L2 (default ip)")
    p.add_argument("--max-memory", default="1G", help="memory budget of the index, e.g. 512M, 4G (default 1G; faiss)")
    p.add_argument("--max-query-ms", type=float, default=10.0, help="latency budget per query in ms (default 10; faiss)")
    p.add_argument("--target-recall", type=float, default=0.95, help="recall@k vs exact to tune for (default 0.95)")
    p.add_argument("--k", type=int, default=10, help="k of the recall target (default 10)")
    p.add_argument("--branching", type=int, default=16, help="children per node (default 16; tree)")
    p.add_argument("--gpu", default="auto", choices=["auto", "on", "off"], help="build on GPUs with faiss-gpu (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print index.json")
    p = isub.add_parser("add", help="add new embedding shards to a FAISS index in place", description="Add new emb-*.parquet shards to a saved FAISS index (same column and dim; keys must stay unique).")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--emb", required=True, help="new embeddings: a folder, Parquet file or glob")
    p.add_argument("--column", default=None, help="vector column (default: the index's)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("search", help="nearest neighbours of indexed keys or of query vectors", description="Search an index by the keys of indexed items or by vectors from a .npy file.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--key", action="append", default=None, help="key of an indexed item (repeatable)")
    p.add_argument("--vectors", default=None, help=".npy file of (q, dim) float query vectors")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("eval", help="recall@1/10/100 vs exact search, QPS, and a recall-vs-QPS PNG", description="Evaluate an index against exact search over the embeddings it was built from.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--emb", default=None, help="embeddings the index holds (default: the files recorded in index.json)")
    p.add_argument("--queries", default=None, help=".npy of query vectors (default: sampled index rows, leave-one-out)")
    p.add_argument("--n-queries", type=int, default=1000, help="sampled queries (default 1000)")
    p.add_argument("--png", default=None, help="curve image (default INDEX/recall-qps.png)")
    p.add_argument("--json", action="store_true")
    p = isub.add_parser("serve", help="HTTP search API over an index (loopback by default)", description="Serve POST /search ({'vectors': [[...]], 'k': 10} or {'keys': [...]}) and GET /health.")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--max-batch", type=int, default=256, help="most queries per request (default 256)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (default 4 MiB)")
    p.add_argument("--search-threads", type=int, default=1, help="FAISS threads per search; requests already run in parallel (default 1)")

    p = sub.add_parser(
        "align",
        help="align item embeddings with behaviour: pairs from a log, contrastive fine-tuning (QARM)",
        description="Mine item pairs from a behaviour log (User2Item triggers among each user's latest "
        "positives, Item2Item Swing), then fine-tune with symmetric in-batch InfoNCE: a head over cached "
        "embeddings (--emb, fast) or trainable encoders over raw shards (--input with --text/--image/--audio, "
        "slow). Writes aligned emb-*.parquet in the layout of `mmrec extract`, pairs.parquet, align.json.",
    )
    p.add_argument("--log", required=True, help="behaviour log (Parquet: user_id, item_id, labels)")
    p.add_argument("--emb", default=None, help="embeddings folder from `mmrec extract` (fast path)")
    p.add_argument("--input", default=None, help="item shards, to align through trainable encoders (slow path)")
    for modality in ("image", "text", "audio"):
        p.add_argument(f"--{modality}", default=None, metavar="SPEC", help=f"{modality} encoder spec for --input")
    p.add_argument("--lora-rank", type=_positive_int, default=0, help="LoRA rank on the encoders for --input (default 0: head only)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--column", default="fused", help="vector column to align and write (default fused)")
    p.add_argument("--head", default="linear", help="head over cached embeddings: linear or mlp (default linear)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training pairs (default 20)")
    p.add_argument("--batch-size", type=int, default=256, help="pairs per step (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--temperature", type=float, default=None, help="fixed InfoNCE temperature (default: learnable, from 0.2)")
    p.add_argument("--pairs", default="user2item,swing", help="pair sources (default user2item,swing)")
    p.add_argument("--positive", default="click", help="label columns that make a row positive (default click)")
    p.add_argument("--window", type=int, default=50, help="User2Item: latest positives searched for the trigger (default 50)")
    p.add_argument("--top-n", type=int, default=10, help="Swing: partners kept per item (default 10)")
    p.add_argument("--holdout", type=float, default=0.1, help="share of pairs held out to measure alignment (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser(
        "quantize",
        help="quantize item embeddings into codes: RQ-Kmeans, balanced, VQ or RQ-VAE (QARM, OneRec)",
        description="Fit a quantizer on one vector column of an embeddings folder and write "
        "codebook.safetensors, codes.parquet (key, c1..cL), report.json (per-level usage and entropy, "
        "%% unique ids, collision rate, relative reconstruction error) and usage.png.",
    )
    p.add_argument("--emb", required=True, help="embeddings folder (`mmrec extract` or `mmrec align` output)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="rq-kmeans", help="rq-kmeans, balanced, vq or rq-vae (default rq-kmeans)")
    p.add_argument("--levels", type=int, default=None, help="code levels (default 3; for vq: K nearest items, default 25)")
    p.add_argument("--codebook-size", type=int, default=None, help="codes per level (default 256; for vq: bank size, default all items)")
    p.add_argument("--column", default="fused", help="vector column (default fused)")
    p.add_argument("--dedup", default=None, choices=("suffix", "level"), help="resolve collisions: a counter column or a collision-aware extra level")
    p.add_argument("--niter", type=int, default=None, help="k-means iterations per level (rq-kmeans, balanced; default 20)")
    p.add_argument("--epochs", type=int, default=None, help="RQ-VAE training epochs (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    rank = sub.add_parser(
        "rank",
        help="train and evaluate multi-task, multi-domain rankers (PEPNet, MMoE, HoME) on codes and embeddings",
        description="Rankers over behaviour logs with item features from mmrec extract / quantize; "
        "a SYNTHETIC log simulator with planted per-domain and per-user effects.",
    )
    rsub = rank.add_subparsers(dest="rank_command", metavar="ACTION", required=True)
    p = rsub.add_parser(
        "train",
        help="train a ranker from a YAML config; AUC/UAUC/GAUC per task x domain, safetensors checkpoint",
        description="Train the ranker a YAML config describes (sections data, features, model, optim, out), "
        "evaluate it on the latest rows of the log and write model.safetensors, metrics.json and vocab.json. "
        "CUDA with AMP when present, CPU otherwise; DDP under torchrun.",
    )
    p.add_argument("--config", required=True, help="YAML config file; relative paths in it are taken from its folder")
    p.add_argument("--out", default=None, help="output folder (default: the config's out, else rank-out)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = rsub.add_parser(
        "simulate",
        help="write a SYNTHETIC multi-task, multi-domain behaviour log with planted effects",
        description="Write a SYNTHETIC behaviour log (click, like, follow over the domains video, live, mall) "
        "with planted per-domain and per-user effects, item content vectors in the mmrec extract layout, "
        "the planted probabilities, and a rank.yaml to train on it.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--users", type=_positive_int, default=500, help="users (default 500)")
    p.add_argument("--items", type=_positive_int, default=2000, help="items (default 2000)")
    p.add_argument("--impressions", type=_positive_int, default=60, help="mean impressions per user (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    graph = sub.add_parser(
        "graph",
        help="MMBee GIE: gifting graphs, metapath expansion, GraphCL node embeddings",
        description="Build the U2A gifting / watching and A2A Swing graphs from a live behaviour log, expand "
        "users and authors along metapaths into a Parquet store, pre-train node embeddings with GraphCL "
        "over a sampled GraphSAGE encoder, and export them.",
    )
    gsub = graph.add_subparsers(dest="graph_command", metavar="ACTION", required=True)
    p = gsub.add_parser("build", help="graphs from behaviour log(s) into a folder (safetensors + graph.json)",
                        description="Stream live behaviour log(s) (user_id, author_id, watch, gift, gift_value) into "
                        "the U2A gifts / watches graphs and the A2A Swing graph; writes graph.safetensors and graph.json.")
    p.add_argument("--logs", required=True, nargs="+", help="Parquet log file(s), or a folder with live-behaviour.parquet")
    p.add_argument("--out", required=True, help="output graph folder")
    p.add_argument("--users", default=None, help="users.parquet: ids outside it are errors")
    p.add_argument("--authors", default=None, help="authors.parquet: author ids absent from it are errors")
    p.add_argument("--gift-weight", default="count", choices=("count", "value"), help="U2A edge weight (default count)")
    p.add_argument("--domains", nargs="+", default=None, help="count only these domains (default all)")
    p.add_argument("--swing-top-n", type=int, default=50, help="Swing partners kept per author (default 50)")
    p.add_argument("--batch-rows", type=int, default=1 << 20, help="log rows read at a time (default 1048576)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("expand", help="top-k metapath neighbours of every user / author into Parquet",
                        description="Expand every source node along metapaths (e.g. user>author>author, "
                        "author>user>author, user-watches>author>author) and keep the top-k by path-weight product.")
    p.add_argument("--graph", required=True, help="graph folder from mmrec graph build")
    p.add_argument("--metapath", action="append", default=None, help="metapath, repeatable (default user>author>author and author>user>author)")
    p.add_argument("--k", type=int, default=20, help="neighbours kept per source (default 20)")
    p.add_argument("--out", required=True, help="output Parquet (src_type, src_id, metapath, dst_ids, scores)")
    p.add_argument("--chunk-nnz", type=int, default=1 << 23, help="bound on the entries of one chunk's product: the memory knob (default 8388608)")
    p.add_argument("--raw", action="store_true", help="multiply raw edge weights instead of row-normalised ones")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("train", help="GraphCL pre-training of node embeddings on a graph folder",
                        description="Pre-train a GraphSAGE-style encoder with GraphCL (edge dropping, attribute masking, "
                        "NT-Xent) on mini-batches of sampled neighbourhoods; writes model.safetensors, "
                        "embeddings.safetensors and train.json.")
    p.add_argument("--graph", required=True, help="graph folder from mmrec graph build")
    p.add_argument("--out", required=True, help="output run folder")
    p.add_argument("--author-emb", default=None, help="author attributes: Parquet keyed by author_id, or mmrec extract output (needs --logs)")
    p.add_argument("--emb-column", default=None, help="vector column of --author-emb (default fused, or the only one)")
    p.add_argument("--logs", nargs="+", default=None, help="live log mapping segment keys to authors, for segment-keyed --author-emb")
    p.add_argument("--dim", type=int, default=64, help="embedding width (default 64)")
    p.add_argument("--fanouts", default="10,5", help="neighbours sampled per hop, comma-separated (default 10,5)")
    p.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on batches per epoch")
    p.add_argument("--batch-size", type=int, default=512, help="seed nodes per batch (default 512)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = gsub.add_parser("export", help="a training run's node embeddings as Parquet",
                        description="Write node_type, node_id, vector rows for every node of a mmrec graph train run.")
    p.add_argument("--run", required=True, help="run folder from mmrec graph train")
    p.add_argument("--out", required=True, help="output Parquet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    live = sub.add_parser(
        "live",
        help="SYNTHETIC live-streaming world and the MMBee gift ranker (GTR with MFQ and GIE)",
        description="Write a SYNTHETIC live-streaming world (users, authors, drifting live segments, watch / "
        "like / comment / gift and short-video logs with planted structure) and train MMBee's GTR on it.",
    )
    lsub = live.add_subparsers(dest="live_command", metavar="ACTION", required=True)
    p = lsub.add_parser(
        "simulate",
        help="write a SYNTHETIC live behaviour log, segment tokens and (optionally) segment shards",
        description="Write live-behaviour.parquet, users/authors/segments.parquet, segment-tokens.safetensors "
        "and live.json (SYNTHETIC; see mmrec.live_sim), plus --shards segments as webdataset shards for mmrec extract.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--users", type=int, default=4000, help="users (default 4000)")
    p.add_argument("--authors", type=int, default=200, help="authors (default 200)")
    p.add_argument("--topics", type=int, default=8, help="planted content topics (default 8)")
    p.add_argument("--communities", type=int, default=8, help="planted co-gifting communities (default 8)")
    p.add_argument("--days", type=int, default=14, help="days of log (default 14)")
    p.add_argument("--shards", type=_positive_int, default=0, help="segments written as webdataset shards (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = lsub.add_parser(
        "train",
        help="train GTR (SIM + DIN; --mfq segment fusion, --gie graph expansion) on a simulator folder",
        description="Train MMBee's GTR on a mmrec live simulate folder: the first half of the time span feeds "
        "the GIE graphs, 50-80 %% trains, 80-100 %% tests. Writes gtr.safetensors, mfq.safetensors (with --mfq; "
        "what mmrec extract --fuse mfq --fusion-weights reads) and metrics.json.",
    )
    p.add_argument("--data", required=True, help="folder written by mmrec live simulate")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mfq", action="store_true", help="MFQ segment vectors of the target segment")
    p.add_argument("--gie", action="store_true", help="GIE metapath expansions and GraphCL author embeddings")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

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

    p = sub.add_parser(
        "demo",
        help="run the chain on bundled SYNTHETIC sample data and report what each encoder recovers",
        description="Write sample data, embed every item with the image, text and speech encoders, and "
        "report how well each modality's embeddings and their fusion recover the planted topics "
        "(leave-one-out nearest-neighbour accuracy vs chance).",
    )
    p.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    p.add_argument("--items", type=_positive_int, default=240, help="number of sample items (default 240)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default="open_clip:tiny", help="image encoder spec (default open_clip:tiny, random weights)")
    p.add_argument("--image-weights", default=None, help="local checkpoint for the image encoder")
    p.add_argument("--text", default=None, help="text encoder spec (default hf-text:all-MiniLM-L6-v2, real weights)")
    p.add_argument("--audio", default="speech:tiny", help="speech encoder spec (default speech:tiny, random weights)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


@_command("sample-data")
def _sample_data(args: argparse.Namespace) -> int:
    from mmrec.sample_data import write_sample_data

    summary = write_sample_data(
        args.out,
        items=args.items,
        segments=args.segments,
        seed=args.seed,
        topics=args.topics,
        shard_size=args.shard_size,
        progress=not args.json,
        users=args.users if args.items else 0,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(
            f"wrote {summary['items']} items in {len(summary['item_shards'])} shard(s) and "
            f"{summary['segments']} segments in {len(summary['segment_shards'])} shard(s) to {args.out} "
            + (f"and a behaviour log of {summary['users']} users ({summary['behaviour_rows']} rows) " if summary.get("users") else "")
            + f"(SYNTHETIC, {summary['topics']} planted topics)"
        )
    return 0


@_command("extract")
def _extract(args: argparse.Namespace) -> int:
    from mmrec.pipelines.extract import extract

    specs = {m: (None if getattr(args, m).lower() == "none" else getattr(args, m)) for m in ("image", "text", "audio")}
    weights = {m: w for m in specs if (w := getattr(args, f"{m}_weights"))}
    manifest = extract(
        args.input,
        args.out,
        **specs,
        weights=weights,
        fuse=args.fuse,
        fusion_weights=args.fusion_weights,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        shard_id=args.shard_id,
        num_shards=args.num_shards,
        overwrite=args.overwrite,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
    elif "done" in manifest:
        run = manifest["runs"][0] if len(manifest["runs"]) == 1 else None
        print(
            f"{len(manifest['done'])}/{manifest['input_shards']} shards done, {manifest['samples']} samples, "
            f"{manifest['errors']} errors -> {args.out}"
            + (f"; this run: {run['samples']} samples in {run['elapsed_s']:.1f} s ({run['samples_per_s']:.1f}/s)" if run else "")
        )
    return 0


def _index_build(args: argparse.Namespace) -> dict:
    from mmrec.index import build_index

    options = {"metric": args.metric, "target_recall": args.target_recall, "k": args.k, "seed": args.seed}
    if args.kind == "tree":
        options["branching"] = args.branching
    else:
        options.update(max_memory=args.max_memory, max_query_ms=args.max_query_ms, gpu={"auto": None, "on": True, "off": False}[args.gpu])
    index = build_index(args.emb, args.out, args.kind, column=args.column, progress=not args.json, **options)
    info, measured = index.info, index.info["measured"]
    if not args.json:
        what = info.get("factory") or f"tree ({info['nodes']} nodes, depth {info['depth']})"
        tuned = info["tuning"]
        knob = f", {tuned['param']}={tuned['value']}" + ("" if tuned["target_reached"] else " (target NOT reached)") if tuned["param"] else ""
        print(
            f"built {info['kind']} index {what} over {info['n']} vectors (dim {info['dim']}) -> {args.out}: "
            f"recall@{measured['k']} {measured['recall'][str(measured['k'])]:.3f} (target {args.target_recall}{knob}), "
            f"{measured['qps']:.0f} QPS, {measured['ms_per_query']:.2f} ms/query, built in {info['times']['build_s']:.1f} s"
        )
    return info


def _index_add(args: argparse.Namespace) -> dict:
    from mmrec.index import add_to_index

    event = add_to_index(args.index, args.emb, column=args.column, progress=not args.json)
    if not args.json:
        print(f"added {event['rows']} vectors in {event['add_s']:.1f} s -> {args.index} now holds {event['n']}")
    return event


def _index_search(args: argparse.Namespace) -> list:
    import numpy as np

    from mmrec.errors import UsageError
    from mmrec.index import search_index

    if (args.key is None) == (args.vectors is None):
        raise UsageError("give --key (repeatable) or --vectors FILE.npy")
    try:
        vectors = None if args.vectors is None else np.load(args.vectors)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read query vectors {args.vectors}: {err}") from None
    results = search_index(args.index, vectors, keys=args.key, k=args.k)
    if not args.json:
        for i, hits in enumerate(results):
            print(f"query {args.key[i] if args.key else i}:")
            for hit in hits:
                print(f"  {hit['score']:10.4f}  {hit['key']}")
    return results


def _index_eval(args: argparse.Namespace) -> dict:
    import numpy as np

    from mmrec.index.evaluate import evaluate_index

    queries = None if args.queries is None else np.load(args.queries)
    report = evaluate_index(args.index, args.emb, queries=queries, n_queries=args.n_queries, png=args.png)
    if not args.json:
        recalls = "  ".join(f"recall@{k} {v:.3f}" for k, v in report["recall"].items())
        print(f"{report['factory'] or report['kind']} over {report['n']} vectors, {report['queries']} queries ({report['queries_from']}), {report['search_params']}:")
        print(f"  {recalls}  {report['qps']:.0f} QPS  {report['ms_per_query']:.2f} ms/query  -> {report['png']}")
    return report


def _index_serve(args: argparse.Namespace) -> None:
    from mmrec.index.server import serve_index

    serve_index(args.index, host=args.host, port=args.port, max_batch=args.max_batch, max_body_bytes=args.max_body_bytes, search_threads=args.search_threads)


@_command("index")
def _index(args: argparse.Namespace) -> int:
    actions = {"build": _index_build, "add": _index_add, "search": _index_search, "eval": _index_eval, "serve": _index_serve}
    result = actions[args.index_command](args)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=str))
    return 0


@_command("align")
def _align(args: argparse.Namespace) -> int:
    from mmrec.errors import UsageError
    from mmrec.quantization import align, align_encoders

    if (args.emb is None) == (args.input is None):
        raise UsageError("give exactly one of --emb (cached embeddings) or --input (shards, through encoders)")
    config = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, holdout=args.holdout,
                  seed=args.seed, device=args.device)
    if args.temperature is not None:
        config.update(temperature=args.temperature, learn_temperature=False)
    pairs = dict(sources=tuple(s.strip() for s in args.pairs.split(",") if s.strip()),
                 positive=tuple(s.strip() for s in args.positive.split(",") if s.strip()),
                 window=args.window, top_n=args.top_n, seed=args.seed)
    if args.emb is not None:
        report = align(args.log, args.emb, args.out, column=args.column, config=dict(config, head=args.head),
                       pairs=pairs, progress=not args.json)
    else:
        report = align_encoders(args.log, args.input, args.out, image=args.image, text=args.text, audio=args.audio,
                                trainable={"lora_rank": args.lora_rank}, column=args.column, config=config,
                                pairs=pairs, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        before, after = report["before"], report["after"]
        print(f"aligned {report['items']} items on {report['train_pairs']} pairs -> {args.out}; held-out pairs "
              f"({report['heldout_pairs']}): cosine {before.get('pair_cosine', 0):.3f} -> {after.get('pair_cosine', 0):.3f}, "
              f"gap over random pairs {before.get('gap', 0):.3f} -> {after.get('gap', 0):.3f}, "
              f"AUC {before.get('auc', 0):.3f} -> {after.get('auc', 0):.3f}")
    return 0


@_command("quantize")
def _quantize(args: argparse.Namespace) -> int:
    from mmrec.quantization import quantize

    options = {k: v for k, v in (("niter", args.niter), ("epochs", args.epochs)) if v is not None}
    report = quantize(args.emb, args.out, method=args.method, levels=args.levels, codebook_size=args.codebook_size,
                      column=args.column, dedup=args.dedup, seed=args.seed, progress=not args.json, **options)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        usage = "/".join(f"{100 * level['usage']:.0f}" for level in report["levels"])
        print(f"{args.method}: {report['items']} items, {len(report['levels'])} levels -> {args.out}; unique ids "
              f"{report['unique_id_pct']:.1f} %, collision rate {100 * report['collision_rate']:.1f} %, codebook usage "
              f"per level {usage} %, relative reconstruction error {report['relative_reconstruction_error']:.3f}")
    return 0


@_command("rank")
def _rank(args: argparse.Namespace) -> int:
    if args.rank_command == "simulate":
        from mmrec.rankers import simulate

        summary = simulate(args.out, users=args.users, items=args.items, impressions=args.impressions, seed=args.seed)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"wrote a SYNTHETIC log of {summary['rows']} rows ({args.users} users, {args.items} items, domains "
                  f"{', '.join(summary['domains'])}, tasks {', '.join(summary['tasks'])}) to {args.out}; next: "
                  f"mmrec quantize --emb {args.out}/emb --out {args.out}/codes --levels 3 --codebook-size 16, then "
                  f"mmrec rank train --config {args.out}/rank.yaml")
        return 0
    from mmrec.rankers import train

    report = train(args.config, out=args.out, progress=not args.json)
    if not report:  # a DDP rank other than 0
        return 0
    table = report.pop("table")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        t = report["train"]
        print(f"{report['model']}: {report['parameters']:,} parameters on {report['device']}"
              + (f" (AMP {report['amp']})" if report["amp"] else "") + f", {report['world_size']} process(es); "
              f"{t['rows']} training rows x {t['epochs']} epochs in {t['seconds']:.1f} s ({t['samples_per_s']:.0f} samples/s); "
              f"test rows {report['test']['rows']} -> {report['checkpoint']}")
        print(table)
    return 0


@_command("graph")
def _graph(args: argparse.Namespace) -> int:
    from mmrec.errors import UsageError
    from mmrec.graphs import graph_build, graph_expand, graph_export, graph_train

    if args.graph_command == "build":
        config = {"gift_weight": args.gift_weight, "domains": args.domains, "users": args.users, "authors": args.authors,
                  "swing_top_n": args.swing_top_n, "batch_rows": args.batch_rows, "progress": not args.json}
        summary = graph_build(args.logs, args.out, config=config)
        text = (f"graph of {summary['nodes']['user']} users and {summary['nodes']['author']} authors from "
                f"{summary['log_rows']} log rows in {summary['seconds']:.1f} s -> {args.out}; edges: "
                + ", ".join(f"{k.replace('__', ' ')} {v}" for k, v in summary["edges"].items()))
    elif args.graph_command == "expand":
        summary = graph_expand(args.graph, args.out, metapaths=args.metapath or ("user>author>author", "author>user>author"),
                               k=args.k, chunk_nnz=args.chunk_nnz, normalize=not args.raw, progress=not args.json)
        text = (f"expanded in {summary['seconds']:.1f} s -> {args.out}: "
                + "; ".join(f"{m}: {v['sources']} sources, {v['mean_neighbours']} neighbours each" for m, v in summary["metapaths"].items()))
    elif args.graph_command == "train":
        try:
            fanouts = tuple(int(f) for f in args.fanouts.split(","))
        except ValueError:
            raise UsageError(f"--fanouts must be comma-separated integers, got {args.fanouts!r}") from None
        config = {"dim": args.dim, "fanouts": fanouts, "epochs": args.epochs, "max_steps": args.max_steps,
                  "batch_size": args.batch_size, "lr": args.lr, "device": args.device, "seed": args.seed, "progress": not args.json}
        summary = graph_train(args.graph, args.out, author_emb=args.author_emb, emb_column=args.emb_column, logs=args.logs, config=config)
        report = summary["report"]
        text = (f"GraphCL: {report['steps']} steps in {report['seconds']:.1f} s, loss per epoch "
                + " ".join(f"{x:.3f}" for x in report["epoch_loss"]) + f"; embeddings ({summary['dim']}-d) -> {args.out}")
    else:
        summary = graph_export(args.run, args.out)
        text = f"exported {', '.join(f'{n} {t}' for t, n in summary['nodes'].items())} embeddings ({summary['dim']}-d) -> {args.out}"
    print(json.dumps(summary, indent=2) if args.json else text)
    return 0


@_command("live")
def _live(args: argparse.Namespace) -> int:
    if args.live_command == "simulate":
        from mmrec.live_sim import simulate_live

        summary = simulate_live(args.out, users=args.users, authors=args.authors, topics=args.topics,
                                communities=args.communities, days=args.days, shard_segments=args.shards, seed=args.seed)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"wrote a SYNTHETIC live world to {args.out}: {summary['live_rows']} live rows "
                  f"({summary['live_watches']} watches, {summary['gifts']} gifts = {100 * summary['gift_rate']:.2f} %), "
                  f"{summary['video_rows']} short-video rows, {summary['segments']} segments"
                  + (f", {len(summary['files']['shards'])} shard(s)" if summary["files"]["shards"] else ""))
        return 0
    from mmrec.rankers.gtr_train import train_live

    report = train_live(args.data, args.out, mfq=args.mfq, gie=args.gie, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, threads=args.threads, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2, default=lambda x: None))
    else:
        lines = [f"GTR{' +MFQ' if args.mfq else ''}{' +GIE' if args.gie else ''}: {report['parameters']:,} parameters, "
                 f"{report['train_rows']} training rows in {report['train_s']:.1f} s -> {args.out}",
                 f"{'users':<8} {'AUC':>7} {'UAUC':>7} {'GAUC':>7} {'gifts':>6}"]
        for name, m in [("all", report["test"]), *report.get("by_group", {}).items()]:
            lines.append(f"{name:<8} {m['auc']:7.4f} {m['uauc']:7.4f} {m['gauc']:7.4f} {m['positives']:6d}")
        print("\n".join(lines))
    return 0


@_command("cdr")
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


@_command("demo")
def _demo(args: argparse.Namespace) -> int:
    from mmrec.demo import format_report, run_demo

    report = run_demo(
        args.out,
        items=args.items,
        seed=args.seed,
        image=args.image,
        image_weights=args.image_weights,
        text=args.text,
        audio=args.audio,
        progress=not args.json,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmrec`` command; returns the exit code."""
    # torch-geometric scripts a helper with torch.jit.script when imported, and torch 2.14 warns about
    # that on every `cdr` / `graph` / `live` run; nothing a user of the command can act on.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except MMRecError as err:
        print(f"mmrec: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
