"""Training and evaluating :class:`mmrec.rankers.gtr.GTR` on :class:`mmrec.rankers.gtr_data.GTRData`.

Built from the pieces of :mod:`mmrec.rankers.trainer`: its epoch permutation (:func:`epoch_rows`),
device choice, :func:`masked_bce` and the AUC / UAUC / GAUC of :mod:`mmrec.rankers.metrics`. [I]
Not its ``train()``: that one reads a :class:`RankConfig` log into ``RankSamples`` + ``ItemTable``
(item features and one history per row), with no slot for the target segment's token sequences,
the searched sub-sequences or the per-user expansion lists GTR needs; a 40-line loop here is
simpler than widening that data path for one model.

:func:`train_gtr` returns a report with the test metrics overall and per user group (e.g. the
simulator's ``gift_activity``), and with ``out`` writes ``gtr.safetensors`` (weights, config in the
metadata) and, when MFQ is on, ``mfq.safetensors`` (:func:`mmrec.encoders.mfq.save_mfq`, what
``mmrec extract --fuse mfq --fusion-weights`` reads).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mmrec.errors import InputError, UsageError
from mmrec.io import atomic_path, read_safetensors, write_json
from mmrec.rankers.gtr import GTR, GTRConfig
from mmrec.rankers.gtr_data import GTRData
from mmrec.rankers.losses import masked_bce
from mmrec.rankers.metrics import auc, uauc_gauc
from mmrec.rankers.trainer import _finite, epoch_rows


def build_gtr(data: GTRData, *, mfq: dict[str, Any] | None = None, author_graph: torch.Tensor | None = None,
              **options: Any) -> GTR:
    """A :class:`GTR` sized for ``data``: MFQ when ``mfq`` is a config dict (its input dims from the
    token tensors), GIE expansions when ``data`` has them, GraphCL features when ``author_graph`` is given."""
    if mfq is not None:
        if not data.tokens:
            raise UsageError("MFQ needs segment tokens: prepare_gtr_data(..., tokens=True)")
        mfq = {**mfq, "dims": {m: int(t.shape[-1]) for m, t in data.tokens.items()}}
    config = GTRConfig(num_users=data.num_users, num_authors=data.num_authors, tasks=data.tasks,
                       num_categories=int(data.author_category.max()) + 1, mfq=mfq,
                       expansion_paths=data.expansion_paths,
                       graph_dim=0 if author_graph is None else int(author_graph.shape[1]), **options)
    return GTR(config, author_category=torch.from_numpy(data.author_category), author_graph=author_graph)


@torch.no_grad()
def predict_gtr(model: GTR, data: GTRData, rows: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Probabilities ``(len(rows), K)`` for sample ``rows``."""
    was = model.training
    model.eval()
    out = [torch.sigmoid(model(data.batch(part))) for part in np.array_split(rows, max(1, -(-len(rows) // batch_size)))]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, len(data.tasks)), np.float32)


def gtr_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict[str, Any]:
    """AUC, UAUC, GAUC (users with both classes), rows, positives."""
    uauc, gauc, n_users = uauc_gauc(labels, scores, users)
    return {"auc": auc(labels, scores), "uauc": uauc, "gauc": gauc, "users": n_users, "n": int(len(labels)),
            "positives": int(labels.sum())}


def train_gtr(model: GTR, data: GTRData, *, epochs: int = 2, batch_size: int = 512, lr: float = 2e-3,
              weight_decay: float = 0.0, seed: int = 0, user_groups: np.ndarray | None = None,
              group_names: tuple[str, ...] = (), out: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``data.train`` (masked BCE over its tasks), evaluate gifts on the watched
    ``data.test`` rows; see the module docstring.

    ``user_groups``: ``(num_users,)`` group index per user, reported as ``by_group[group_names[i]]``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise UsageError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    labels, masks = torch.from_numpy(data.label), torch.from_numpy(data.label_mask)
    with torch.no_grad():  # [I] start at the base rates: with 1 % gifts the first epoch is otherwise spent getting there
        for k in range(len(data.tasks)):
            rate = float(data.label[data.train, k][data.label_mask[data.train, k]].mean())
            if 0.0 < rate < 1.0:
                model.tower[-1].bias[k] = float(np.log(rate / (1 - rate)))
    history = []
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for rows in epoch_rows(len(data.train), batch_size, seed=seed, epoch=epoch):
            if len(rows) < 2:  # batch norm needs two rows
                continue
            rows = data.train[rows.numpy()]
            loss, _ = masked_bce(model(data.batch(rows)), labels[rows], masks[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
        history.append({"epoch": epoch + 1, "loss": total / max(steps, 1)})
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {total / max(steps, 1):.5f}", flush=True)
    train_s = time.perf_counter() - start
    gift = data.tasks.index("gift")
    test = data.test[data.label_mask[data.test, gift]]  # gift metrics over watched rows
    probs = predict_gtr(model, data, data.test)
    scores = probs[data.label_mask[data.test, gift], gift]
    y, users = data.label[test, gift], data.user[test]
    report: dict[str, Any] = {"test": gtr_metrics(y, scores, users), "train_rows": int(len(data.train)),
                              "test_rows": int(len(data.test)), "train_s": round(train_s, 2), "history": history,
                              "parameters": sum(p.numel() for p in model.parameters()), "config": asdict(model.config)}
    if "watch" in data.tasks:
        w = data.tasks.index("watch")
        report["test_watch"] = gtr_metrics(data.label[data.test, w], probs[:, w], data.user[data.test])
    if user_groups is not None:
        group = user_groups[users]
        report["by_group"] = {name: gtr_metrics(y[group == i], scores[group == i], users[group == i])
                              for i, name in enumerate(group_names) if (group == i).any()}
    if out is not None:
        out = Path(out)
        save_gtr(model, out / "gtr.safetensors")
        if model.mfq is not None:
            from mmrec.encoders.mfq import save_mfq

            save_mfq(model.mfq, out / "mfq.safetensors", info={"trained_with": "GTR gift head"})
        write_json(out / "metrics.json", _finite(report))
    return report


def save_gtr(model: GTR, path: str | Path) -> Path:
    """Weights (buffers included: author categories, GraphCL features) + config, one safetensors file; atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"mmrec": json.dumps({"kind": "gtr", "config": asdict(model.config)})})
    return path


def load_gtr(path: str | Path) -> GTR:
    """Rebuild a GTR written by :func:`save_gtr`, in eval mode."""
    state, meta = read_safetensors(path, "GTR checkpoint")
    if not isinstance(meta, dict) or meta.get("kind") != "gtr":
        raise InputError(f"{path}: not a GTR checkpoint")
    model = GTR(meta["config"], author_category=state["author_category"], author_graph=state.get("author_graph"))
    model.load_state_dict(state)
    return model.eval()


GIE_METAPATHS = ("user>author>author", "user-watches>author>author")


def gie_inputs(data: GTRData, log, *, k: int = 10, graph_dim: int = 16, graphcl_epochs: int = 2, seed: int = 0,
               metapaths: tuple[str, ...] = GIE_METAPATHS, author_features: torch.Tensor | None = None):
    """GIE for GTR from the rows before the training window (:meth:`GTRData.graph_rows`): build the
    graphs, attach the top-``k`` expansions of ``metapaths`` to ``data`` and return GraphCL author
    embeddings ``(num_authors, graph_dim)`` (``author_features``: the authors' content attributes)."""
    from mmrec.graphs import build_graphs, expand_metapaths, train_graphcl

    graph = build_graphs(data.graph_rows(log), config={"n_users": data.num_users, "n_authors": data.num_authors})
    data.set_expansions(expand_metapaths(graph, metapaths, k=k), metapaths, k)
    features = None if author_features is None else {"author": author_features}
    embeddings = train_graphcl(graph, features=features, config={"dim": graph_dim, "epochs": graphcl_epochs, "seed": seed})
    return embeddings["author"]


def train_live(folder: str | Path, out: str | Path | None = None, *, mfq: bool | dict[str, Any] = True, gie: bool = True,
               epochs: int = 2, batch_size: int = 1024, lr: float = 2e-3, seed: int = 0, threads: int | None = None,
               progress: bool = False) -> dict[str, Any]:
    """``mmrec live train``: GTR on a :mod:`mmrec.live_sim` folder (tasks watch + gift), with MFQ and/or
    GIE; writes ``gtr.safetensors``, ``mfq.safetensors`` (with MFQ) and ``metrics.json`` to ``out``."""
    from mmrec.live_sim import ACTIVITY, AUTHORS_FILE, LOG_FILE, USERS_FILE, read_live_log
    from mmrec.rankers.gtr_data import prepare_gtr_data

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        folder = Path(folder)
        if not (folder / LOG_FILE).is_file():
            raise UsageError(f"{folder} holds no {LOG_FILE}; write one with mmrec live simulate")
        users = pq.read_table(folder / USERS_FILE, columns=["gift_activity"]).column(0).to_pylist()
        n_authors = pq.read_metadata(folder / AUTHORS_FILE).num_rows
        log = read_live_log(folder / LOG_FILE, users=len(users), authors=n_authors)
        data = prepare_gtr_data(folder, tasks=("watch", "gift"), tokens=bool(mfq), log=log)
        author_graph = gie_inputs(data, log, seed=seed) if gie else None
        torch.manual_seed(seed)
        model = build_gtr(data, mfq=({"width": 32, "heads": 2, "queries": 2, "out_dim": 32} if mfq is True else mfq or None),
                          author_graph=author_graph)
        names = tuple(a for a in ACTIVITY if a in set(users)) + tuple(sorted(set(users) - set(ACTIVITY)))
        groups = np.array([names.index(u) for u in users])
        return train_gtr(model, data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, user_groups=groups,
                         group_names=names, out=out, progress=progress)
    finally:
        torch.set_num_threads(previous)
