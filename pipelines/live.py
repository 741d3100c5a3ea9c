"""``mmrec live train``: MMBee's GTR gift ranker trained on a SYNTHETIC live simulator folder.

:func:`train_live` reads a :func:`mmrec.synthetic.live_sim.simulate_live` folder
(:func:`mmrec.synthetic.live_sim.read_live_world`), builds the GTR samples and sequences
(:func:`mmrec.rankers.prepare_gtr_data`, tasks watch + gift, split per :class:`GTRDataConfig`),
with ``gie`` the GIE inputs (:func:`gie_inputs`: graphs from the rows before the training window,
metapath expansions, GraphCL author embeddings), builds GTR (:func:`mmrec.rankers.build_gtr`, with
``mfq`` the MFQ segment fusion), trains it through the shared loop (:func:`mmrec.rankers.train_gtr`)
and writes the run folder ``out`` (:mod:`mmrec.runs`: ``model.safetensors``, ``config.json``,
``metrics.json``) and ``mfq.safetensors`` (with MFQ). It returns the training report (test metrics overall and per planted ``gift_activity`` group).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.io import finite_json, output_folder
from mmrec.rankers.gtr_data import GTRData, GTRDataConfig
from mmrec.threads import THREADS_HELP, announce_threads, use_threads

GIE_METAPATHS = ("user>author>author", "user-watches>author>author")
MFQ_OPTIONS = {"width": 32, "heads": 2, "queries": 2, "out_dim": 32}


@dataclass
class LiveTrainConfig:
    """What :func:`train_live` trains; the CLI's options are these fields (and :class:`GTRDataConfig`'s)."""

    mfq: bool = field(default=False, metadata={"help": "MFQ segment vectors of the target segment (trained end to end)"})
    gie: bool = field(default=False, metadata={"help": "GIE metapath expansions and GraphCL author embeddings"})
    epochs: int = field(default=2, metadata={"help": "passes over the training rows"})
    batch_size: int = field(default=1024, metadata={"help": "training rows per step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    seed: int = field(default=0, metadata={"help": "seed of the weights, the batch order and GraphCL"})
    threads: int | None = field(default=None, metadata={"help": THREADS_HELP})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    expansion_k: int = field(default=10, metadata={"help": "GIE: expanded authors per metapath and user"})
    graph_dim: int = field(default=16, metadata={"help": "GIE: width of the GraphCL author embeddings"})
    graphcl_epochs: int = field(default=2, metadata={"help": "GIE: GraphCL pre-training epochs"})
    mfq_options: dict[str, Any] = field(default_factory=lambda: dict(MFQ_OPTIONS),
                                        metadata={"help": "MFQConfig fields (input dims come from the tokens)"})
    model: dict[str, Any] = field(default_factory=dict, metadata={"help": "GTRConfig layer fields (embedding_dim, tower ...)"})
    samples: GTRDataConfig = field(default_factory=GTRDataConfig,
                                   metadata={"help": "time split and sequence lengths (GTRDataConfig)"})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise UsageError(f"epochs and batch_size must be >= 1 and lr > 0, got {self.epochs}, {self.batch_size}, {self.lr}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        for name in ("expansion_k", "graph_dim", "graphcl_epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")


def gie_inputs(data: GTRData, log, *, k: int = 10, graph_dim: int = 16, graphcl_epochs: int = 2, seed: int = 0,
               metapaths: tuple[str, ...] = GIE_METAPATHS, author_features: torch.Tensor | None = None) -> torch.Tensor:
    """GIE for GTR from the rows of ``log`` before the training window (:meth:`GTRData.graph_rows`):
    build the graphs, attach the top-``k`` expansions of ``metapaths`` to ``data`` and return GraphCL
    author embeddings ``(num_authors, graph_dim)`` (``author_features``: the authors' content attributes)."""
    from mmrec.graphs import build_graphs, expand_metapaths, train_graphcl

    graph = build_graphs(data.graph_rows(log), config={"n_users": data.num_users, "n_authors": data.num_authors})
    data.set_expansions(expand_metapaths(graph, metapaths, k=k), metapaths, k)
    features = None if author_features is None else {"author": author_features}
    embeddings = train_graphcl(graph, features=features, config={"dim": graph_dim, "epochs": graphcl_epochs, "seed": seed})
    return embeddings["author"]


def train_live(folder: str | Path, out: str | Path | None = None, config: LiveTrainConfig | dict | str | None = None, *,
               progress: bool = False, **overrides: Any) -> dict[str, Any]:
    """Train GTR on the simulator folder ``folder`` (see the module docstring); ``config``: a
    :class:`LiveTrainConfig`, a dict of its fields or a YAML path; ``overrides``: fields on top."""
    from mmrec.rankers.gtr_data import prepare_gtr_data
    from mmrec.rankers.gtr_train import build_gtr, train_gtr
    from mmrec.synthetic.live_sim import read_live_world

    cfg = replace_config(build_config(LiveTrainConfig, config, "live train"), "live train", **overrides)
    with output_folder(out) if out is not None else contextlib.nullcontext(), \
            use_threads(cfg.threads, what="live train threads") as threads:
        world = read_live_world(folder, tokens=cfg.mfq)
        data = prepare_gtr_data(world, cfg.samples, tasks=("watch", "gift"), tokens=cfg.mfq)
        if progress:  # the inputs are read: training starts
            announce_threads(threads, cfg.threads)
        author_graph = gie_inputs(data, world.log, k=cfg.expansion_k, graph_dim=cfg.graph_dim,
                                  graphcl_epochs=cfg.graphcl_epochs, seed=cfg.seed) if cfg.gie else None
        torch.manual_seed(cfg.seed)
        model = build_gtr(data, mfq=cfg.mfq_options if cfg.mfq else None, author_graph=author_graph, **cfg.model)
        model.to(resolve_device(cfg.device, what="live train"))
        groups, names = world.activity_groups()
        report = train_gtr(model, data, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           weight_decay=cfg.weight_decay, seed=cfg.seed, user_groups=groups, group_names=names,
                           out=out, progress=progress)
    return {**report, "data": str(folder), "out": None if out is None else str(out), "job": finite_json(asdict(cfg))}


__all__ = ["GIE_METAPATHS", "LiveTrainConfig", "gie_inputs", "train_live"]
