"""Generative retrieval over semantic IDs: TIGER / OneRec-V1 encoder-decoder and OneRec-V2's lazy decoder.

An item is its tuple of ``L`` codes ``(c_1, ..., c_L)`` (``mmrec quantize``). A user's history is read
as the concatenated code tokens of its last ``max_len`` items, one vocabulary slice per code level
(token of code ``c`` at level ``l`` = ``2 + sum_{j<l} K_j + c``; 0 = pad, 1 = BOS), and the model
decodes the next item's codes autoregressively. TIGER (Rajput et al., arXiv 2305.05065, §3.2
"Generative Retrieval with Semantic IDs") trains it as sequence-to-sequence with teacher forcing:

    log p(c | h) = sum_{l=1..L} log p(c_l | c_<l, h),   loss = -(1 / L) sum_l log p(c_l | c_<l, h)

(the cross-entropy of each level, averaged over levels; :meth:`GenerativeRetriever.loss` returns the
per-level terms too). :meth:`GenerativeRetriever.log_likelihood` is the first line for any tuples;
constrained beam search over the tuples that exist is :mod:`mmrec.retrieval.generative_beam`.

``arch`` (:class:`GenerativeConfig`):

- ``encoder-decoder`` (TIGER, OneRec-V1): a bidirectional pre-LN transformer encoder over the history
  tokens; a decoder of causal self-attention -> cross-attention to the encoder output -> FFN (T5's
  block order), with its own key/value projection of the encoder output in every layer.
- ``lazy-decoder`` (OneRec-V2, Zhou et al., arXiv 2508.20900, "Lazy Decoder-Only Architecture"): no
  encoder. A context processor turns the history tokens (embeddings + positions) into key/value pairs
  once, ``[k_g; v_g] = W_g x``, each RMS-normalised, one pair per group of decoder layers (KV sharing:
  ``kv_groups`` = 1 shares one pair across all layers); the decoder blocks are lazy cross-attention
  (a query projection only, attending to the group's static ``k_g, v_g``) -> causal self-attention ->
  FFN, the paper's block order. The compute sits in the decoder, over ``L`` target tokens, rather than
  in an encoder over ``max_len * L`` history tokens.

:meth:`GenerativeRetriever.parameter_counts` splits the parameters so the two can be sized equally
(e.g. more lazy-decoder layers for the encoder's share).

Decided here (TIGER uses T5 with relative position buckets and a hashed user-id token): learned
absolute positions (of the item, counted back from the most recent, plus the code level), a learned
start token before the history instead of a user token (so an empty history still attends to
something), one output head per level, dense FFN (OneRec-V2's production model uses MoE), GELU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec.errors import UsageError

ARCHS = ("encoder-decoder", "lazy-decoder")
PAD, BOS = 0, 1


@dataclass
class GenerativeConfig:
    """Sizes of :class:`GenerativeRetriever`; ``n_items`` and ``code_sizes`` come from the codes."""

    n_items: int = 0
    code_sizes: tuple[int, ...] = ()
    arch: str = field(default="encoder-decoder", metadata={"help": "encoder-decoder (TIGER / OneRec-V1) or lazy-decoder (OneRec-V2)",
                                                           "choices": ARCHS})
    dim: int = field(default=128, metadata={"help": "width of code tokens and the transformer"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    encoder_layers: int = field(default=2, metadata={"help": "encoder blocks over the history (encoder-decoder only)"})
    decoder_layers: int = field(default=2, metadata={"help": "decoder blocks"})
    kv_groups: int = field(default=1, metadata={"help": "lazy-decoder: key/value pairs of the context, each shared by a group of layers"})
    ffn_mult: int = field(default=4, metadata={"help": "FFN width / dim"})
    dropout: float = field(default=0.1, metadata={"help": "dropout of tokens, attention (weights and output) and FFN"})
    attn_dropout: float | None = field(default=None, metadata={"help": "dropout of the attention weights (default: dropout)"})
    max_len: int = field(default=20, metadata={"help": "most recent history items read (TIGER: 20)"})
    beam: int = field(default=20, metadata={"help": "beam size of the constrained beam search (>= the largest K reported)"})

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UsageError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.dim % self.heads:
            raise UsageError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if min(self.dim, self.heads, self.decoder_layers, self.kv_groups, self.ffn_mult, self.max_len, self.beam) < 1:
            raise UsageError("dim, heads, decoder_layers, kv_groups, ffn_mult, max_len and beam must be >= 1")
        if self.encoder_layers < 0 or not 0 <= self.dropout < 1 or not 0 <= (self.attn_dropout or 0.0) < 1:
            raise UsageError("encoder_layers must be >= 0 and dropout, attn_dropout in [0, 1)")
        if self.kv_groups > self.decoder_layers:
            raise UsageError(f"kv_groups {self.kv_groups} > decoder_layers {self.decoder_layers}")
        if any(k < 1 for k in self.code_sizes):
            raise UsageError(f"code sizes must be >= 1, got {self.code_sizes}")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)  # (B, H, T, Dh)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, D)


def _drops(c: GenerativeConfig) -> tuple[float, float]:
    """(dropout of an attention block's output, dropout of its attention weights)."""
    return c.dropout, c.dropout if c.attn_dropout is None else c.attn_dropout


class _FFN(nn.Sequential):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim), nn.Dropout(dropout))


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout
        self.norm, self.qkv, self.out = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = (_split_heads(p, self.heads) for p in self.qkv(self.norm(x)).chunk(3, -1))  # 3 x (B, H, T, Dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.attn_dropout if self.training else 0.0)
        return F.dropout(self.out(_merge_heads(a)), self.dropout, self.training)

    def step(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple]:
        """One new token ``x`` (N, 1, D) reading the cached keys / values ``(N, t, D)`` of the tokens
        before it and itself (incremental causal attention, eval only); returns ``(out, cache)``."""
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        if past is not None:
            k, v = torch.cat([past[0], k], 1), torch.cat([past[1], v], 1)
        a = F.scaled_dot_product_attention(*(_split_heads(p, self.heads) for p in (q, k, v)))
        return self.out(_merge_heads(a)), (k, v)


class _CrossAttention(nn.Module):
    """Queries from the decoder; keys / values ``(B, H, T, Dh)`` given (precomputed once per history)."""

    def __init__(self, dim: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout
        self.norm, self.q, self.out = nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q(self.norm(x)), self.heads)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        return F.dropout(self.out(_merge_heads(a)), self.dropout, self.training)


class _EncoderBlock(nn.Module):
    def __init__(self, c: GenerativeConfig) -> None:
        super().__init__()
        self.attn, self.ffn = _SelfAttention(c.dim, c.heads, *_drops(c)), _FFN(c.dim, c.ffn_mult, c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x, mask=mask)
        return x + self.ffn(x)


class _DecoderBlock(nn.Module):
    """``x`` (B, W, t, D): ``W`` decoded sequences per history. Self-attention runs per sequence
    (``B W`` rows); cross-attention folds the ``W`` sequences into the query length, so the history's
    keys / values are read once per history, not copied per beam."""

    def __init__(self, c: GenerativeConfig, cross_first: bool) -> None:
        super().__init__()
        self.cross_first = cross_first
        self.self_attn, self.cross = _SelfAttention(c.dim, c.heads, *_drops(c)), _CrossAttention(c.dim, c.heads, *_drops(c))
        self.ffn = _FFN(c.dim, c.ffn_mult, c.dropout)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, w, t, d = x.shape

        def self_part(x):
            return x + self.self_attn(x.reshape(b * w, t, d), causal=True).view(b, w, t, d)

        def cross_part(x):
            return x + self.cross(x.reshape(b, w * t, d), k, v, mask).view(b, w, t, d)

        x = self_part(cross_part(x)) if self.cross_first else cross_part(self_part(x))
        return x + self.ffn(x)

    def step(self, x: torch.Tensor, past: tuple | None, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """:meth:`forward` for one new token per sequence ``x`` (B, W, 1, D), the self-attention cache
        ``past`` (keys, values ``(B W, t, D)``) of the tokens before it; returns ``(out, cache)``."""
        b, w, _, d = x.shape
        cache = past

        def self_part(x):
            nonlocal cache
            out, cache = self.self_attn.step(x.reshape(b * w, 1, d), past)
            return x + out.view(b, w, 1, d)

        def cross_part(x):
            return x + self.cross(x.reshape(b, w, d), k, v, mask).view(b, w, 1, d)

        x = self_part(cross_part(x)) if self.cross_first else cross_part(self_part(x))
        return x + self.ffn(x), cache


class _Context(nn.Module):
    """The history -> per-decoder-layer keys / values. ``encoder-decoder``: encoder blocks, then one
    key/value projection per decoder layer; ``lazy-decoder``: one RMS-normalised projection per KV group."""

    def __init__(self, c: GenerativeConfig) -> None:
        super().__init__()
        self.c = c
        lazy = c.arch == "lazy-decoder"
        self.blocks = nn.ModuleList(() if lazy else (_EncoderBlock(c) for _ in range(c.encoder_layers)))
        self.norm = nn.LayerNorm(c.dim)
        self.kv = nn.ModuleList(nn.Linear(c.dim, 2 * c.dim) for _ in range(c.kv_groups if lazy else c.decoder_layers))
        self.kv_norm = nn.ModuleList(nn.RMSNorm(c.dim) for _ in range(2 * c.kv_groups)) if lazy else None

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        mask = valid[:, None, None, :]  # (B, 1, 1, T) keys that may be read
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        pairs = []
        for g, proj in enumerate(self.kv):
            k, v = proj(x).chunk(2, -1)  # 2 x (B, T, D)
            if self.kv_norm is not None:
                k, v = self.kv_norm[2 * g](k), self.kv_norm[2 * g + 1](v)
            pairs.append((_split_heads(k, self.c.heads), _split_heads(v, self.c.heads)))
        if self.kv_norm is not None:  # layer i reads group i * groups // layers
            pairs = [pairs[i * len(pairs) // self.c.decoder_layers] for i in range(self.c.decoder_layers)]
        return pairs, mask


class GenerativeRetriever(nn.Module):
    """Histories ``(B, T)`` of item indices (-1 = pad, left-padded) -> per-level logits of the next item's codes.

    ``item_codes`` (buffer, ``(n_items, L)``, -1 = item without codes) maps items to code tuples and
    travels with the weights (:meth:`set_codes`)."""

    def __init__(self, config: GenerativeConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.n_items < 1 or not c.code_sizes:
            raise UsageError("GenerativeRetriever needs n_items >= 1 and code_sizes")
        self.levels = len(c.code_sizes)
        self.register_buffer("item_codes", torch.full((c.n_items, self.levels), -1, dtype=torch.long))
        self.register_buffer("offsets", torch.tensor(np.concatenate([[0], np.cumsum(c.code_sizes)[:-1]]) + 2, dtype=torch.long),
                             persistent=False)
        self.tokens = nn.Embedding(2 + sum(c.code_sizes), c.dim, padding_idx=PAD)  # shared by history and decoder
        self.item_pos = nn.Embedding(c.max_len, c.dim)
        self.level_emb = nn.Embedding(self.levels, c.dim)
        self.start = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.decoder_pos = nn.Embedding(self.levels, c.dim)
        self.context = _Context(c)
        self.decoder = nn.ModuleList(_DecoderBlock(c, cross_first=c.arch == "lazy-decoder") for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.heads = nn.ModuleList(nn.Linear(c.dim, k) for k in c.code_sizes)
        for emb in (self.tokens, self.item_pos, self.level_emb, self.decoder_pos):
            nn.init.normal_(emb.weight, std=0.02)

    def set_codes(self, codes: np.ndarray | torch.Tensor) -> None:
        """Item code tuples ``(n_items, L)``; a row with any code < 0 is an item without codes."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.shape != self.item_codes.shape:
            raise UsageError(f"codes have shape {tuple(codes.shape)}, expected {tuple(self.item_codes.shape)}")
        sizes = torch.tensor(self.config.code_sizes)
        if (codes >= sizes).any():
            raise UsageError(f"a code is >= its level's size {self.config.code_sizes}")
        self.item_codes.copy_(torch.where((codes < 0).any(1, keepdim=True), -1, codes))

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of ``embeddings`` (tokens, positions, heads), ``context`` (encoder or context
        processor), ``decoder`` and ``total``."""
        count = lambda mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
        out = {"embeddings": count([self.tokens, self.item_pos, self.level_emb, self.decoder_pos, self.heads]) + self.start.numel(),
               "context": count([self.context]), "decoder": count([self.decoder, self.decoder_norm])}
        out["total"] = sum(out.values())
        return out

    def encode(self, history: torch.Tensor | np.ndarray) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """The history's keys / values for every decoder layer (each ``(B, H, 1 + T L, Dh)``) and the key mask."""
        device = self.start.device
        history = torch.as_tensor(history, device=device)[:, -self.config.max_len :]  # (B, T)
        b, t = history.shape
        codes = torch.where((history >= 0)[..., None], self.item_codes[history.clamp(min=0)], -1)  # (B, T, L)
        tokens = torch.where(codes >= 0, codes + self.offsets, PAD)
        pos = torch.arange(t - 1, -1, -1, device=device)  # the most recent item is position 0
        x = self.tokens(tokens) + self.item_pos(pos)[:, None] + self.level_emb.weight  # (B, T, L, D)
        x = torch.cat([self.start.expand(b, 1, -1), x.reshape(b, t * self.levels, -1)], 1)  # (B, 1 + T L, D)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=device), tokens.reshape(b, -1) != PAD], 1)
        return self.context(F.dropout(x, self.config.dropout, self.training), valid)

    def hidden(self, context: tuple, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder outputs ``(B, W, t + 1, D)`` for ``W`` code prefixes ``(B, W, t)`` per history (BOS
        first): position ``l`` predicts level ``l``."""
        pairs, mask = context
        b, w, t = prefix.shape
        tokens = torch.cat([prefix.new_full((b, w, 1), BOS), prefix + self.offsets[:t]], -1)  # (B, W, t + 1)
        x = F.dropout(self.tokens(tokens) + self.decoder_pos.weight[: t + 1], self.config.dropout, self.training)
        for block, (k, v) in zip(self.decoder, pairs):
            x = block(x, k, v, mask)
        return self.decoder_norm(x)

    def decode_step(self, context: tuple, last: torch.Tensor | None, caches: list | None) -> tuple[torch.Tensor, list]:
        """``log p(c_{t+1} | c_<=t, h)``, incrementally (eval): ``last`` (B, W) = the code of level ``t`` just chosen
        for each of ``W`` sequences (None at the start: BOS), ``caches`` their self-attention caches
        (None at the start; reorder them with the beams). Returns ``(log p over level t + 1 (B, W, K), caches)``."""
        pairs, mask = context
        if last is None:
            level, b = 0, mask.shape[0]
            tokens = torch.full((b, 1), BOS, dtype=torch.long, device=mask.device)
        else:
            level = caches[0][0].shape[1]
            tokens = last + self.offsets[level - 1]
        x = (self.tokens(tokens) + self.decoder_pos.weight[level])[:, :, None]  # (B, W, 1, D)
        out = []
        for i, (block, (k, v)) in enumerate(zip(self.decoder, pairs)):
            x, cache = block.step(x, None if caches is None else caches[i], k, v, mask)
            out.append(cache)
        h = self.decoder_norm(x[:, :, 0])
        return F.log_softmax(self.heads[level](h).float(), -1), out

    def level_log_probs(self, context: tuple, tuples: torch.Tensor) -> list[torch.Tensor]:
        """Teacher forcing: per level ``l`` the log-probabilities ``(B, W, K_l)`` given the true ``c_<l``."""
        h = self.hidden(context, tuples[..., :-1])  # (B, W, L, D)
        return [F.log_softmax(head(h[:, :, level]).float(), -1) for level, head in enumerate(self.heads)]

    def log_likelihood(self, history: torch.Tensor | np.ndarray, tuples: torch.Tensor) -> torch.Tensor:
        """``sum_l log p(c_l | c_<l, h)`` of code tuples ``(B, W, L)`` given histories ``(B, T)``: ``(B, W)``."""
        tuples = torch.as_tensor(tuples, device=self.start.device)
        logp = self.level_log_probs(self.encode(history), tuples)
        return sum(lp.gather(-1, tuples[..., level, None])[..., 0] for level, lp in enumerate(logp))

    def loss(self, history: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over levels of the cross-entropy of each level of the target items ``(B,)`` (all with
        codes) and the per-level values ``{"ce_l1", ...}``."""
        tuples = self.item_codes[targets][:, None]  # (B, 1, L)
        logp = self.level_log_probs(self.encode(history), tuples)
        per_level = [F.nll_loss(lp[:, 0], tuples[:, 0, level]) for level, lp in enumerate(logp)]
        return torch.stack(per_level).mean(), {f"ce_l{level + 1}": float(v.detach()) for level, v in enumerate(per_level)}


__all__ = ["ARCHS", "GenerativeConfig", "GenerativeRetriever"]
