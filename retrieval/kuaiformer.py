"""KuaiFormer-style sequential retriever (Liu et al., arXiv 2411.10057) and SASRec as its one-interest case.

Retrieval as next-item prediction (docs/papers.md, "Retrieval: KuaiFormer and SASRec"):

- item token ``e_i`` = id embedding + one code embedding per level (codes from ``mmrec quantize``)
  + a linear projection of a fixed content embedding (``mmrec extract`` / ``mmrec align``); any of
  the three can be switched off ([I]: the paper's item token, our sum);
- a causal pre-LN transformer over the last ``max_len`` items of the history (left-padded; learned
  positions counted from the most recent item), followed by ``interests`` learnable query tokens
  (plus the position embedding of the most recent item) whose outputs are the interest vectors ``u_1..u_k``
  (``readout="queries"``); :meth:`KuaiFormer.interests_at` computes the interests after every
  prefix of a sequence in one pass, which is how training reads every position; ``readout="last"``
  reads one vector at every position instead, which is SASRec (Kang & McAuley 2018) with shared
  input/output item embeddings;
- the score of item ``i`` is ``max_k <u_k, e_i>`` (max over interests, [I]) for training and serving;
- training loss (:func:`sampled_softmax_loss`): softmax over the batch's target items, with logQ
  correction (Yi et al. 2019: subtract ``log q_c`` from candidate ``c``'s logit, where ``q_c`` is its
  expected count among the candidates: ``B * p_c`` for the batch's targets with ``p_c`` the item's
  frequency among training targets, ``M / n_items`` for ``M`` optional uniform negatives); a candidate
  equal to the row's own target is masked. ``loss="full"`` is the softmax over all items. Either
  can smooth its target (:func:`smoothed_cross_entropy`): KuaiFormer's label smoothing, since a
  user would have taken other items than the one it did (``label_smoothing``, 0 = off).
Decided here: no grouped compression of old items (the public sets' histories are short); dropout on
the item tokens, attention and MLP; the paper's production sizes (256 items) are a config value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError
from mmrec.retrieval.transition import GATES, TransitionTerm, sources_of

READOUTS = ("queries", "last")
LOSSES = ("inbatch", "full")
FULL_SOFTMAX_MAX_ITEMS = 100_000  # default loss: full softmax up to this many items, in-batch + logQ above


def default_loss(n_items: int) -> str:
    """``full`` (cross-entropy over all items) up to :data:`FULL_SOFTMAX_MAX_ITEMS` items, ``inbatch`` above:
    the full softmax is the better loss while its ``(B, n_items)`` logits are cheap (on one CPU thread,
    Beauty's 12k items cost about 2x the in-batch step, docs/retrieval.md), the logQ-corrected in-batch one is what scales."""
    return "full" if n_items <= FULL_SOFTMAX_MAX_ITEMS else "inbatch"


@dataclass
class RetrieverConfig:
    """Sizes and switches of :class:`KuaiFormer`; ``n_items``, ``code_sizes`` and ``content_dim`` come from the data."""

    n_items: int = 0
    dim: int = field(default=64, metadata={"help": "width of item tokens and the transformer"})
    layers: int = field(default=2, metadata={"help": "transformer blocks"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    max_len: int = field(default=50, metadata={"help": "most recent history items read"})
    dropout: float = field(default=0.2, metadata={"help": "dropout of item tokens, attention and MLP"})
    interests: int = field(default=4, metadata={"help": "learnable query tokens = interest vectors (readout queries)"})
    readout: str = field(default="queries", metadata={"help": "queries (KuaiFormer) or last (SASRec: every position)", "choices": READOUTS})
    use_id: bool = field(default=True, metadata={"help": "item token includes the id embedding"})
    transition: bool = field(default=False, metadata={
        "help": "add the gated leave-one-out transition-count term g * log(1 + count(last -> i)) to the logits"})
    transition_order: int = field(default=1, metadata={"help": "1: last -> i; 2: also last-but-one -> i (its own gate)"})
    transition_gate: str = field(default="evidence", metadata={
        "help": "evidence: gate from log(1 + the source row's total); scalar: one learned weight", "choices": GATES})
    transition_init: float = field(default=3.0, metadata={"help": "the gate's starting value (g > 0)"})
    code_sizes: tuple[int, ...] = ()
    content_dim: int = 0

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise UsageError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.dim % self.heads:
            raise UsageError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if min(self.dim, self.layers, self.heads, self.max_len, self.interests) < 1 or not 0 <= self.dropout < 1:
            raise UsageError("dim, layers, heads, max_len and interests must be >= 1 and dropout in [0, 1)")
        if not (self.use_id or self.code_sizes or self.content_dim):
            raise UsageError("the item token needs at least one of: ids, codes, content")
        if self.transition_order not in (1, 2) or self.transition_gate not in GATES or self.transition_init <= 0:
            raise UsageError(f"transition_order must be 1 or 2, transition_gate one of {GATES} and transition_init > 0")


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, Dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0)
        x = x + F.dropout(self.out(a.transpose(1, 2).reshape(b, t, d)), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))


class KuaiFormer(nn.Module):
    """Histories ``(B, L)`` of item indices (-1 = pad, left-padded) -> interest vectors ``(B, k, D)``."""

    def __init__(self, config: RetrieverConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.n_items < 1:
            raise UsageError("n_items must be >= 1")
        self.id_emb = nn.Embedding(c.n_items, c.dim) if c.use_id else None
        self.code_emb = nn.ModuleList(nn.Embedding(size + 1, c.dim) for size in c.code_sizes)  # last row: no code
        self.register_buffer("codes", torch.tensor([list(c.code_sizes)], dtype=torch.long).repeat(c.n_items, 1))
        self.content_proj = nn.Linear(c.content_dim, c.dim) if c.content_dim else None
        self.register_buffer("content", torch.zeros(c.n_items, c.content_dim))
        self.pos = nn.Embedding(c.max_len, c.dim)
        self.queries = nn.Parameter(torch.randn(c.interests, c.dim) * 0.02) if c.readout == "queries" else None
        self.blocks = nn.ModuleList(_Block(c.dim, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)
        self.transition = TransitionTerm(c.n_items, c.transition_order, c.transition_gate, c.transition_init) if c.transition else None
        for emb in [self.id_emb, *self.code_emb, self.pos]:
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)

    def set_item_features(self, codes: np.ndarray | None = None, content: np.ndarray | None = None) -> None:
        """Codes ``(n_items, levels)`` (-1 = item without codes) and content ``(n_items, content_dim)``."""
        if codes is not None:
            codes = torch.as_tensor(codes, dtype=torch.long)
            self.codes.copy_(torch.where(codes < 0, torch.tensor(self.config.code_sizes), codes))
        if content is not None:
            self.content.copy_(torch.as_tensor(content, dtype=torch.float32))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Item tokens ``(..., D)`` of ``items`` (all items when None)."""
        if items is None:
            items = torch.arange(self.config.n_items, device=self.pos.weight.device)
        out = torch.zeros(*items.shape, self.config.dim, device=self.pos.weight.device)
        if self.id_emb is not None:
            out = out + self.id_emb(items)
        for level, emb in enumerate(self.code_emb):
            out = out + emb(self.codes[items, level])
        if self.content_proj is not None:
            out = out + self.content_proj(self.content[items])
        return out

    def _tokens(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Item tokens ``(B, L, D)`` with positions counted back from the end of the window (the most
        recent item is position 0), ``valid`` (B, L) and the position of each slot ``(L,)``."""
        history = torch.as_tensor(history, device=self.pos.weight.device)[:, -self.config.max_len :]
        length = history.shape[1]
        valid = history >= 0  # (B, L), left-padded
        pos = torch.arange(length - 1, -1, -1, device=history.device)  # (L,)
        x = (self.item_vectors(history.clamp(min=0)) + self.pos(pos)) * valid[..., None]
        return x, valid, pos

    def _run(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.config.dropout, self.training)
        for block in self.blocks:
            x = block(x, allowed[:, None])
        return self.norm(x)

    def _encode(self, history: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, T, D)``: the history positions, then (readout queries) the ``k`` query tokens,
        which carry the position of the most recent item (0)."""
        x, valid, pos = self._tokens(history)
        b = x.shape[0]
        if self.queries is not None:
            x = torch.cat([x, (self.queries + self.pos(pos[-1:])).expand(b, -1, -1)], 1)  # (B, T = L + k, D)
            valid = torch.cat([valid, valid.new_ones(b, self.config.interests)], 1)
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        allowed = (causal & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=x.device)  # (B, T, T)
        return self._run(x, allowed)

    def positions(self, history: torch.Tensor) -> torch.Tensor:
        """Outputs at the history positions ``(B, L, D)``: position ``j`` has read items ``<= j`` only."""
        return self._encode(history)[:, : min(history.shape[1], self.config.max_len)]

    def interests_at(self, history: torch.Tensor) -> torch.Tensor:
        """Interest vectors after every prefix in one pass: ``(B, L, k, D)``; entry ``j`` reads items
        ``<= j`` only, and the last entry equals ``forward(history)`` (one vector per position with
        readout ``last``, which is SASRec's training readout).

        For readout ``queries`` each position ``j`` gets its own ``k`` query tokens, carrying item
        ``j``'s position, which read the items ``<= j`` and the earlier queries of their group; items
        never read queries. One pass over ``L (1 + k)`` tokens replaces ``L`` passes over the prefixes
        (``~L^2 / 2`` tokens). As in SASRec, positions count back from the end of the window, so an
        earlier prefix's most recent item is not at position 0: the model learns recency relative to
        the query's own position.
        """
        if self.queries is None:
            return self.positions(history)[:, :, None]
        x, valid, pos = self._tokens(history)
        b, length, d = x.shape
        k = self.config.interests
        queries = (self.queries[None] + self.pos(pos)[:, None]).reshape(1, length * k, d).expand(b, -1, -1)  # (B, L k, D)
        n = length * (1 + k)
        owner = torch.cat([torch.arange(length), torch.arange(length).repeat_interleave(k)]).to(x.device)  # position of each token
        is_query = torch.arange(n, device=x.device) >= length
        slot = torch.cat([torch.zeros(length, dtype=torch.long), torch.arange(k).repeat(length)]).to(x.device)
        item_reads = ~is_query[:, None] & ~is_query[None, :] & (owner[None, :] <= owner[:, None])
        query_reads_item = is_query[:, None] & ~is_query[None, :] & (owner[None, :] <= owner[:, None])
        query_reads_query = (is_query[:, None] & is_query[None, :] & (owner[:, None] == owner[None, :])
                             & (slot[None, :] <= slot[:, None]))
        pattern = item_reads | query_reads_item | query_reads_query  # (T, T)
        valid_all = torch.cat([valid, valid.repeat_interleave(k, 1)], 1)  # (B, T)
        allowed = (pattern & valid_all[:, None, :]) | torch.eye(n, dtype=torch.bool, device=x.device)
        h = self._run(torch.cat([x, queries], 1), allowed)  # (B, T, D)
        return h[:, length:].reshape(b, length, k, d)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Interest vectors ``(B, k, D)`` (``k`` = 1 with readout ``last``)."""
        h = self._encode(history)
        return h[:, -self.config.interests :] if self.queries is not None else h[:, -1:]

    @torch.no_grad()
    def score(self, history: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``max_k <u_k, e_i>`` for every item, plus the transition term of the history's last item(s)
        when the model has one: ``(B, n_items)``."""
        history = torch.as_tensor(history, device=self.pos.weight.device)
        scores = interest_scores(self(history), self.item_vectors())
        if self.transition is not None:
            scores = scores + self.transition(sources_of(history, self.transition.order))
        return scores



@dataclass
class SASRecConfig(RetrieverConfig):
    """Sizes of :class:`SASRec`: a :class:`RetrieverConfig` read at the last position (one interest) over
    item ids (Kang & McAuley 2018), to which item content / codes may be added as in KuaiFormer's item
    token; the transformer and transition fields are shared."""

    interests: int = field(default=1, metadata={"help": "one vector per position"})
    readout: str = field(default="last", metadata={"help": "last: the output at every position", "choices": ("last",)})

    def __post_init__(self) -> None:
        if self.readout != "last" or self.interests != 1 or not self.use_id:
            raise UsageError("sasrec reads one vector at the last position over item ids (readout last, 1 interest, "
                             "use_id; content / codes add to the id); for other readouts use kuaiformer")
        super().__post_init__()


class SASRec(KuaiFormer):
    """SASRec (Kang & McAuley 2018): the KuaiFormer backbone with :class:`SASRecConfig` (ids, + content / codes, readout ``last``)."""

    def __init__(self, config: SASRecConfig) -> None:
        if not isinstance(config, SASRecConfig):
            raise UsageError(f"SASRec takes a SASRecConfig, got {type(config).__name__}")
        super().__init__(config)

def interest_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``(B, k, D)`` interests x ``(C, D)`` items -> ``(B, C)`` max over interests."""
    out = users[:, 0] @ items.T
    for j in range(1, users.shape[1]):  # a running max: no (B, k, C) tensor (1.4x faster for 12k items)
        out = torch.maximum(out, users[:, j] @ items.T)
    return out


def sampled_softmax_loss(users: torch.Tensor, targets: torch.Tensor, target_vectors: torch.Tensor, *,
                         log_p: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
                         negative_vectors: torch.Tensor | None = None, n_items: int | None = None,
                         temperature: float = 1.0, bias: torch.Tensor | None = None,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """In-batch softmax over the batch's targets (+ uniform ``negatives``) with optional logQ correction.

    ``users`` (B, k, D), ``targets`` (B,) item indices with vectors (B, D); ``log_p`` (n_items,) the log
    frequency of each item among training targets (None: no correction); ``negatives`` (M,) uniform
    draws over ``n_items`` with vectors (M, D). The logit of candidate ``c`` for row ``b`` is
    ``max_k <u_bk, e_c> / temperature - log q_c`` with ``q_c = B p_c`` (in-batch) or ``M / n_items``
    (uniform); candidates equal to the row's target (other than its own column) are masked. ``bias``
    (B, C): a term added to the scores before the temperature (the transition term), C = B (+ M);
    ``label_smoothing``: see :func:`smoothed_cross_entropy` (masked candidates take no share).
    """
    b = len(targets)
    cands, vectors = targets, target_vectors
    if negatives is not None:
        cands, vectors = torch.cat([targets, negatives]), torch.cat([target_vectors, negative_vectors])
    logits = interest_scores(users, vectors)  # (B, C)
    logits = (logits if bias is None else logits + bias) / temperature
    if log_p is not None:
        correction = log_p[targets] + math.log(b)
        if negatives is not None:
            correction = torch.cat([correction, correction.new_full((len(negatives),), math.log(len(negatives) / n_items))])
        logits = logits - correction
    clash = targets[:, None] == cands[None, :]
    clash[:, :b].fill_diagonal_(False)
    logits = logits.masked_fill(clash, -torch.inf)
    return smoothed_cross_entropy(logits, torch.arange(b, device=logits.device), label_smoothing)


def full_softmax_loss(users: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, temperature: float = 1.0,
                      bias: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over all items: ``users`` (B, k, D), ``targets`` (B,), ``items`` (n_items, D); the
    logit is the max over interests (passed through ``bias``: logits -> logits plus a term, the transition
    term) over the temperature; ``label_smoothing``: torch's, which equals :func:`smoothed_cross_entropy`
    here (no candidate is masked), without its masking pass over the ``(B, n_items)`` logits."""
    logits = interest_scores(users, items)
    return F.cross_entropy((logits if bias is None else bias(logits)) / temperature, targets, label_smoothing=label_smoothing)


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean over rows of ``-(1 - ε) log p_target - ε · mean_c log p_c`` over the row's candidates ``c`` whose
    logit is finite (masked candidates, ``-inf``, take no share): KuaiFormer's smoothed softmax target
    (docs/papers.md, "Retrieval: KuaiFormer and SASRec"), Szegedy et al. 2016's label smoothing with the
    uniform part over the candidates the row can pick (the in-batch loss masks repeated targets; with none
    masked it is ``F.cross_entropy(label_smoothing=ε)``). ``ε = 0`` is the plain cross-entropy."""
    if not smoothing:
        return F.cross_entropy(logits, targets)
    logp = F.log_softmax(logits, -1)
    finite = torch.isfinite(logits)
    uniform = -logp.masked_fill(~finite, 0.0).sum(-1) / finite.sum(-1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()
