"""Peers side by side on sequential retrieval: RecBole 1.2.1 SASRec and cornac 3.0.1 SASRec beside mmrec.

    OMP_NUM_THREADS=1 python bench/seq_peer.py --data /work/shared/data/amazon-seq/Scientific \
        --epochs 20 --max-minutes 3 --threads 1

One script run, one machine, back to back: the data folder (``<DS>.inter.json``, lcrec format) is
imported once with ``mmrec seq import`` and every tool reads *those* sequences, converted to its own
input: RecBole's atomic ``DS.inter`` (``user_id:token item_id:token timestamp:float``, timestamp =
position) and cornac's USIT rows (user, session = user, item, timestamp = position; ``train.usit`` =
the training parts, ``valid.usit`` = the whole listed sequences, which cornac's ``mode="last"``
evaluation reads as "predict the last item from the ones before it"). Split (README of amazon-seq):
validation target = each user's last listed item, predicted from the items before it; everything
before it is training data. RecBole gets ``eval_args.split = {"LS": "valid_only"}`` with order ``TO``,
so its validation set is exactly that item; cornac gets the full sequences as its ``val_set``.

Metrics: each peer trains with its own loop and selects its epoch with its own validation NDCG@10
(RecBole's evaluator, cornac's ``val_score``); then its worker exports the peer's user vectors (its
own encoder over the validation history, the last ``--max-len`` items) and its output item
embeddings, and *mmrec's* evaluator (:func:`mmrec.retrieval.evaluate.evaluate`: full ranking over
all items, ties against the true item) ranks every tool the same way, history kept (the protocol)
and, beside it, history excluded. Neither peer masks the history for sequential models, so each
peer's own validation figures (``own_validation``) must equal mmrec's history-kept ranking of its
vectors: the check that every tool is scored on the same target (cornac scores one user at a time,
minutes per pass here, so its own pass reads the first ``--cornac-val-users`` users, and mmrec's
ranking over the same users is reported beside it). Both
peers score by the dot product of the last position's output and the item embedding (no item bias),
so the exported vectors give the peer's own scores; the worker checks that on a few users against
the peer's own scoring call (``max_abs_diff``), and reports one user's history and target as the
peer holds them in raw ids, which this script compares with the source file (``id_check``).

Training samples/s, the same definition for every tool: training targets (a position of a user's
training part whose next item is predicted; RecBole and cornac make one augmented sample per
position, mmrec computes every position of a sequence in one pass) processed per second of the
training loop, validation excluded. Every tool gets the same ``--max-len``, ``--dim``, ``--layers``,
``--heads``, ``--batch-size`` (targets per step), learning rate, ``--epochs`` cap, ``--max-minutes``
cap of training time and ``--patience`` (epochs without a better validation NDCG@10); dropout and
loss are each tool's default (RecBole: CE over all items, dropout 0.5; cornac: CE over the batch plus
2048 shared popularity negatives, dropout 0.2; mmrec sasrec: full softmax, kuaiformer: in-batch with
logQ). The table says when a tool stopped at a cap (``stopped``: epochs / time / early_stop).
Writes ``OUT/DS/seq-peer.json`` and ``OUT/seq-peer.json`` (one entry per data set) and prints the table, with mmrec's best / each peer for samples/s and
NDCG@10. Peers live in their own venvs (:func:`bench.peers.ensure_venv`); this file is also their
worker (``--worker recbole|cornac --spec FILE``), so it imports only the standard library and numpy
at the top.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TOOLS = ("recbole", "cornac", "mmrec-sasrec", "mmrec-kuaiformer")
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
CHECK_USERS = 4  # users whose peer scores are recomputed with the peer's own scoring call


# ---------------------------------------------------------------- converters (run in mmrec's env; tested)

def write_recbole_inter(offsets: np.ndarray, items: np.ndarray, path: Path) -> int:
    """RecBole's atomic ``.inter`` of whole sequences: user ``u`` and item ``i`` as tokens ``"u"`` / ``"i"``,
    ``timestamp`` = position in the sequence (RecBole's ``TO`` order keeps it); returns the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(len(offsets) - 1):
            f.writelines(f"{u}\t{int(item)}\t{pos}\n" for pos, item in enumerate(items[offsets[u]:offsets[u + 1]]))
    return int(offsets[-1])


def write_cornac_usit(offsets: np.ndarray, items: np.ndarray, path: Path, *, drop_last: bool) -> int:
    """cornac's USIT rows ``user<TAB>session<TAB>item<TAB>timestamp`` (session = user, timestamp =
    position), without each sequence's last item when ``drop_last``; returns the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(path, "w", encoding="utf-8") as f:
        for u in range(len(offsets) - 1):
            seq = items[offsets[u]:offsets[u + 1]]
            for pos, item in enumerate(seq[:-1] if drop_last else seq):
                f.write(f"{u}\t{u}\t{int(item)}\t{pos}\n")
                rows += 1
    return rows


def read_usit(path: Path) -> list[tuple[str, str, str, int]]:
    """The USIT rows of :func:`write_cornac_usit` as cornac's ``SequentialDataset.build`` takes them."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            u, s, i, t = line.rstrip("\n").split("\t")
            out.append((u, s, i, int(t)))
    return out


# ---------------------------------------------------------------- peer workers (run in the peer's venv)

class _Clock:
    """Training time, targets and validation score per epoch; the deadline and patience of a peer run."""

    def __init__(self, spec: dict) -> None:
        self.spec, self.epochs, self.best, self.best_epoch, self.stale = spec, [], -1.0, None, 0
        self.deadline = time.perf_counter() + 60 * spec["max_minutes"]
        self.stopped = "epochs"

    def over(self) -> bool:
        """Past the training-time cap (checked after every step, as :func:`mmrec.training.fit` does)."""
        return time.perf_counter() > self.deadline

    def add(self, seconds: float, samples: int, score: float) -> bool:
        """Record an epoch; True when the run should stop (time cap or patience)."""
        self.epochs.append({"epoch": len(self.epochs) + 1, "seconds": round(seconds, 3), "samples": int(samples),
                            "ndcg@10_own": round(float(score), 5)})
        if score > self.best:
            self.best, self.best_epoch, self.stale = float(score), len(self.epochs), 0
        else:
            self.stale += 1
        if len(self.epochs) >= self.spec["epochs"]:
            self.stopped = "epochs"
            return True
        if self.stale >= self.spec["patience"]:
            self.stopped = "early_stop"
        elif self.over():
            self.stopped = "time"
        return self.stopped != "epochs"

    def report(self) -> dict:
        seconds = sum(e["seconds"] for e in self.epochs)
        samples = sum(e["samples"] for e in self.epochs)
        return {"epochs": len(self.epochs), "best_epoch": self.best_epoch, "stopped": self.stopped,
                "train_s": round(seconds, 3), "samples": samples,
                "samples_per_s": samples / seconds if seconds else None, "history": self.epochs}


class _CappedLoader:
    """RecBole's training loader, its batches counted and cut off once the time cap has passed."""

    def __init__(self, loader, clock: _Clock) -> None:
        self.loader, self.clock, self.samples = loader, clock, 0

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.clock.over():
                return
            self.samples += len(batch)
            yield batch


def _worker_recbole(spec: dict) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(spec["threads"])
    config = Config(model="SASRec", dataset=spec["name"], config_dict={
        "data_path": spec["recbole_dir"], "checkpoint_dir": spec["out"], "show_progress": False, "save_dataset": False,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "mode": "full", "group_by": "user"},
        "MAX_ITEM_LIST_LENGTH": spec["max_len"], "hidden_size": spec["dim"], "inner_size": 4 * spec["dim"],
        "n_layers": spec["layers"], "n_heads": spec["heads"], "loss_type": "CE", "train_neg_sample_args": None,
        "learning_rate": spec["lr"], "train_batch_size": spec["batch_size"], "eval_batch_size": 1024,
        "metrics": ["Recall", "NDCG"], "topk": [5, 10], "valid_metric": "NDCG@10",
        "epochs": spec["epochs"], "seed": spec["seed"], "reproducibility": True, "use_gpu": False, "device": "cpu",
        "worker": 0, "log_wandb": False})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = SASRec(config, train_data.dataset).to("cpu")
    trainer = Trainer(config, model)
    clock, best_state, own = _Clock(spec), None, None
    loader = _CappedLoader(train_data, clock)
    for epoch in range(spec["epochs"]):
        loader.samples = 0
        t0 = time.perf_counter()
        trainer._train_epoch(loader, epoch, show_progress=False)  # RecBole's own epoch: its sampler, loss, optimizer
        seconds = time.perf_counter() - t0
        score, result = trainer._valid_epoch(valid_data, show_progress=False)
        if clock.best_epoch is None or score > clock.best:
            best_state, own = copy.deepcopy(model.state_dict()), {k: float(v) for k, v in result.items()}
        if clock.add(seconds, loader.samples, score):  # one augmented sample = one target
            break
    model.load_state_dict(best_state)
    model.eval()
    # export: validation rows of RecBole's own split, in our user order
    inter = valid_data.dataset.inter_feat
    tok_user = dataset.field2id_token["user_id"]
    tok_item = dataset.field2id_token["item_id"]
    users = np.array([int(tok_user[u]) for u in inter["user_id"].numpy()])
    order = np.argsort(users)
    if not np.array_equal(users[order], np.arange(spec["n_users"])):
        raise SystemExit(f"RecBole's validation set has {len(users)} rows, expected one per user ({spec['n_users']})")
    with torch.no_grad():
        seq, length = inter["item_id_list"][order], inter["item_length"][order]
        user_vecs = torch.cat([model.forward(seq[i:i + 1024], length[i:i + 1024]) for i in range(0, len(seq), 1024)])
        internal = torch.as_tensor([dataset.token2id("item_id", str(i)) for i in range(spec["n_items"])])
        item_vecs = model.item_embedding.weight[internal]
        # the peer's own scoring call on a few users vs the exported vectors
        rows = torch.arange(CHECK_USERS)
        batch = {"item_id_list": seq[rows], "item_length": length[rows], "user_id": inter["user_id"][order][rows]}
        from recbole.data.interaction import Interaction

        own_scores = model.full_sort_predict(Interaction(batch)).view(CHECK_USERS, -1)[:, internal]
        diff = float((own_scores - user_vecs[rows] @ item_vecs.T).abs().max())
    u0 = int(order[0])
    hist0 = [tok_item[i] for i in inter["item_id_list"][u0][: int(inter["item_length"][u0])].tolist()]
    np.savez(Path(spec["out"]) / "vectors.npz", users=user_vecs.detach().numpy(), items=item_vecs.detach().numpy())
    return {**clock.report(), "own_validation": own, "max_abs_diff": diff,
            "id_check": {"user": tok_user[int(inter["user_id"][u0])], "history_tail": hist0[-3:],
                         "history_len": len(hist0), "target": tok_item[int(inter["item_id"][u0])]},
            "samples_per_epoch": len(train_data.dataset)}


def _worker_cornac(spec: dict) -> dict:
    from collections import OrderedDict

    import cornac.models.sasrec.recom_sasrec as recom
    import torch
    from cornac.data import SequentialDataset
    from cornac.models import SASRec

    torch.set_num_threads(spec["threads"])
    cdir = Path(spec["cornac_dir"])
    uid = OrderedDict((str(u), u) for u in range(spec["n_users"]))  # cornac index = mmrec index
    iid = OrderedDict((str(i), i) for i in range(spec["n_items"]))
    sid = OrderedDict((str(u), u) for u in range(spec["n_users"]))
    train_set = SequentialDataset.build(read_usit(cdir / "train.usit"), fmt="USIT", global_uid_map=uid,
                                        global_sid_map=sid, global_iid_map=iid, seed=spec["seed"])
    rows = read_usit(cdir / "valid.usit")
    val_set = SequentialDataset.build(rows, fmt="USIT", global_uid_map=uid, global_sid_map=OrderedDict(sid),
                                      global_iid_map=iid, seed=spec["seed"])
    own_users = min(spec["cornac_val_users"] or spec["n_users"], spec["n_users"])
    own_val = val_set if own_users == spec["n_users"] else SequentialDataset.build(
        [r for r in rows if int(r[0]) < own_users], fmt="USIT", global_uid_map=uid, global_sid_map=OrderedDict(sid),
        global_iid_map=iid, seed=spec["seed"])  # cornac validates one user at a time: its own pass reads the first users
    clock = _Clock(spec)
    state = {"t0": None, "seconds": 0.0, "samples": 0, "stop": False}
    inner_iter, inner_val = recom.session_seq_iter, recom.val_score

    def timed_iter(*args, **kwargs):
        """cornac's own batch iterator, timed and counted; empty once the run has stopped."""
        if state["stop"]:
            return
        t0 = time.perf_counter()
        for batch in inner_iter(*args, **kwargs):
            if clock.over():
                break
            if len(batch[1]) >= 2:  # cornac skips batches of one
                state["samples"] += len(batch[1])
            yield batch
        state["seconds"] += time.perf_counter() - t0

    def checked_val(model, *args, **kwargs):
        """cornac's own validation score (NDCG@10, mode last, history kept); records the epoch, applies the caps."""
        if state["stop"]:
            return None
        score = inner_val(model, *args, **kwargs)
        state["stop"] = clock.add(state["seconds"], state["samples"], score)
        state["seconds"], state["samples"] = 0.0, 0
        return score

    recom.session_seq_iter, recom.val_score = timed_iter, checked_val
    model = SASRec(embedding_dim=spec["dim"], max_len=spec["max_len"], num_blocks=spec["layers"], num_heads=spec["heads"],
                   batch_size=spec["batch_size"], learning_rate=spec["lr"], n_epochs=spec["epochs"], seed=spec["seed"],
                   model_selection="best", val_eval_every=1, val_k=10, val_metric="ndcg", verbose=False)
    model.fit(train_set, own_val)
    net = model.model.eval()
    hists = [val_set.sessions[s] for s in range(spec["n_users"])]
    items_of = val_set.uir_tuple[1]
    pad = model.pad_idx
    with torch.no_grad():
        padded = np.full((spec["n_users"], spec["max_len"]), pad, dtype=np.int64)
        for u, mapped in enumerate(hists):
            h = items_of[mapped][:-1][-spec["max_len"]:]
            padded[u, spec["max_len"] - len(h):] = h
        t = torch.as_tensor(padded)
        user_vecs = torch.cat([net._encode(t[i:i + 1024]) for i in range(0, len(t), 1024)])
        item_vecs = net.item_emb.weight[: spec["n_items"]]
        diff = max(float(np.abs(model.score(u, list(items_of[hists[u]][:-1])) - (user_vecs[u] @ item_vecs.T).numpy()).max())
                   for u in range(CHECK_USERS))
    raw = list(iid.keys())
    seq0 = [raw[i] for i in items_of[hists[0]]]
    np.savez(Path(spec["out"]) / "vectors.npz", users=user_vecs.detach().numpy(), items=item_vecs.detach().numpy())
    return {**clock.report(), "own_validation": {"ndcg@10": clock.best}, "own_validation_users": own_users, "max_abs_diff": diff,
            "id_check": {"user": next(iter(uid)), "history_tail": seq0[:-1][-3:], "history_len": len(seq0) - 1,
                         "target": seq0[-1]},
            "samples_per_epoch": sum(max(len(m) - 1, 0) for m in train_set.sessions.values())}


WORKERS = {"recbole": _worker_recbole, "cornac": _worker_cornac}


# ---------------------------------------------------------------- the bench (mmrec's env)

def _run_peer(name: str, venv: str | None, spec: dict, out: Path, timeout_s: float) -> dict:
    from bench.peers import ensure_venv, peer_python

    made = ensure_venv(name, Path(venv) if venv else None)
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    start = time.perf_counter()
    done = subprocess.run([peer_python(made["venv"]), str(Path(__file__).resolve()), "--worker", name, "--spec",
                           str((out / "spec.json").resolve())], env=env, cwd=out, capture_output=True, text=True, timeout=timeout_s, check=False)
    wall = time.perf_counter() - start
    (out / "worker.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{name} worker failed (exit {done.returncode}); see {out / 'worker.log'}:\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {**report, "wall_s": round(wall, 1), "versions": made["versions"]}


class _RowScorer:
    """Scores of exported user vectors, row by row in the evaluator's (in-order) batches: ``U @ I^T``."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        import torch

        self.users, self.items, self.next = torch.as_tensor(users), torch.as_tensor(items), 0

    def __call__(self, hist: np.ndarray):
        rows = self.users[self.next:self.next + len(hist)]
        self.next += len(hist)
        return rows @ self.items.T


def _ranked(vectors: Path, history, targets, max_len: int, train_counts, own_users: int | None) -> dict:
    """mmrec's ranking of a peer's vectors; ``own_users``: also over the first users only (those of the peer's own pass)."""
    from mmrec.retrieval.evaluate import evaluate, metrics_from_ranks

    v = np.load(vectors)
    kept = evaluate(_RowScorer(v["users"], v["items"]), history, targets, max_len=max_len, train_counts=train_counts,
                    return_ranks=True)
    excluded = evaluate(_RowScorer(v["users"], v["items"]), history, targets, max_len=max_len, exclude_history=True)
    out = {**{m: kept[m] for m in METRICS}, "tail_recall@10": kept["tail"]["recall@10"],
           "excluded": {m: excluded[m] for m in METRICS}}
    if own_users:
        out["mmrec_on_own_validation_users"] = metrics_from_ranks(kept["ranks"][:own_users])
    return out


def _id_check(check: dict, raw_json: dict, vocab: dict, max_len: int) -> dict:
    """Does the peer hold user ``check['user']``'s history and target as the source file lists them?"""
    u = int(check["user"])
    raw_user = vocab["users"][u]
    source = [str(i) for i in raw_json[raw_user]]

    def as_raw(tokens: list[str]) -> list[str]:
        return [vocab["items"][int(t)] for t in tokens]

    ok = as_raw(check["history_tail"]) == source[:-1][-3:] and vocab["items"][int(check["target"])] == source[-1] \
        and check["history_len"] in (len(source) - 1, min(len(source) - 1, max_len))  # whole or last max_len
    return {"raw_user": raw_user, "peer_history_tail_raw": as_raw(check["history_tail"]),
            "peer_target_raw": vocab["items"][int(check["target"])], "source_tail": source[-4:], "match": bool(ok)}


def _mmrec(model: str, data: Path, out: Path, args, history) -> dict:
    from mmrec.pipelines.retrieve import evaluate_run, train

    job = {"model": model, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
           "model_config": {"dim": args.dim, "layers": args.layers, "heads": args.heads, "max_len": args.max_len},
           "loop": {"epochs": args.epochs, "max_minutes": args.max_minutes, "patience": args.patience, "progress": False}}
    start = time.perf_counter()
    report = train(data, out, job, progress=False)
    wall = time.perf_counter() - start
    t, v = report["train"], report["validation"]
    excluded = evaluate_run(out, exclude_history=True)
    return {**{m: v[m] for m in METRICS}, "tail_recall@10": v["tail"]["recall@10"],
            "excluded": {m: excluded[m] for m in METRICS}, "epochs": len(t["history"]), "best_epoch": t["best_epoch"],
            "stopped": t["stopped"], "train_s": t["seconds"], "samples": t["samples"], "samples_per_s": t["samples_per_s"],
            "wall_s": round(wall, 1), "history": t["history"],
            "samples_per_epoch": int(np.minimum(np.maximum(history.lengths - 1, 0), args.max_len).sum())}  # last max_len targets of a user


def _table(rows: dict) -> str:
    head = f"{'tool':<18}" + "".join(f"{m:>11}" for m in METRICS) + f"{'N@10 excl':>11}{'samples/s':>11}{'train s':>9}" \
           f"{'wall s':>8}{'epochs':>8}  stopped"
    lines = [head]
    for name, r in rows.items():
        lines.append(f"{name:<18}" + "".join(f"{r[m]:>11.4f}" for m in METRICS) + f"{r['excluded']['ndcg@10']:>11.4f}"
                     f"{r['samples_per_s']:>11.0f}{r['train_s']:>9.0f}{r['wall_s']:>8.0f}{r['epochs']:>5} ({r['best_epoch']})  {r['stopped']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="a folder of amazon-seq (DS.inter.json), e.g. /work/shared/data/amazon-seq/Beauty")
    p.add_argument("--name", default=None, help="data set name (default: the folder's name)")
    p.add_argument("--out", default="bench-out/seq-peer")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--cornac-venv", default=None, help="peer venv (default bench.peers.default_venv('cornac'))")
    p.add_argument("--recbole-venv", default=None, help="peer venv (default bench.peers.default_venv('recbole'))")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256, help="training targets per step, every tool")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=20, help="epochs cap, every tool")
    p.add_argument("--max-minutes", type=float, default=3.0, help="training-minutes cap per tool")
    p.add_argument("--patience", type=int, default=3, help="epochs without a better validation NDCG@10")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cornac-val-users", type=int, default=2000,
                   help="users of cornac's own validation pass (epoch selection, the check); 0 = all. It scores one user at a time")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.spec).read_text())
        report = WORKERS[args.worker](spec)
        (Path(spec["out"]) / "report.json").write_text(json.dumps(report))
        return 0
    if not args.data:
        p.error("--data is required")

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mmrec.pipelines.retrieve import read_vocab as _vocab
    from mmrec.pipelines.seq_import import import_sequences
    from mmrec.retrieval.data import read_sequences

    torch.set_num_threads(args.threads)
    src = Path(args.data)
    name = args.name or src.name
    out = Path(args.out) / name
    data = out / "data"
    import_sequences(src, name, data, format="lcrec")
    seqs, _ = read_sequences(data)
    history, targets = seqs.split_last()
    vocab = _vocab(data)
    raw_json = json.loads((src / f"{name}.inter.json").read_text())
    write_recbole_inter(seqs.offsets, seqs.items, out / "recbole" / name / f"{name}.inter")
    write_cornac_usit(seqs.offsets, seqs.items, out / "cornac" / "train.usit", drop_last=True)
    write_cornac_usit(seqs.offsets, seqs.items, out / "cornac" / "valid.usit", drop_last=False)
    train_counts = history.item_counts()
    spec = {"name": name, "recbole_dir": str((out / "recbole").resolve()), "cornac_dir": str((out / "cornac").resolve()),
            "n_users": len(seqs), "n_items": seqs.n_items, "max_len": args.max_len, "dim": args.dim, "layers": args.layers,
            "heads": args.heads, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
            "max_minutes": args.max_minutes, "patience": args.patience, "threads": args.threads, "seed": args.seed,
            "cornac_val_users": args.cornac_val_users}
    import importlib.metadata as md

    rows: dict[str, dict] = {}
    for tool in args.tools.split(","):
        print(f"[seq-peer] {name}: {tool} ...", flush=True)
        load_before = os.getloadavg()
        run = out / "runs" / tool
        run.mkdir(parents=True, exist_ok=True)
        if tool in WORKERS:
            peer = _run_peer(tool, getattr(args, f"{tool}_venv"), {**spec, "out": str(run.resolve())}, run,
                             timeout_s=60 * args.max_minutes * 3 + 600)
            peer.update(_ranked(run / "vectors.npz", history, targets, args.max_len, train_counts,
                                peer.get("own_validation_users", len(seqs))))
            peer["id_check"] = _id_check(peer["id_check"], raw_json, vocab, args.max_len)
            rows[tool] = peer
        else:
            rows[tool] = {**_mmrec(tool.split("-", 1)[1], data, run, args, history), "versions": {"mmrec": md.version("mmrec"), "torch": torch.__version__}}
        rows[tool]["load_avg_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]  # before, after
        print(json.dumps({k: v for k, v in rows[tool].items() if k != "history"}), flush=True)
    ours = {k: r for k, r in rows.items() if k.startswith("mmrec")}
    best = max(ours, key=lambda k: ours[k]["ndcg@10"]) if ours else None
    ratios = {peer: {"mmrec": best, "samples_per_s": rows[best]["samples_per_s"] / rows[peer]["samples_per_s"],
                     "ndcg@10": rows[best]["ndcg@10"] / rows[peer]["ndcg@10"] if rows[peer]["ndcg@10"] else None}
              for peer in rows if peer in WORKERS and best}
    result = {"dataset": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
              "machine": f"{os.cpu_count()} CPUs, torch threads {args.threads}", "users": len(seqs), "items": seqs.n_items,
              "settings": {k: spec[k] for k in ("max_len", "dim", "layers", "heads", "batch_size", "lr", "epochs", "max_minutes",
                                                "patience", "threads", "seed")},
              "split": "validation: each user's last listed item from the items before it; full ranking over all items",
              "tools": rows, "ratio_best_mmrec_over_peer": ratios}
    (out / "seq-peer.json").write_text(json.dumps(result, indent=2))
    merged_path = Path(args.out) / "seq-peer.json"
    merged = json.loads(merged_path.read_text()) if merged_path.is_file() else {}
    merged_path.write_text(json.dumps({**merged, name: result}, indent=2))
    print(f"\n{name} (validation; history kept unless 'excl'; epochs = run (best))")
    print(_table(rows))
    for peer, r in ratios.items():
        print(f"{r['mmrec']} / {peer}: samples/s x{r['samples_per_s']:.2f}, NDCG@10 x{r['ndcg@10']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
