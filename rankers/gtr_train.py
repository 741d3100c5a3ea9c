"""Training and evaluating :class:`mmrec.rankers.gtr.GTR` on :class:`mmrec.rankers.gtr_data.GTRData`.

:func:`train_gtr` plugs GTR into the one training loop (:func:`mmrec.training.fit`): index batches of
the training rows from :func:`mmrec.training.shuffled_batches`, a step of :func:`masked_bce` over the
tasks (gift masked where nothing was watched), the output bias started at the base rates. [I] Not
:func:`mmrec.pipelines.rank.train`'s data path: that one reads a :class:`RankConfig` log into
``RankSamples`` + ``ItemTable`` (item features and one history per row), with no slot for the target
segment's token sequences, the searched sub-sequences or the per-user expansion lists GTR needs.
There is no validation split (the log's time span is graphs / train / test), so no early stopping.

:func:`train_gtr` returns a report with the test metrics (AUC / UAUC / GAUC of
:mod:`mmrec.rankers.metrics`) overall and per user group (e.g. the simulator's ``gift_activity``),
and with ``out`` writes a run folder (:mod:`mmrec.runs`, kind ``gtr``: ``model.safetensors``,
``config.json``, ``metrics.json``) and, when MFQ is on, ``mfq.safetensors`` (:func:`mmrec.encoders.mfq.save_mfq`, what ``mmrec extract --fuse mfq
--fusion-weights`` reads). The job over a simulator folder is :func:`mmrec.pipelines.live.train_live`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.io import finite_json
from mmrec.rankers.gtr import GTR, GTRConfig
from mmrec.rankers.gtr_data import GTRData
from mmrec.rankers.losses import masked_bce
from mmrec.rankers.metrics import auc, uauc_gauc
from mmrec.runs import load_run, save_run
from mmrec.training import LoopConfig, fit, shuffled_batches


def build_gtr(data: GTRData, *, mfq: dict[str, Any] | None = None, author_graph: torch.Tensor | None = None,
              **options: Any) -> GTR:
    """A :class:`GTR` sized for ``data``: MFQ when ``mfq`` is a config dict (its input dims from the
    token tensors), GIE expansions when ``data`` has them, GraphCL features when ``author_graph`` is
    given; ``options``: the layer fields of :class:`GTRConfig` (``embedding_dim``, ``tower`` ...).
    The same as ``RANKERS.get("gtr")`` with the sizes filled in from ``data``."""
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
    device = next(model.parameters()).device
    out = [torch.sigmoid(model(data.batch(part, device)).float()).cpu()
           for part in np.array_split(rows, max(1, -(-len(rows) // batch_size)))]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, len(data.tasks)), np.float32)


def gtr_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict[str, Any]:
    """AUC, UAUC, GAUC (users with both classes), rows, positives."""
    uauc, gauc, n_users = uauc_gauc(labels, scores, users)
    return {"auc": auc(labels, scores), "uauc": uauc, "gauc": gauc, "users": n_users, "n": int(len(labels)),
            "positives": int(labels.sum())}


def train_gtr(model: GTR, data: GTRData, *, epochs: int = 2, batch_size: int = 512, lr: float = 2e-3,
              weight_decay: float = 0.0, seed: int = 0, user_groups: np.ndarray | None = None,
              group_names: tuple[str, ...] = (), out: str | Path | None = None, progress: bool = False,
              loop: LoopConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` (on its device) on ``data.train`` through :func:`mmrec.training.fit` (masked
    BCE over its tasks), evaluate gifts on the watched ``data.test`` rows; see the module docstring.

    ``user_groups``: ``(num_users,)`` group index per user, reported as ``by_group[group_names[i]]``.
    ``loop``: further :class:`mmrec.training.LoopConfig` fields (``max_minutes``, ``grad_clip``,
    ``checkpoint`` ...); ``epochs`` and ``progress`` here set theirs.
    """
    if batch_size < 1 or lr <= 0:
        raise UsageError(f"batch_size must be >= 1 and lr > 0, got {batch_size}, {lr}")
    loop = replace_config(build_config(LoopConfig, loop, "loop"), "loop", epochs=epochs, progress=progress, desc="gtr")
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    labels, masks = torch.from_numpy(data.label).to(device), torch.from_numpy(data.label_mask).to(device)
    with torch.no_grad():  # [I] start at the base rates: with 1 % gifts the first epoch is otherwise spent getting there
        for k in range(len(data.tasks)):
            rate = float(data.label[data.train, k][data.label_mask[data.train, k]].mean())
            if 0.0 < rate < 1.0:
                model.tower[-1].bias[k] = float(np.log(rate / (1 - rate)))
    train_rows = torch.from_numpy(data.train)
    epoch_batches = shuffled_batches(len(data.train), batch_size, seed=seed)

    def batches(epoch: int):
        for part in epoch_batches(epoch):
            if len(part) >= 2:  # batch norm needs two rows
                yield train_rows[part]

    def step(net: torch.nn.Module, rows: torch.Tensor):
        loss, per_task = masked_bce(net(data.batch(rows, device)), labels[rows], masks[rows])
        return loss, {f"loss_{t}": float(v) for t, v in zip(data.tasks, per_task.detach())}

    result = fit(model, optimizer, batches, step, config=loop)
    gift = data.tasks.index("gift")
    test = data.test[data.label_mask[data.test, gift]]  # gift metrics over watched rows
    probs = predict_gtr(model, data, data.test)
    scores = probs[data.label_mask[data.test, gift], gift]
    y, users = data.label[test, gift], data.user[test]
    report: dict[str, Any] = {"test": gtr_metrics(y, scores, users), "train_rows": int(len(data.train)),
                              "test_rows": int(len(data.test)), "train_s": round(result.seconds, 2),
                              "history": result.history, "steps": result.steps, "samples_per_s": result.samples_per_s,
                              "stopped": result.stopped, "device": result.device, "amp": result.amp,
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
        if model.mfq is not None:
            from mmrec.encoders.mfq import save_mfq

            out.mkdir(parents=True, exist_ok=True)
            save_mfq(model.mfq, out / "mfq.safetensors", info={"trained_with": "GTR gift head"})
        job = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed, "loop": asdict(loop)}
        save_gtr(model, out, job=job, metrics=finite_json(report))
    return report


def save_gtr(model: GTR, folder: str | Path, *, job: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> Path:
    """The run folder of ``model`` (:func:`mmrec.runs.save_run`, kind ``gtr``): weights with the buffers
    (author categories, GraphCL features) and its config."""
    return save_run(folder, asdict(model.config), job, model.state_dict(), metrics=metrics, kind="gtr")


def load_gtr(folder: str | Path) -> GTR:
    """Rebuild the GTR of a run folder written by :func:`save_gtr`, in eval mode."""
    config, state, _, _ = load_run(folder, kind="gtr")
    model = GTR(config["model"], author_category=state["author_category"], author_graph=state.get("author_graph"))
    model.load_state_dict(state)
    return model.eval()
