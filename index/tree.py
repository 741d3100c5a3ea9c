"""MISS index tree: recursive balanced k-means over item embeddings, TDM-style node scorers, beam search.

MISS (arXiv 2508.14515) retrieves with an index tree built over multimodal item embeddings, in the
manner of TDM/JTM (Zhu et al., KDD'18 / NeurIPS'19):

- **Tree.** The items are split into ``branching`` equal-size clusters by balanced k-means
  (:func:`mmrec.quantization.kmeans.balanced_kmeans`), each cluster again, down to single items. With
  ``L = ⌈log_b n⌉`` levels, every node above level ``L-1`` holds more than ``b`` items and every node at
  level ``L-1`` at most ``b``, so all leaves (items) sit at level ``L``. ``balanced=False`` splits by
  plain k-means instead ([I]: clusters of unequal size, still ``L`` levels, a node at level ``L-1`` may
  hold more than ``b`` items); for search by vector it finds more of the exact neighbours per item
  scored (recall@100 0.547 -> 0.710 at ~9 % of 12k learned item vectors, branching 110, beam 8:
  docs/benchmarks.md), as an IVF index's unequal lists do. An inner node's embedding is the
  mean of the embeddings of the items below it. Children of a node are contiguous, so a level is an
  embedding matrix plus an ``offsets`` array into the next level.
- **Node scorer.** :class:`NodeScorer` scores (user, node) pairs: projections of the user vector and the
  node embedding, a level embedding, their product, and optionally the user's interest in the node
  from Co-GSU and MM-GSU, each followed by target attention, over the lifelong history
  (:class:`mmrec.index.gsu.LifelongInterest`). Trained with binary cross-entropy through
  :func:`mmrec.training.fit`, TDM-style: for a (user, positive item) pair, the item's ancestor at
  every level is a positive and ``negatives`` nodes drawn uniformly from the rest of that level are
  negatives. ``mmrec.pipelines.index.train_tree`` trains it from a behaviour log.
- **Beam search.** Level by level, the children of the ``beam`` best nodes are scored and the ``beam``
  best kept; at the leaf level the best ``k`` items are returned. :meth:`IndexTree.search` scores nodes
  by similarity to a query vector (retrieval by embedding, tuned to a recall target like the FAISS
  indexes); :meth:`IndexTree.recommend` scores them with the trained scorer. [I] On CPU, search by
  vector runs through FAISS's inverted-list scanner (:meth:`IndexTree.lists`: each level an
  ``IndexIVFFlat`` whose list j is the children of node j above, probed with ``search_preassigned``):
  the batched torch beam paid a gather copy, a batched matmul and a top-k per level, several times
  FAISS's cost per item scored, and lost to IVF at 1M items (0.53×); the list scan returns the same
  items at 2.6–5.5× the torch path's queries/s, and 1.77× IVF's at 1M (docs/scaling.md). The torch
  path stays for GPUs and the trained scorer.

[I] Decided here: for ``search`` with the inner-product metric an inner node is scored by the cosine
to its mean (the mean of a wide subtree is short, and raw inner products under-rank it: recall@10
0.958 → 0.987 at beam 128 on 100k clustered vectors), items by their inner product; with L2, by
−‖q − mean‖². Co-GSU needs ID embeddings, which tree nodes do not have: the node scorer learns an ID
table with one row per tree node (the leaf rows are the items, which histories look up); the tree is built
once from all vectors (it needs them in memory) and does not support ``add`` — rebuild it instead.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

import mmrec
from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex, check_unique, read_info
from mmrec.index.exact import METRICS, exact_knn, faiss_metric, faiss_module
from mmrec.index.gsu import LifelongInterest
from mmrec.io import atomic_path
from mmrec.quantization.kmeans import assign, balanced_kmeans, check_vectors, kmeans
from mmrec.training import FitResult, LoopConfig, fit, shuffled_batches

TREE_FILE = "tree.safetensors"
SCORER_FILE = "scorer.safetensors"
CHUNK_FLOATS = 1 << 21  # gathered candidate embeddings per beam-search chunk (8 MB of float32: stays in cache)


@dataclass
class TreeConfig:
    """How to build the tree and tune its beam for ``search`` by vector."""

    branching: int = field(default=16, metadata={"help": "children per tree node"})
    niter: int = field(default=10, metadata={"help": "k-means iterations per split"})
    balanced: bool = field(default=True, metadata={
        "help": "equal-size splits (balanced k-means, MISS / TDM); off: plain k-means, better recall per item scored"})
    metric: str = field(default="ip", metadata={"help": "inner product or L2", "choices": METRICS})
    target_recall: float = field(default=0.95, metadata={"help": "recall@k vs exact search to tune the beam for"})
    k: int = field(default=10, metadata={"help": "k of the recall target"})
    n_queries: int = field(default=1000, metadata={"help": "held-out index rows the beam is tuned on"})
    seed: int = field(default=0, metadata={"help": "seed of the k-means splits and the tuning queries"})

    def __post_init__(self) -> None:
        if self.branching < 2:
            raise UsageError(f"branching must be >= 2, got {self.branching}")
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if not 0 < self.target_recall <= 1:
            raise UsageError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.k < 1 or self.n_queries < 1 or self.niter < 0:
            raise UsageError(f"k and n_queries must be >= 1 and niter >= 0, got {self.k}, {self.n_queries}, {self.niter}")


SMALL_SPLIT = 50_000  # points below which a split runs on one FAISS thread


@contextlib.contextmanager
def _one_faiss_thread(small: bool) -> Iterator[None]:
    """Run FAISS on one OpenMP thread: for a small k-means, thread start-up and barriers cost more
    than the work (100x slower measured on a loaded 2-core box)."""
    if not small:
        yield
        return
    faiss = faiss_module()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def build_levels(x: np.ndarray, branching: int, *, niter: int = 10, seed: int = 0, balanced: bool = True,
                 progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Tree over ``x`` (n, d): ``(embeddings per level 1..L, offsets per level 0..L-1, items (n,))``.

    ``offsets[l][j]:offsets[l][j+1]`` are the children (at level l+1) of node j of level l (level 0 is
    the root); leaf j of level L is item row ``items[j]``.
    """
    from tqdm.auto import tqdm

    n = len(x)
    depth = max(1, math.ceil(math.log(n, branching) - 1e-9)) if n > 1 else 1
    groups = [np.arange(n)]
    embeddings, offsets = [], []
    bar = tqdm(total=depth, desc="tree levels", disable=not progress)
    for _ in range(depth - 1):
        children, starts = [], [0]
        for group in groups:
            k = min(branching, len(group))
            part = x if len(group) == n else x[group]  # the root's split reads x itself: no copy of all vectors
            with _one_faiss_thread(len(group) < SMALL_SPLIT):
                if balanced:
                    _, labels = balanced_kmeans(part, k, niter=niter, seed=seed)
                else:  # plain k-means; clusters left empty are dropped
                    labels = np.unique(assign(part, kmeans(part, k, niter=max(niter, 1), seed=seed))[0],
                                       return_inverse=True)[1].reshape(-1)
            children += [group[labels == c] for c in range(labels.max() + 1)]
            starts.append(len(children))
        embeddings.append(np.stack([x[g].mean(0) for g in children]).astype(np.float32))
        offsets.append(np.asarray(starts, dtype=np.int64))
        groups = children
        bar.update()
    items = np.concatenate(groups)
    offsets.append(np.cumsum([0] + [len(g) for g in groups]).astype(np.int64))
    embeddings.append(np.ascontiguousarray(x[items]))
    bar.update()
    bar.close()
    return embeddings, offsets, items


@dataclass
class ScorerConfig:
    """The node scorer and its TDM-style training; epochs, early stopping and device are the loop's
    (:class:`mmrec.training.LoopConfig`)."""

    hidden: int = field(default=64, metadata={"help": "width of the node scorer's projections and MLP"})
    id_dim: int = field(default=16, metadata={"help": "dim of the scorer's learnable node-ID table that Co-GSU searches"})
    history_k: int = field(default=20, metadata={"help": "behaviours Co-GSU and MM-GSU each keep per scored node"})
    negatives: int = field(default=8, metadata={"help": "negative nodes drawn per level for every positive"})
    batch_size: int = field(default=256, metadata={"help": "(user, positive item) pairs per training step"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the node scorer"})
    seed: int = field(default=0, metadata={"help": "seed of the scorer's initial weights, batches and negatives"})

    def __post_init__(self) -> None:
        for name in ("hidden", "id_dim", "history_k", "negatives", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")


class NodeScorer(nn.Module):
    """Logit of "the user wants something under this node": (user (B, du), nodes (B, C, d)) -> (B, C).

    With ``history_k`` > 0 the scorer also reads the user's lifelong history through
    :class:`~mmrec.index.gsu.LifelongInterest`: MM-GSU over the multimodal embeddings of the
    behaviours (the tree's item vectors) against the node's embedding, and Co-GSU over ID embeddings
    against the node's ID embedding. [I] Tree nodes have no collaborative IDs of their own, so the ID
    embeddings are a learnable table of the scorer with one row per tree node, level by level
    (``nodes_per_level``); the leaf rows are the items' IDs, which a history looks up.
    """

    def __init__(self, user_dim: int, node_dim: int, nodes_per_level: Sequence[int], *, hidden: int = 64,
                 id_dim: int = 16, history_k: int = 0) -> None:
        super().__init__()
        self.history_k = history_k
        self.user = nn.Linear(user_dim, hidden)
        self.node = nn.Linear(node_dim, hidden)
        self.level = nn.Embedding(len(nodes_per_level), hidden)
        self.ids = nn.Embedding(int(sum(nodes_per_level)), id_dim) if history_k else None
        self.lifelong = LifelongInterest(id_dim, node_dim, k=history_k, hidden=hidden) if history_k else None
        self.interest = nn.Linear(id_dim + node_dim, hidden) if history_k else None
        self.mlp = nn.Sequential(nn.Linear((5 if history_k else 3) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.1)

    def forward(
        self,
        user: torch.Tensor,  # (B, du)
        nodes: torch.Tensor,  # (B, C, d) multimodal embeddings of the candidate nodes
        node_ids: torch.Tensor,  # (B, C) rows of the ID table (global node numbers)
        level: torch.Tensor,  # (C,) level index (0 = level 1) of each candidate
        history: torch.Tensor | None = None,  # (B, T, d) multimodal embeddings of the user's behaviours
        history_ids: torch.Tensor | None = None,  # (B, T) ID-table rows of the behaviours (leaf nodes)
        mask: torch.Tensor | None = None,  # (B, T) true for real behaviours
    ) -> torch.Tensor:
        u = self.user(user)[:, None, :].expand(-1, nodes.shape[1], -1)  # (B, C, H)
        e = self.node(nodes) + self.level(level)[None]  # (B, C, H)
        feats = [u, e, u * e]
        if self.lifelong is not None:
            if history is None or history_ids is None:
                raise UsageError("this scorer was trained with histories (Co-GSU + MM-GSU); pass history_rows=")
            interest = self.lifelong(self.ids(node_ids), nodes, self.ids(history_ids), history, mask)  # (B, C, id + d)
            interest = self.interest(interest)  # (B, C, H)
            feats += [interest, interest * e]
        return self.mlp(torch.cat(feats, dim=-1)).squeeze(-1)  # (B, C)

@dataclass
class _Tables:
    """An :class:`IndexTree` as torch tensors on one device, for the batched beam search.

    ``raw`` and ``scored`` hold each level's node embeddings (N_l, d), contiguous; ``scored`` is what a
    query vector is compared with (inner nodes unit-normed for ``ip``, see the module docstring), ``raw``
    what the trained scorer reads. The children of node j of level l are the nodes ``lo[l][j]`` to
    ``lo[l][j] + count[l][j] - 1`` of level l+1; ``first`` are the root's children, ``items`` the
    index row of each leaf, ``norms`` ‖e‖² per level for ``l2``.
    """

    device: torch.device
    raw: list[torch.Tensor]
    scored: list[torch.Tensor]
    norms: list[torch.Tensor] | None
    lo: list[torch.Tensor]
    count: list[torch.Tensor]
    first: torch.Tensor
    items: torch.Tensor

    @classmethod
    def of(cls, tree: IndexTree, device: torch.device) -> _Tables:
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        raw = [put(e) for e in tree.embeddings]
        if tree.metric == "ip":  # inner nodes by direction: a wide subtree's mean is short
            scored, norms = [F.normalize(e, dim=1, eps=1e-12) for e in raw[:-1]] + [raw[-1]], None
        else:
            scored, norms = raw, [(e * e).sum(1) for e in raw]
        lo = [put(off[:-1]) for off in tree.offsets[1:]]
        count = [put(np.diff(off)) for off in tree.offsets[1:]]
        return cls(device, raw, scored, norms, lo, count, torch.arange(len(raw[0]), device=device), put(tree.items.astype(np.int64)))

    def children(self, level: int, sel: torch.Tensor) -> torch.Tensor:
        """The children (level+1 nodes) of the nodes ``sel`` (q, keep) of ``level``, packed left: (q, M), -1 past
        a row's last child, M the most children any row has. Children of a node are contiguous rows, so
        candidate j of a row is child ``j - end[owner-1]`` of the selected node ``owner`` whose range holds j."""
        node = sel.clamp(min=0)
        count = self.count[level].take(node).masked_fill(sel < 0, 0)  # (q, keep)
        end = count.cumsum(1)  # (q, keep)
        total = end[:, -1:]  # (q, 1)
        pos = torch.arange(int(total.max()), device=sel.device).expand(len(sel), -1).contiguous()  # (q, M)
        owner = torch.searchsorted(end, pos, right=True).clamp(max=sel.shape[1] - 1)  # (q, M)
        cand = self.lo[level].take(node).gather(1, owner) + pos - (end - count).gather(1, owner)
        return cand.masked_fill(pos >= total, -1)


class IndexTree(BaseIndex):
    """The MISS index tree over keyed item vectors; ``search`` by vector, ``recommend`` by user."""

    kind = "tree"
    config_class = TreeConfig
    param_name = "beam"

    def __init__(self, embeddings: list[np.ndarray], offsets: list[np.ndarray], items: np.ndarray, keys: pa.Array, info: dict[str, Any]) -> None:
        super().__init__(keys, info)
        self.embeddings = embeddings
        self.offsets = offsets
        self.items = items
        self.leaf_of = np.empty(len(items), dtype=np.int64)
        self.leaf_of[items] = np.arange(len(items))
        self.width = max(int(np.diff(o).max()) for o in offsets)
        self.scorer: NodeScorer | None = None
        self.device = torch.device("cpu")
        self._on: dict[str, _Tables] = {}
        self._lists: list[tuple[Any, Any]] | None = None

    @property
    def depth(self) -> int:
        return len(self.embeddings)

    def node_counts(self) -> list[int]:
        """Nodes per level, level 1 (the root's children) to level L (the items)."""
        return [len(e) for e in self.embeddings]

    # -- beam search ------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> IndexTree:
        """Run beam search on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``); returns the tree."""
        self.device = resolve_device(device, what="tree device")
        return self

    def _tables(self, device: torch.device) -> _Tables:
        """The tree as torch tensors on ``device``, built once per device (see :class:`_Tables`)."""
        key = str(device)
        if key not in self._on:
            self._on[key] = _Tables.of(self, device)
        return self._on[key]

    def _beam(self, n: int, k: int, beam: int, score: Callable[[int, torch.Tensor, slice], torch.Tensor],
              upper_beam: int | None = None, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Layer-wise beam search for ``n`` queries at once on ``device`` (None: the tree's):
        ``score(level, nodes (q, C) long, query slice) -> (q, C)``; returns ``(scores (n, k), rows (n, k), nodes scored per query)``.

        ``beam`` nodes are kept at the last inner level (whose children are the items) and
        ``upper_beam`` (None: ``beam``) at the levels above it. [I] A smaller upper beam stops a wide
        beam from scoring every node of the level above the items: with branching 32 over 12k items that
        level holds 1,024 nodes of ~12 items, and beam 64 scores all of them to keep 768 items.
        Each level is one gather of the kept nodes' children (packed, no padding: :meth:`_Tables.children`)
        and one top-k over them, for every query of a chunk together.
        """
        device = self.device if device is None else device
        t = self._tables(device)
        out_s = torch.full((n, k), float("-inf"), dtype=torch.float32, device=device)
        out_r = torch.full((n, k), -1, dtype=torch.long, device=device)
        scored = torch.zeros((), dtype=torch.long, device=device)
        fan = max(b / a for a, b in zip(self.node_counts(), self.node_counts()[1:])) if self.depth > 1 else 1  # mean children per node
        chunk = max(1, int(CHUNK_FLOATS // (max(len(t.first), max(beam, upper_beam or 0) * fan) * self.dim)))
        for start in range(0, n, chunk):
            part = slice(start, min(n, start + chunk))
            q = part.stop - part.start
            cand = t.first.expand(q, -1)  # (q, C) candidate nodes of the level, -1 = none
            for level in range(self.depth):
                valid = cand >= 0
                scored += valid.sum()
                s = score(level, cand.clamp(min=0), part).float().masked_fill(~valid, float("-inf"))  # (q, C)
                width = k if level == self.depth - 1 else beam if level == self.depth - 2 or upper_beam is None else upper_beam
                keep = min(width, s.shape[1])
                top_s, top = s.topk(keep, dim=1)  # (q, keep) best first
                sel = cand.gather(1, top).masked_fill(~torch.isfinite(top_s), -1)
                if level == self.depth - 1:
                    out_s[part, :keep] = top_s
                    out_r[part, :keep] = torch.where(sel >= 0, t.items.take(sel.clamp(min=0)), -1)
                    break
                cand = t.children(level, sel)
        return out_s.cpu().numpy(), out_r.cpu().numpy(), int(scored) / max(n, 1)

    def lists(self) -> list[tuple[Any, Any]]:
        """The tree as FAISS inverted lists, built once: per level (1..L) an ``IndexIVFFlat`` whose list j holds
        the children of node j of the level above (level 1: one list, the root's children), with their node
        numbers as ids (the items' index rows at level L) and the vectors :meth:`_beam` scores by vector (inner
        nodes unit-normed for ``ip``); each comes with its coarse quantizer, which is never searched (the beam
        picks the lists) but must outlive the index. A copy of every level: as much memory again as the tree.
        """
        if self._lists is None:
            faiss = faiss_module()
            metric = faiss_metric(self.metric)
            t = self._tables(torch.device("cpu"))
            lists = []
            for level, off in enumerate(self.offsets):
                vectors = np.ascontiguousarray(t.scored[level].numpy(), dtype=np.float32)
                ids = self.items.astype(np.int64) if level == self.depth - 1 else np.arange(len(vectors), dtype=np.int64)
                quantizer = faiss.IndexFlat(self.dim, metric)
                ivf = faiss.IndexIVFFlat(quantizer, self.dim, len(off) - 1, metric)
                ivf.is_trained = True
                ivf.parallel_mode = 3  # search_preassigned splits queries over threads (mode 0 leaves that to search())
                codes = vectors.view(np.uint8)  # IVFFlat's codes are the float32 bytes
                for j in np.flatnonzero(np.diff(off)):  # a list's nodes are contiguous: one exact-size add per list
                    a, b = int(off[j]), int(off[j + 1])  # (add_core grows each list entry by entry, to up to 2x)
                    ivf.invlists.add_entries(int(j), b - a, faiss.swig_ptr(ids[a:b]), faiss.swig_ptr(codes[a:b]))
                ivf.ntotal = len(vectors)
                lists.append((ivf, quantizer))
            self._lists = lists
        return self._lists

    def _scan(self, queries: np.ndarray, k: int, beam: int, upper_beam: int | None) -> tuple[np.ndarray, np.ndarray, float]:
        """The beam search of :meth:`_beam` by vector similarity on CPU through FAISS's inverted-list scanner
        (``search_preassigned``): level by level, the kept nodes are the lists to probe and FAISS scans their
        children's contiguous vectors with a top-``width`` heap per query, as an IVF index scans its lists
        (the same items as the torch path at 2.6–5.5× its queries/s, 100k and 1M items: docs/scaling.md)."""
        faiss = faiss_module()
        lists = self.lists()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(queries)
        sel = np.zeros((n, 1), dtype=np.int64)  # level 0: the root, the one list of level 1
        dist = np.zeros((n, 1), dtype=np.float32)
        scored = 0
        for level, (ivf, _) in enumerate(lists):
            counts = np.diff(self.offsets[level])
            scored += int(counts[sel[sel >= 0]].sum())
            last = level == self.depth - 1
            width = k if last else beam if level == self.depth - 2 or upper_beam is None else upper_beam
            width = width if last else min(width, len(self.embeddings[level]))  # never more lists than the next level has
            params = faiss.SearchParametersIVF(nprobe=sel.shape[1])  # per call, not set on the shared index (threads)
            out_d, out_i = np.empty((n, width), dtype=np.float32), np.empty((n, width), dtype=np.int64)
            ivf.search_preassigned_c(n, faiss.swig_ptr(queries), width, faiss.swig_ptr(sel), faiss.swig_ptr(dist), faiss.swig_ptr(out_d),
                                     faiss.swig_ptr(out_i), False, params)
            dist, sel = out_d, out_i
        scores = dist if self.metric == "ip" else -dist
        scores[sel < 0] = -np.inf
        return scores, sel, scored / max(n, 1)

    def _ip_score(self, queries: np.ndarray, device: torch.device | None = None) -> Callable[[int, torch.Tensor, slice], torch.Tensor]:
        """The similarity ``score`` of :meth:`_beam` for query vectors (q, d): cosine to inner nodes and inner
        product to items (``ip``), or −‖q − e‖² (``l2``)."""
        t = self._tables(self.device if device is None else device)
        qt = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(t.device)

        def score(level: int, nodes: torch.Tensor, part: slice) -> torch.Tensor:
            emb, qp = t.scored[level], qt[part]  # (N_l, d), (q, d)
            if nodes.shape[1] >= len(emb):  # the candidates cover the level: one matmul, then pick
                dots = (qp @ emb.T).gather(1, nodes)  # (q, C)
            else:
                rows = emb.index_select(0, nodes.reshape(-1)).view(*nodes.shape, -1)  # (q, C, d)
                dots = torch.bmm(qp[:, None, :], rows.transpose(1, 2))[:, 0]  # (q, C)
            return dots if t.norms is None else 2 * dots - t.norms[level].take(nodes) - (qp * qp).sum(1, keepdim=True)

        return score

    def search_with_count(self, queries: np.ndarray, k: int, beam: int | None = None, upper_beam: int | None = None,
                          device: str | torch.device | None = None, engine: str | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(scores, rows, nodes scored per query)`` of a beam search by vector similarity; ``upper_beam``
        is the beam above the last inner level (None: ``beam``, see :meth:`_beam`); ``device`` None is the
        tree's (:meth:`to`). ``engine``: ``faiss`` (:meth:`_scan`, CPU only), ``torch`` (:meth:`_beam`), or
        None: FAISS on CPU, torch elsewhere. Both return the same items."""
        queries = check_vectors(queries, name="queries", dim=self.dim)
        if k < 1 or (upper_beam is not None and upper_beam < 1):
            raise UsageError(f"k and upper_beam must be >= 1, got {k} and {upper_beam}")
        beam = beam or int(self.info["search_params"]["beam"])
        device = self.device if device is None else resolve_device(device, what="device")
        if engine not in (None, "faiss", "torch"):
            raise UsageError(f"unknown engine {engine!r}; use faiss or torch")
        if engine == "faiss" and device.type != "cpu":
            raise UsageError(f"the faiss engine runs on CPU, not {device}")
        if engine == "faiss" or (engine is None and device.type == "cpu"):
            return self._scan(queries, k, beam, upper_beam)
        return self._beam(len(queries), k, beam, self._ip_score(queries, device), upper_beam, device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows, _ = self.search_with_count(queries, k)
        return scores, rows

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.embeddings[-1][self.leaf_of[np.asarray(rows, dtype=np.int64)]]

    def param_grid(self) -> list[int]:
        widest = max(len(e) for e in self.embeddings[:-1]) if self.depth > 1 else 1
        return [2**i for i in range(max(widest, 1).bit_length()) if 2**i < widest] + [widest]

    def set_param(self, value: int) -> None:
        self.info.setdefault("search_params", {})["beam"] = int(value)

    # -- node scorer (TDM-style) ------------------------------------------------------------
    def ancestors(self, rows: np.ndarray) -> np.ndarray:
        """Node index at every level (columns 0..L-1 = levels 1..L) of the items at ``rows``: (r, L)."""
        nodes = np.empty((len(rows), self.depth), dtype=np.int64)
        nodes[:, -1] = self.leaf_of[np.asarray(rows, dtype=np.int64)]
        for level in range(self.depth - 1, 0, -1):
            nodes[:, level - 1] = np.searchsorted(self.offsets[level], nodes[:, level], side="right") - 1
        return nodes

    @property
    def level_starts(self) -> np.ndarray:
        """Global number of the first node of each level (the scorer's ID-table rows): (L,)."""
        return np.cumsum([0] + self.node_counts()[:-1]).astype(np.int64)

    def _gather(self, nodes: np.ndarray, levels: np.ndarray) -> torch.Tensor:
        """Embeddings (B, C, d) of nodes (B, C) whose column c lives at level ``levels[c]``."""
        out = np.empty((*nodes.shape, self.dim), dtype=np.float32)
        for level in np.unique(levels):
            cols = levels == level
            out[:, cols] = self.embeddings[level][nodes[:, cols]]
        return torch.from_numpy(out)

    def history_tensors(self, rows: np.ndarray, visible: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(vectors (B, T, d), ID-table rows (B, T), mask (B, T))`` of histories given as index rows
        ``rows`` (B, T) (-1 = padding); ``visible`` (B,) keeps only the first ``visible[b]`` positions."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = rows >= 0
        if visible is not None:
            valid &= np.arange(rows.shape[1]) < np.asarray(visible)[:, None]
        leaf = self.leaf_of[np.where(valid, rows, 0)]  # (B, T)
        return (torch.from_numpy(self.embeddings[-1][leaf]), torch.from_numpy(self.level_starts[-1] + leaf),
                torch.from_numpy(valid))

    @staticmethod
    def mean_user(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the real behaviours' vectors (B, d); zero for an empty history."""
        m = mask.unsqueeze(-1).to(history.dtype)
        return (history * m).sum(1) / m.sum(1).clamp(min=1)

    def init_scorer(self, user_dim: int, config: ScorerConfig | dict | None = None, *, history: bool = False) -> NodeScorer:
        """A fresh (untrained, seeded) node scorer, set on the tree; ``history`` turns on Co-GSU + MM-GSU."""
        config = build_config(ScorerConfig, config, "scorer")
        torch.manual_seed(config.seed)
        self.scorer = NodeScorer(user_dim, self.dim, self.node_counts(), hidden=config.hidden, id_dim=config.id_dim,
                                 history_k=config.history_k if history else 0)
        self.scorer.eval()
        return self.scorer

    def fit_scorer(
        self,
        users: np.ndarray | None,
        user_index: np.ndarray,
        item_rows: np.ndarray,
        *,
        history_rows: np.ndarray | None = None,
        history_len: np.ndarray | None = None,
        config: ScorerConfig | dict | None = None,
        loop: LoopConfig | dict | None = None,
        evaluate: Callable[[NodeScorer], Any] | None = None,
        monitor: str | None = None,
        **overrides: Any,
    ) -> FitResult:
        """Train the node scorer on (user, positive item) pairs through :func:`mmrec.training.fit`.

        Pair p is user ``user_index[p]`` and item row ``item_rows[p]``. ``users`` (U, du) are user
        vectors, or None for the mean of each pair's visible history vectors. ``history_rows`` (U, T)
        are each user's behaviours as index rows (-1 = padding) and turn on Co-GSU + MM-GSU;
        ``history_len`` (P,) lets pair p see only the first ``history_len[p]`` of them (the behaviours
        before its target, for a time-ordered history). ``overrides`` are fields of ``config``
        (:class:`ScorerConfig`) or of ``loop`` (``epochs=10, progress=False``); ``evaluate(scorer)``
        drives early stopping (``loop.patience``) as in :func:`~mmrec.training.fit`.
        """
        scorer_fields = {f.name for f in fields(ScorerConfig)}
        config = replace_config(build_config(ScorerConfig, config, "scorer"), "scorer", **{k: v for k, v in overrides.items() if k in scorer_fields})
        loop_overrides = {k: v for k, v in overrides.items() if k not in scorer_fields}
        if loop is None:
            loop_overrides.setdefault("desc", "tree scorer")
        loop = replace_config(build_config(LoopConfig, loop, "loop"), "loop", **loop_overrides)
        user_index, item_rows = np.asarray(user_index, dtype=np.int64), np.asarray(item_rows, dtype=np.int64)
        if len(user_index) != len(item_rows) or len(user_index) == 0:
            raise UsageError(f"need as many user_index as item_rows (and at least one), got {len(user_index)} and {len(item_rows)}")
        if users is None and history_rows is None:
            raise UsageError("users=None means the mean of each user's history: pass history_rows=")
        n_users = len(users) if users is not None else len(history_rows)
        if user_index.min() < 0 or user_index.max() >= n_users or item_rows.min() < 0 or item_rows.max() >= self.n:
            raise UsageError("user_index or item_rows out of range")
        users = None if users is None else check_vectors(users, name="users")
        if history_rows is not None:
            history_rows = np.asarray(history_rows, dtype=np.int64)
            if history_rows.ndim != 2 or len(history_rows) != n_users or history_rows.max() >= self.n:
                raise UsageError(f"history_rows must be (users, T) index rows below {self.n}, got shape {history_rows.shape}")
        if history_len is not None and len(history_len) != len(item_rows):
            raise UsageError(f"history_len needs one entry per pair ({len(item_rows)}), got {len(history_len)}")
        scorer = self.init_scorer(self.dim if users is None else users.shape[1], config, history=history_rows is not None)
        device = resolve_device(loop.device, what="loop.device")
        scorer.to(device)
        rng = np.random.default_rng(config.seed)
        sizes = np.array(self.node_counts())
        levels = np.repeat(np.arange(self.depth), 1 + config.negatives)  # (C,)
        level_t = torch.from_numpy(levels).to(device)
        starts = self.level_starts[levels]  # (C,)
        labels = torch.tensor(np.tile([1.0] + [0.0] * config.negatives, self.depth), dtype=torch.float32, device=device)
        anc = self.ancestors(item_rows)  # (P, L)

        def step(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            b = batch.numpy()
            pos = anc[b]  # (B, L)
            neg = rng.integers(0, np.maximum(sizes - 1, 1), size=(len(b), config.negatives, self.depth))  # (B, neg, L)
            neg = neg + (neg >= pos[:, None, :]) * (sizes > 1)  # uniform over the level minus the positive
            nodes = np.concatenate([pos[:, None, :], neg], axis=1).transpose(0, 2, 1).reshape(len(b), -1)  # (B, C)
            u = user_index[b]
            hist = hids = hmask = None
            if history_rows is not None:
                hist, hids, hmask = (t.to(device) for t in self.history_tensors(history_rows[u], None if history_len is None else history_len[b]))
            user = torch.from_numpy(users[u]).to(device) if users is not None else self.mean_user(hist, hmask)
            logits = model(user, self._gather(nodes, levels).to(device), torch.from_numpy(starts + nodes).to(device), level_t, hist, hids, hmask)
            return F.binary_cross_entropy_with_logits(logits, labels.expand_as(logits))

        result = fit(scorer, torch.optim.Adam(scorer.parameters(), lr=config.lr),
                     shuffled_batches(len(item_rows), config.batch_size, seed=config.seed), step,
                     config=loop, evaluate=evaluate, monitor=monitor)
        scorer.cpu().eval()
        self.info["scorer"] = {"user_dim": scorer.user.in_features, "user": "given" if users is not None else "history_mean",
                               "history": history_rows is not None, **asdict(config),
                               "fit": {"epochs": len(result.history), "best_epoch": result.best_epoch, "stopped": result.stopped,
                                       "steps": result.steps, "seconds": result.seconds,
                                       "losses": [round(h["loss"], 5) for h in result.history]}}
        return result

    def recommend(self, users: np.ndarray | None, k: int, *, beam: int = 32, history_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per user by beam search with the scorer: ``(logits, rows)``.

        ``users`` (U, du), or None for the mean of each user's history vectors; ``history_rows``
        (U, T) index rows of each user's behaviours (-1 = padding), needed by a scorer trained with them.
        """
        if self.scorer is None:
            raise UsageError("no node scorer: call fit_scorer(...) first, or load a tree saved with one")
        hist = hids = hmask = None
        if history_rows is not None:
            hist, hids, hmask = self.history_tensors(history_rows)
        if users is None:
            if hist is None:
                raise UsageError("users=None means the mean of each user's history: pass history_rows=")
            users_t = self.mean_user(hist, hmask)
        else:
            users_t = torch.from_numpy(check_vectors(users, name="users"))
        if users_t.shape[1] != self.scorer.user.in_features:
            raise UsageError(f"users have dim {users_t.shape[1]}, the scorer was trained on dim {self.scorer.user.in_features}")
        starts = self.level_starts.tolist()
        device = next(self.scorer.parameters()).device  # the beam runs where the scorer sits
        t = self._tables(device)
        users_t = users_t.to(device)
        if hist is not None:
            hist, hids, hmask = hist.to(device), hids.to(device), hmask.to(device)

        def score(level: int, nodes: torch.Tensor, part: slice) -> torch.Tensor:
            with torch.no_grad():
                return self.scorer(
                    users_t[part],
                    t.raw[level].index_select(0, nodes.reshape(-1)).view(*nodes.shape, -1),  # (q, C, d)
                    starts[level] + nodes,
                    torch.full((nodes.shape[1],), level, dtype=torch.long, device=device),
                    None if hist is None else hist[part],
                    None if hids is None else hids[part],
                    None if hmask is None else hmask[part],
                )

        scores, rows, _ = self._beam(len(users_t), k, beam, score, device=device)
        return scores, rows

    # -- build, save, load ------------------------------------------------------------------
    @classmethod
    def _build_from(cls, source: Any, config: TreeConfig, *, column: str, progress: bool, start: float) -> IndexTree:
        all_keys, x = source.matrix()
        if not len(x):
            raise UsageError(f"no non-null vectors in column {column!r}")
        all_keys = all_keys.cast(pa.string())
        check_unique(all_keys)
        embeddings, offsets, items = build_levels(x, config.branching, niter=config.niter, seed=config.seed,
                                                  balanced=config.balanced, progress=progress)
        built_s = time.perf_counter() - start
        info: dict[str, Any] = {
            "kind": "tree",
            "metric": config.metric,
            "dim": x.shape[1],
            "n": len(x),
            "column": column,
            "source": source.describe(),
            "skipped_null_rows": source.skipped_null,
            "config": asdict(config),
            "depth": len(embeddings),
            "nodes_per_level": [len(e) for e in embeddings],
            "nodes": int(sum(len(e) for e in embeddings)),
            "search_params": {"beam": max(1, math.ceil(config.k / config.branching))},
            "mmrec_version": mmrec.__version__,
        }
        tree = cls(embeddings, offsets, items, all_keys, info)
        rng = np.random.default_rng(config.seed)
        query_rows = np.sort(rng.choice(len(x), size=min(config.n_queries, len(x)), replace=False))
        queries = x[query_rows]
        blocks = (x[i : i + 65536] for i in range(0, len(x), 65536))
        truth = exact_knn(blocks, queries, config.k, metric=config.metric, exclude=query_rows)[1]
        del x
        tune_s = tree._tune(queries, truth, query_rows, config)
        info["times"] = {"tree_s": round(built_s, 3), "tune_s": round(tune_s, 3), "build_s": round(time.perf_counter() - start, 3)}
        return tree

    def add(self, data: Any, **_: Any) -> dict[str, Any]:
        raise UsageError("the MISS tree does not support add: rebuild it over the old and new embeddings")

    def save(self, folder: str | Path) -> Path:
        """Write ``tree.safetensors`` (+ ``scorer.safetensors``), ``ids.parquet`` and ``index.json``."""
        from safetensors.numpy import save_file
        from safetensors.torch import save_file as save_torch

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"items": self.items}
        for level, (emb, off) in enumerate(zip(self.embeddings, self.offsets)):
            tensors[f"level{level + 1}.embeddings"] = emb
            tensors[f"level{level}.offsets"] = off
        with atomic_path(folder / TREE_FILE) as tmp:
            save_file(tensors, str(tmp))
        if self.scorer is not None:
            with atomic_path(folder / SCORER_FILE) as tmp:
                save_torch(self.scorer.state_dict(), str(tmp))
        self._write_common(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> IndexTree:
        from safetensors.numpy import load_file
        from safetensors.torch import load_file as load_torch

        folder = Path(folder)
        info = read_info(folder)
        if info.get("kind") != "tree":
            raise UsageError(f"{folder} holds a {info.get('kind')!r} index, not a tree")
        tensors = load_file(str(folder / TREE_FILE))
        depth = info["depth"]
        embeddings = [tensors[f"level{level}.embeddings"] for level in range(1, depth + 1)]
        offsets = [tensors[f"level{level}.offsets"] for level in range(depth)]
        tree = cls(embeddings, offsets, tensors["items"], cls._read_keys(folder, len(tensors["items"])), info)
        if "scorer" in info:
            s = info["scorer"]
            tree.scorer = NodeScorer(s["user_dim"], tree.dim, tree.node_counts(), hidden=s["hidden"], id_dim=s["id_dim"],
                                     history_k=s["history_k"] if s["history"] else 0)
            tree.scorer.load_state_dict(load_torch(str(folder / SCORER_FILE)))
            tree.scorer.eval()
        return tree
