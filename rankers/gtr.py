"""GTR: the gift-through-rate ranker of MMBee (arXiv 2407.00056), on a SIM backbone (docs/papers.md, "MMBee").

MMBee predicts whether a user who watches a live segment sends a gift. Its backbone is SIM (Pi et
al., CIKM'20): a *general search unit* cuts the user's long behaviour sequence down to the part
relevant to the target, then DIN target attention pools that part. MMBee adds the MFQ segment
vector of the live content (:class:`mmrec.encoders.mfq.MFQ`, trained end to end here) and GIE's
metapath-expanded author sequences (read from the offline store of :mod:`mmrec.graphs`), plus
GraphCL author embeddings as node features. :class:`GTR` takes one batch dict (see
:meth:`GTR.forward`) and returns logits ``(B, K)`` for its tasks: ``gift``, and [I] optionally
``watch`` as an auxiliary task on every impression (gifts are 1 % of watches; the watch label, far
denser, teaches the MFQ segment vector what content a user stays for):

- target author ``t = [E_author(a), E_cat(c)(, W_g g_a)]`` (``item_dim``: 2 or 3 x ``embedding_dim``),
  where ``c`` is the author's category and ``g_a`` its GraphCL embedding (``graph_dim > 0``);
  a behaviour ``j`` (author ``a_j``, kind ``k_j``: video watch, live watch, gift; or expansion
  metapath) embeds the same way, plus ``E_kind(k_j)`` on the author part;
- SIM hard search ([I] category match, SIM's "hard search" by category): ``search`` = the user's
  latest ``T`` behaviours on authors of the target's category, before the impression; DIN
  attention ``h_s = sum_j f(t, e_j) e_j`` (:class:`TargetAttention`);
- ``recent`` (the latest behaviours, any category) and ``gifts`` (the latest gifts) are pooled the
  same way against ``t``;
- MFQ (``mfq`` config set): ``v = MFQ(frames, speech, comments)`` of the target segment, projected to
  ``item_dim``; [I] as SIM's *soft* search, ``v`` also queries the ``recent`` and ``search``
  sequences (the current content, which drifts away from the author's category, against the user's
  history), and ``v * E_user(u)`` enters the tower;
- GIE (``expansion`` set): the user's expanded authors (one sequence per metapath, ``E_meta`` added)
  pooled against ``t``;
- tower: a shared MLP over ``[E_user(u), t, h_search, h_recent, h_gifts(, h_exp)(, v, v*u, h_v_recent,
  h_v_search)]`` -> one logit per task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mmrec.config import build_config
from mmrec.errors import UsageError
from mmrec.layers import TargetAttention
from mmrec.rankers.layers import mlp

KINDS = ("video", "live", "gift")


@dataclass
class GTRConfig:
    """Vocabulary sizes, which MMBee parts are on, and the layer sizes."""

    num_users: int
    num_authors: int
    num_categories: int
    tasks: tuple[str, ...] = ("gift",)
    embedding_dim: int = 16
    attention_hidden: int = 32
    tower: tuple[int, ...] = (64, 32)
    mfq: dict[str, Any] | None = None  # MFQConfig fields; None = no segment content (base)
    expansion_paths: int = 0  # GIE metapath sequences per user; 0 = none
    graph_dim: int = 0  # width of the GraphCL author embeddings; 0 = none
    dropout: float = 0.0
    batch_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("num_users", "num_authors", "num_categories", "embedding_dim", "attention_hidden"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.expansion_paths < 0 or self.graph_dim < 0:
            raise UsageError(f"expansion_paths and graph_dim must be >= 0, got {self.expansion_paths}, {self.graph_dim}")
        self.tower = tuple(self.tower)
        self.tasks = tuple(self.tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise UsageError(f"tasks must be distinct label names, got {list(self.tasks)}")
        if not self.tower or any(d < 1 for d in self.tower):
            raise UsageError(f"tower must be a non-empty list of sizes >= 1, got {list(self.tower)}")
        if self.mfq is not None:
            from mmrec.encoders.mfq import MFQConfig

            self.mfq = asdict(build_config(MFQConfig, self.mfq, "GTR.mfq"))


class GTR(nn.Module):
    """Logits ``(B, K)`` (one per task: ``gift``, optionally ``watch``) from a batch dict; see the module docstring.

    Registered in :data:`mmrec.rankers.RANKERS` as ``"gtr"``, but built unlike the other rankers
    (which take an :class:`mmrec.rankers.features.InputSchema` and a config): ``RANKERS.get("gtr")(config,
    author_category=..., author_graph=...)`` takes a :class:`GTRConfig` (or a dict of its fields)
    whose vocabulary sizes come from the live data, the ``(num_authors,)`` author categories and,
    with ``graph_dim > 0``, the ``(num_authors, graph_dim)`` GraphCL author embeddings.
    :func:`mmrec.rankers.build_gtr` fills all of these in from a :class:`mmrec.rankers.GTRData`; it
    trains with :func:`mmrec.rankers.train_gtr` (``mmrec live train``), not from a ``mmrec rank`` config.
    """

    def __init__(self, config: GTRConfig | dict[str, Any], *, author_category: torch.Tensor,
                 author_graph: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = cfg = build_config(GTRConfig, config, "GTR")
        d = cfg.embedding_dim
        if author_category.shape != (cfg.num_authors,):
            raise UsageError(f"author_category must have shape ({cfg.num_authors},), got {tuple(author_category.shape)}")
        self.register_buffer("author_category", author_category.long().clone())
        self.user = nn.Embedding(cfg.num_users + 1, d)  # row num_users: unknown user
        self.author = nn.Embedding(cfg.num_authors, d)
        self.category = nn.Embedding(cfg.num_categories, d)
        self.kind = nn.Embedding(len(KINDS) + max(cfg.expansion_paths, 1), d)
        for table in (self.user, self.author, self.category, self.kind):
            nn.init.normal_(table.weight, std=0.05)
        self.item_dim = 2 * d
        if cfg.graph_dim:
            if author_graph is None or author_graph.shape != (cfg.num_authors, cfg.graph_dim):
                raise UsageError(f"graph_dim={cfg.graph_dim} needs author_graph of shape ({cfg.num_authors}, {cfg.graph_dim})")
            self.register_buffer("author_graph", author_graph.float().clone())
            self.graph = nn.Linear(cfg.graph_dim, d)
            self.item_dim += d

        def attention() -> TargetAttention:
            return TargetAttention(self.item_dim, hidden=cfg.attention_hidden)

        self.attend = nn.ModuleDict({name: attention() for name in ("search", "recent", "gifts")})
        width = d + self.item_dim * 4
        if cfg.expansion_paths:
            self.attend["expansion"] = attention()
            width += self.item_dim
        self.mfq = None
        if cfg.mfq is not None:
            from mmrec.encoders.mfq import MFQ

            self.mfq = MFQ(cfg.mfq)
            self.segment = nn.Linear(self.mfq.out_dim, self.item_dim)
            self.segment_user = nn.Linear(d, self.item_dim)
            self.attend["content_recent"] = attention()
            self.attend["content_search"] = attention()
            width += self.item_dim * 4
        self.tower = nn.Sequential(mlp(width, cfg.tower, dropout=cfg.dropout, batch_norm=cfg.batch_norm),
                                   nn.Linear(cfg.tower[-1], len(cfg.tasks)))

    @classmethod
    def coerce_config(cls, config: Any) -> None:
        """The hook a ``mmrec rank`` config calls on its ranker; GTR has no rank-config form."""
        raise UsageError("ranker 'gtr' needs live-streaming data (GTRData: searched sequences, segment tokens, "
                         "expansions); train it with mmrec live train (mmrec.pipelines.live), not mmrec rank")

    def items(self, author: torch.Tensor, kind: torch.Tensor | None = None) -> torch.Tensor:
        """Author ids ``(...)`` (and behaviour kinds) -> ``(..., item_dim)``; ids < 0 (padding) embed as author 0."""
        a = author.clamp(min=0)
        head = self.author(a) if kind is None else self.author(a) + self.kind(kind.clamp(min=0))
        parts = [head, self.category(self.author_category[a])]
        if self.config.graph_dim:
            parts.append(self.graph(self.author_graph[a]))
        return torch.cat(parts, dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``batch``: ``user``, ``author`` ``(B,)``; ``{search,recent,gifts}_author`` / ``_kind`` ``(B, T)``
        (author -1 = padding); with GIE ``expansion_author`` / ``expansion_kind`` ``(B, E)``; with MFQ
        ``tokens`` / ``masks`` (``{modality: (B, L, d)}`` / ``(B, L)``) of the target segment."""
        user = self.user(batch["user"])  # (B, d)
        target = self.items(batch["author"])  # (B, I)
        parts = [user, target]
        seqs = {}
        for name in ("search", "recent", "gifts", *(["expansion"] if self.config.expansion_paths else [])):
            authors = batch[f"{name}_author"]
            seqs[name] = (self.items(authors, batch[f"{name}_kind"]), authors >= 0)  # (B, T, I), (B, T)
            parts.append(self.attend[name](target, *seqs[name]))  # (B, I)
        if self.mfq is not None:
            content = self.segment(self.mfq(batch["tokens"], batch["masks"]))  # (B, I)
            parts += [content, content * self.segment_user(user),
                      self.attend["content_recent"](content, *seqs["recent"]),
                      self.attend["content_search"](content, *seqs["search"])]
        return self.tower(torch.cat(parts, dim=-1))  # (B, K)
