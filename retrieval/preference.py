"""Preference alignment of the generative retriever: OneRec-V2's duration-aware reward shaping and GBPO,
and OneRec-V1's DPO on sampled pairs (docs/papers.md, "OneRec-V2 preference alignment").

After teacher forcing (:mod:`mmrec.retrieval.generative_train`), items are sampled per user from the
policy (:func:`~mmrec.retrieval.generative_beam.sample_tuples`, ``G`` = ``samples`` per user), served,
and their feedback (watch time) becomes a reward.

**Duration-aware reward shaping** (OneRec-V2, arXiv 2508.20900, "Duration-Aware Reward Shaping"):
raw watch time grows with the video's duration, so a policy rewarded by it drifts to long videos.
Durations are cut into ``duration_buckets`` buckets by the quantiles of the reference durations; the
shaped reward of a watch time ``w`` of an item of duration ``d`` is its mid-rank percentile among the
reference watch times ``W_b`` of the same bucket ``b(d)``:

    r(w, d) = ( #{x in W_b(d) : x < w} + 0.5 #{x in W_b(d) : x = w} ) / |W_b(d)|      in [0, 1]

(:class:`DurationAwareReward`; the reference is the logged watch times of the training users, pooled
over users -- the report's percentile within a user's own history needs more history per user than a
small world has; ``reward="watch"`` is the raw watch time in seconds.)

**Advantages** per user's group of ``G`` samples: ``group`` (GRPO's) ``A = (r - mean_G r) / (std_G r + 1e-6)``;
``quantile`` (our reading of the report's selection of positives): ``A = +1`` for the samples whose
reward is in the group's top ``positive_quantile``, ``-1`` in its bottom ``negative_quantile``, else 0.

**GBPO** (gradient-bounded policy optimisation, the report's "Adaptive Ratio Clipping"), per code level
``l`` of each sample ``o`` (token level; ``pi = pi_theta(c_l | c_<l, h)``, ``pi_old`` at sampling time):

    L_GBPO = - mean_{o, l} A_o * pi / pi'
    pi' = max(pi_old, sg(pi))            if A_o >= 0
    pi' = max(1 - pi_old, 1 - sg(pi))    if A_o <  0

(``sg`` = stop-gradient). No sample is dropped as PPO's clip drops them; the ratio ``pi / pi'`` is
at most 1 in value for positives, and the gradient per sample is bounded by that of binary cross-entropy:
``|d L / d pi| <= |A| / pi`` for positives (log-likelihood's) and ``<= |A| / (1 - pi)`` for negatives
(``-log(1 - pi)``'s), so a negative whose probability is already small gets a small push instead of
``log pi``'s exploding one (:func:`gbpo_denominator`, :func:`gbpo_loss`). Optional, ours: a KL term
to the reference (SFT) policy, ``kl_coef * mean(exp(q) - q - 1)``, ``q = log pi_ref - log pi`` on
the sampled codes (the k3 estimator; the report states none, default 0).

``pg`` is the unbounded reference: ``L_PG = - mean_{o, l} A_o log pi`` (REINFORCE with the same
advantages), whose push on a negative code grows as ``1 / pi`` when ``pi`` is small.

**DPO** (OneRec-V1's Iterative Preference Alignment, Rafailov et al. 2023): of each user's ``G``
samples, the best-rewarded is chosen (``y_w``) and the worst rejected (``y_l``) (groups whose rewards
are all equal are skipped); ``log pi(y)`` is the item's summed code log-probability, ``pi_ref`` the
frozen SFT model:

    L_DPO = - log sigmoid( beta [ (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)) ] )

Both objectives are added to ``sft_weight`` times the teacher-forcing loss on logged next items
(OneRec trains the policy-optimisation loss jointly with next-token prediction; the weight is ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mmrec.errors import UsageError

METHODS = ("gbpo", "dpo", "pg")
REWARDS = ("duration", "watch")
ADVANTAGES = ("group", "quantile")


@dataclass
class PreferenceConfig:
    """Options of preference alignment (the equations are in the module docstring)."""

    method: str = field(default="gbpo", metadata={"help": "gbpo (OneRec-V2), dpo (OneRec-V1, chosen/rejected sampled pairs) or pg "
                                                          "(plain policy gradient, unbounded: the reference for GBPO)",
                                                  "choices": METHODS})
    reward: str = field(default="duration", metadata={"help": "duration: watch-time percentile within its duration bucket; watch: raw seconds",
                                                      "choices": REWARDS})
    duration_buckets: int = field(default=4, metadata={"help": "duration buckets of the shaping (quantiles of the durations)"})
    samples: int = field(default=8, metadata={"help": "items sampled per user (the group)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    advantage: str = field(default="group", metadata={"help": "group: (r - mean) / std within the user's samples; quantile: +1 / -1 / 0",
                                                      "choices": ADVANTAGES})
    positive_quantile: float = field(default=0.25, metadata={"help": "quantile advantage: share of a group that is positive"})
    negative_quantile: float = field(default=0.25, metadata={"help": "quantile advantage: share of a group that is negative"})
    kl_coef: float = field(default=0.0, metadata={"help": "gbpo: weight of the KL (k3) to the SFT policy"})
    beta: float = field(default=0.1, metadata={"help": "dpo: inverse temperature of the implicit reward (strength of the reference KL)"})
    sft_weight: float = field(default=1.0, metadata={"help": "weight of the teacher-forcing loss on logged next items"})
    updates: int = field(default=1, metadata={"help": "gradient steps per rollout batch (> 1: pi_old differs from pi)"})

    def __post_init__(self) -> None:
        if self.method not in METHODS or self.reward not in REWARDS or self.advantage not in ADVANTAGES:
            raise UsageError(f"method must be one of {METHODS}, reward one of {REWARDS}, advantage one of {ADVANTAGES}")
        if self.samples < 2 or self.duration_buckets < 1 or self.updates < 1:
            raise UsageError("samples must be >= 2 (a group to compare), duration_buckets and updates >= 1")
        if self.temperature <= 0 or self.beta <= 0 or self.kl_coef < 0 or self.sft_weight < 0:
            raise UsageError("temperature and beta must be > 0, kl_coef and sft_weight >= 0")
        if not (0 < self.positive_quantile <= 1 and 0 <= self.negative_quantile <= 1 and self.positive_quantile + self.negative_quantile <= 1):
            raise UsageError("positive_quantile in (0, 1], negative_quantile in [0, 1], their sum <= 1")


class DurationAwareReward:
    """Watch time -> its mid-rank percentile among the reference watch times of its duration bucket."""

    def __init__(self, watch: np.ndarray, duration: np.ndarray, buckets: int) -> None:
        watch, duration = np.asarray(watch, np.float64), np.asarray(duration, np.float64)
        if watch.shape != duration.shape or not len(watch):
            raise UsageError("reference watch times and durations must be non-empty and of one shape")
        self.edges = np.unique(np.quantile(duration, np.linspace(0, 1, buckets + 1)[1:-1]))  # inner bucket edges
        of = self.bucket(duration)
        self.reference = [np.sort(watch[of == b]) for b in range(len(self.edges) + 1)]

    def bucket(self, duration: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, np.asarray(duration, np.float64), side="right")

    def __call__(self, watch: np.ndarray, duration: np.ndarray) -> np.ndarray:
        watch = np.asarray(watch, np.float64)
        out = np.full(watch.shape, 0.5)
        of = self.bucket(duration)
        for b, ref in enumerate(self.reference):
            here = of == b
            if len(ref) and here.any():
                below = np.searchsorted(ref, watch[here], side="left")
                equal = np.searchsorted(ref, watch[here], side="right") - below
                out[here] = (below + 0.5 * equal) / len(ref)
        return out


def advantages(rewards: torch.Tensor, config: PreferenceConfig) -> torch.Tensor:
    """Per-sample advantages ``(B, G)`` of rewards ``(B, G)`` within each row (a user's group)."""
    if config.advantage == "group":
        return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    g = rewards.shape[1]
    rank = rewards.argsort(1).argsort(1).float()  # 0 = worst
    top, bottom = round(config.positive_quantile * g), round(config.negative_quantile * g)
    out = torch.where(rank >= g - top, 1.0, torch.where(rank < bottom, -1.0, 0.0))
    return torch.where(rewards.std(1, keepdim=True) > 0, out, torch.zeros_like(out))  # all equal: nothing to learn


def gbpo_denominator(pi: torch.Tensor, pi_old: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """GBPO's ``pi'`` (no gradient): ``max(pi_old, pi)`` where ``adv >= 0``, ``max(1 - pi_old, 1 - pi)`` where not."""
    pi = pi.detach()
    return torch.where(adv >= 0, torch.maximum(pi_old, pi), torch.maximum(1 - pi_old, 1 - pi))


def gbpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``- mean(A pi / pi')`` over samples and levels; ``logp``, ``old_logp`` ``(B, G, L)`` of the sampled
    codes, ``adv`` ``(B, G)``."""
    pi, adv = logp.exp(), adv[..., None].expand_as(logp)
    return -(adv * pi / gbpo_denominator(pi, old_logp.exp(), adv)).mean()


def pg_loss(logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``- mean(A log pi)`` over samples and levels (``logp`` ``(B, G, L)``, ``adv`` ``(B, G)``)."""
    return -(adv[..., None] * logp).mean()


def kl_to_reference(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimate of ``KL(pi || pi_ref)`` on sampled codes: ``mean(exp(q) - q - 1)``, ``q = log pi_ref - log pi``."""
    q = ref_logp - logp
    return (q.exp() - q - 1).mean()


def dpo_pairs(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, chosen, rejected)``: per row of rewards ``(B, G)`` the best and the worst sample, rows
    whose rewards are all equal left out."""
    chosen, rejected = rewards.argmax(1), rewards.argmin(1)
    rows = torch.nonzero(rewards.max(1).values > rewards.min(1).values)[:, 0]
    return rows, chosen[rows], rejected[rows]


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO on item log-probabilities ``(P,)`` of the policy and the reference."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


__all__ = ["ADVANTAGES", "METHODS", "REWARDS", "DurationAwareReward", "PreferenceConfig", "advantages", "dpo_loss", "dpo_pairs",
           "gbpo_denominator", "gbpo_loss", "kl_to_reference", "pg_loss"]
