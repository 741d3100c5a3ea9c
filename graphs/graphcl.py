"""GraphCL node pre-training for MMBee GIE (docs/papers.md, "MMBee"; You et al. 2020, GraphCL).

GraphCL (You et al., NeurIPS 2020) contrasts two augmented views of the same graph with the NT-Xent
loss (their eq. 3): ``l_n = -log( exp(s(z_n1, z_n2)/tau) / sum_{n' != n} exp(s(z_n1, z_n'2)/tau) )``,
``s`` the cosine, ``z = g(f(view))`` with ``f`` the GNN encoder and ``g`` a 2-layer projection head.
MMBee pre-trains its gifting-graph nodes this way. [I] Decided here, where the papers are silent:

- nodes, not whole graphs, are the instances: for a mini-batch of seed nodes (one node type at a time,
  types taken in turn), the sampled neighbourhood (:class:`NeighborSampler`) is augmented twice and the
  seeds' two encodings are the positive pair; the other seeds of the batch are the negatives; the loss
  is averaged over both directions (view 1 -> 2 and 2 -> 1);
- augmentations, drawn independently per view: edge dropping (each sampled edge kept with
  probability ``1 - edge_drop``) and attribute masking (each input dimension of each node zeroed with
  probability ``feature_mask``); GraphCL's node dropping and subgraph views are not used;
- the encoder is :class:`HeteroSAGE`; seeds are nodes with at least one edge; the exported
  embeddings are the encoder's outputs (no head, no augmentation), computed batch by batch with the
  same fanouts;
- optimiser: Adam for dense weights, SparseAdam for the id embeddings, both stepped by the shared loop
  (:func:`mmrec.training.fit`: NaN guard, progress, AMP when ``amp`` asks for it); each epoch's batch
  order is seeded by ``seed`` and the epoch; ``epoch_loss`` is the mean over the epoch's batches;
- ``amp`` is off by default: the encoder is small and bound by sparse gathers and scatters, where
  half precision buys little, and the contrastive logits are computed in float32 either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mmrec.config import build_config
from mmrec.device import resolve_device
from mmrec.errors import InputError, UsageError
from mmrec.graphs.sage import HeteroSAGE
from mmrec.graphs.sampler import NeighborSampler
from mmrec.losses import info_nce
from mmrec.training import LoopConfig, fit

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData


@dataclass
class GraphCLConfig:
    """GraphCL training; ``fanouts`` gives the number of layers (one per hop)."""

    dim: int = field(default=64, metadata={"help": "embedding width"})
    fanouts: tuple[int, ...] = field(default=(10, 5), metadata={"help": "neighbours sampled per hop, comma-separated (one layer per hop)"})
    batch_size: int = field(default=512, metadata={"help": "seed nodes per batch"})
    epochs: int = field(default=5, metadata={"help": "passes over the seed nodes"})
    max_steps: int | None = field(default=None, metadata={"help": "cap on batches per epoch (none: all)"})
    lr: float = field(default=0.01, metadata={"help": "learning rate (Adam for dense weights, SparseAdam for id embeddings)"})
    temperature: float = field(default=0.2, metadata={"help": "NT-Xent temperature"})
    edge_drop: float = field(default=0.2, metadata={"help": "augmentation: probability of dropping a sampled edge"})
    feature_mask: float = field(default=0.2, metadata={"help": "augmentation: probability of zeroing an input dimension"})
    edge_types: tuple[tuple[str, str, str], ...] | None = field(default=None, metadata={"help": "edge types to pass messages over (none: all)"})
    seed_types: tuple[str, ...] | None = field(default=None, metadata={"help": "node types used as seeds, comma-separated (none: all)"})
    seed: int = field(default=0, metadata={"help": "random seed (sampling, augmentation, batch order)"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu, cuda or cuda:N"})
    amp: str = field(default="off", metadata={"help": "mixed precision on CUDA: auto, on or off", "choices": ("auto", "on", "off")})
    progress: bool = field(default=False, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        self.fanouts = tuple(int(f) for f in self.fanouts)
        if self.edge_types is not None:
            self.edge_types = tuple(tuple(e) for e in self.edge_types)
        if self.seed_types is not None:
            self.seed_types = (self.seed_types,) if isinstance(self.seed_types, str) else tuple(self.seed_types)
        for name in ("dim", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if not self.fanouts or min(self.fanouts) < 1:
            raise UsageError(f"fanouts must be ints >= 1, got {self.fanouts}")
        for name in ("edge_drop", "feature_mask"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.amp not in ("auto", "on", "off"):
            raise UsageError(f"amp must be auto, on or off, got {self.amp!r}")
        if self.temperature <= 0 or self.lr <= 0:
            raise UsageError(f"temperature and lr must be > 0, got {self.temperature}, {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fanouts"] = list(self.fanouts)
        out["edge_types"] = [list(e) for e in self.edge_types] if self.edge_types is not None else None
        out["seed_types"] = list(self.seed_types) if self.seed_types is not None else None
        return out


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """GraphCL's NT-Xent (eq. 3) over a batch of positive pairs ``(B, d)``, both directions averaged:
    :func:`mmrec.losses.info_nce` with the positive left out of the denominator, as the paper has it."""
    return info_nce(z1, z2, temperature, exclude_positive=True)


class GraphCL(nn.Module):
    """Encoder ``f`` (:class:`HeteroSAGE`) and projection head ``g`` (Linear-ReLU-Linear)."""

    def __init__(self, encoder: HeteroSAGE, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def encode(self, batch: HeteroData, features: dict[str, torch.Tensor], *, edge_drop: float = 0.0,
               feature_mask: float = 0.0) -> dict[str, torch.Tensor]:
        """Encoder outputs of a sampled ``batch`` (seeds first per type, ``(n_t, dim)``), one augmented
        view when ``edge_drop`` / ``feature_mask`` > 0."""
        device = next(self.parameters()).device
        node_ids = {t: batch[t].node_id.to(device) for t in batch.node_types}
        x = self.encoder.embed_inputs(node_ids, features)
        edges = {e: batch[e].edge_index.to(device) for e in batch.edge_types}
        per_hop = {e: list(batch[e].num_sampled_edges) for e in batch.edge_types}
        if feature_mask > 0:
            x = {t: v * (torch.rand_like(v) >= feature_mask) for t, v in x.items()}
        if edge_drop > 0:
            for e, v in edges.items():
                kept = torch.rand(v.shape[1], device=device) >= edge_drop
                hop = torch.repeat_interleave(torch.arange(len(per_hop[e]), device=device),
                                              torch.tensor(per_hop[e], device=device), output_size=v.shape[1])
                per_hop[e] = torch.bincount(hop[kept], minlength=len(per_hop[e])).tolist()  # edges stay in hop order
                edges[e] = v[:, kept]
        return self.encoder(x, edges, {t: list(batch[t].num_sampled_nodes) for t in batch.node_types}, per_hop)

    def forward(self, batch: HeteroData, node_type: str, size: int, features: dict[str, torch.Tensor], *,
                edge_drop: float, feature_mask: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections ``z = g(f(view))`` of the ``size`` seeds of ``node_type`` under two independently
        augmented views of ``batch``: ``(size, dim)`` each."""
        views = [self.encode(batch, features, edge_drop=edge_drop, feature_mask=feature_mask)[node_type][:size]
                 for _ in range(2)]
        return self.head(views[0]), self.head(views[1])


def _check_features(graph: HeteroData, features: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    features = dict(features or {})
    for node_type, value in features.items():
        if node_type not in graph.node_types:
            raise UsageError(f"features for unknown node type {node_type!r}; the graph has {graph.node_types}")
        if value.dim() != 2 or len(value) != graph[node_type].num_nodes:
            raise InputError(f"features[{node_type!r}] must be ({graph[node_type].num_nodes}, d), got {tuple(value.shape)}",
                             field=node_type)
        if not torch.isfinite(value).all():
            raise InputError(f"features[{node_type!r}] has non-finite values", field=node_type)
        features[node_type] = value.float()
    return features


def _seed_nodes(sampler: NeighborSampler, seed_types) -> dict[str, torch.Tensor]:
    """The nodes with at least one edge, per seed type."""
    return {t: torch.nonzero(sampler.degree(t) > 0).flatten() for t in seed_types}


def _batches(seeds: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator):
    """One epoch of ``(node_type, seeds)``: each type's connected nodes shuffled, types in turn."""
    queues = []
    for node_type, nodes in seeds.items():
        nodes = nodes[torch.randperm(len(nodes), generator=generator)]
        queues.append([(node_type, nodes[i : i + batch_size]) for i in range(0, len(nodes), batch_size)])
    longest = max((len(q) for q in queues), default=0)
    for i in range(longest):
        for queue in queues:
            if i < len(queue) and len(queue[i][1]) >= 2:  # one seed has no negatives
                yield queue[i]


def model_sizes(graph: HeteroData, *, features: dict[str, torch.Tensor] | None = None,
                config: GraphCLConfig | dict | None = None) -> dict[str, Any]:
    """What shapes a :class:`GraphCL` model for ``graph`` (JSON: what a run's ``config.json`` keeps)."""
    config = build_config(GraphCLConfig, config, "GraphCL config")
    features = _check_features(graph, features)
    return {"num_nodes": {t: int(graph[t].num_nodes) for t in graph.node_types},
            "edge_types": [list(e) for e in (config.edge_types or graph.edge_types)], "dim": config.dim,
            "layers": len(config.fanouts), "feature_dims": {t: int(v.shape[1]) for t, v in features.items()}}


def model_from_sizes(sizes: dict[str, Any]) -> GraphCL:
    """An untrained :class:`GraphCL` model of :func:`model_sizes`."""
    encoder = HeteroSAGE(sizes["num_nodes"], sizes["edge_types"], dim=sizes["dim"], layers=sizes["layers"],
                         feature_dims=sizes["feature_dims"])
    return GraphCL(encoder, sizes["dim"])


def build_model(graph: HeteroData, *, features: dict[str, torch.Tensor] | None = None,
                config: GraphCLConfig | dict | None = None) -> GraphCL:
    """An untrained :class:`GraphCL` model shaped for ``graph`` (and its node ``features``)."""
    return model_from_sizes(model_sizes(graph, features=features, config=config))


def fit_graphcl(graph: HeteroData, *, features: dict[str, torch.Tensor] | None = None,
                config: GraphCLConfig | dict | None = None) -> tuple[GraphCL, dict[str, Any]]:
    """Pre-train a :class:`GraphCL` model on ``graph`` through :func:`mmrec.training.fit`; returns it and
    a report: ``epoch_loss`` (mean NT-Xent of the epoch's batches), ``steps``, ``seconds``,
    ``seed_nodes`` (seeds of the last epoch), ``samples_per_s``, ``device``, ``amp``, ``stopped``."""
    config = build_config(GraphCLConfig, config, "GraphCL config")
    features = _check_features(graph, features)
    device = resolve_device(config.device, what="GraphCL device")
    torch.manual_seed(config.seed)
    sampler = NeighborSampler(graph, config.fanouts, edge_types=list(config.edge_types or graph.edge_types), seed=config.seed)
    seeds = _seed_nodes(sampler, config.seed_types or tuple(graph.node_types))
    if config.batch_size < 2 or all(len(nodes) < 2 for nodes in seeds.values()):
        raise InputError("no two nodes with an edge to contrast (is the graph empty, or batch_size 1?)")
    model = build_model(graph, features=features, config=config).to(device)
    features = {t: v.to(device) for t, v in features.items()}
    sparse = [p for m in model.encoder.inputs.values() if isinstance(m, nn.Embedding) for p in m.parameters()]
    dense = [p for p in model.parameters() if all(p is not s for s in sparse)]
    optimizers = [torch.optim.Adam(dense, lr=config.lr)] + ([torch.optim.SparseAdam(sparse, lr=config.lr)] if sparse else [])

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        for node_type, nodes in _batches(seeds, config.batch_size, generator):
            yield node_type, nodes, sampler.sample(node_type, nodes)

    def step(net: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        node_type, nodes, sub = batch
        z1, z2 = net(sub, node_type, len(nodes), features, edge_drop=config.edge_drop, feature_mask=config.feature_mask)
        return nt_xent(z1.float(), z2.float(), config.temperature), {"seeds": len(nodes)}

    loop = LoopConfig(epochs=config.epochs, max_steps=config.max_steps, device=str(device), amp=config.amp,
                      progress=config.progress, desc="graphcl")
    result = fit(model, optimizers, batches, step, config=loop, size=lambda batch: len(batch[1]))
    model.train()
    last = result.history[-1]
    report = {"epoch_loss": [h["loss"] for h in result.history], "steps": result.steps, "seconds": result.seconds,
              "seed_nodes": round(last["seeds"] * last["steps"]), "samples_per_s": result.samples_per_s,
              "device": result.device, "amp": result.amp, "stopped": result.stopped}
    return model, report


@torch.no_grad()
def embed_nodes(model: GraphCL, graph: HeteroData, *, features: dict[str, torch.Tensor] | None = None,
                config: GraphCLConfig | dict | None = None) -> dict[str, torch.Tensor]:
    """Encoder outputs for every node, ``{node_type: (num_nodes, dim)}`` float32 on CPU, row ``i`` = node ``i``."""
    config = build_config(GraphCLConfig, config, "GraphCL config")
    features = _check_features(graph, features)
    device = next(model.parameters()).device
    features = {t: v.to(device) for t, v in features.items()}
    sampler = NeighborSampler(graph, config.fanouts, edge_types=list(config.edge_types or graph.edge_types), seed=config.seed)
    model.eval()
    out = {}
    for node_type in graph.node_types:
        n = graph[node_type].num_nodes
        out[node_type] = torch.zeros(n, config.dim)
        for start in tqdm(range(0, n, config.batch_size), desc=f"embed {node_type}", unit="batch", disable=not config.progress):
            seeds = torch.arange(start, min(start + config.batch_size, n))
            batch = sampler.sample(node_type, seeds)
            out[node_type][seeds] = model.encode(batch, features)[node_type][: len(seeds)].float().cpu()
    model.train()
    return out


def train_graphcl(graph: HeteroData, *, features: dict[str, torch.Tensor] | None = None,
                  config: GraphCLConfig | dict | None = None) -> dict[str, torch.Tensor]:
    """Pre-train with GraphCL and return node embeddings ``{node_type: (num_nodes, dim)}``, row ``i`` = node_id ``i``."""
    config = build_config(GraphCLConfig, config, "GraphCL config")
    model, _ = fit_graphcl(graph, features=features, config=config)
    return embed_nodes(model, graph, features=features, config=config)
