"""Settings of a cross-domain model and its training: :class:`CDRConfig` (one YAML / dict / CLI
mapping onto it through :func:`mmrec.config.build_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmrec.crossdomain.registry import AGGREGATORS, CDR_MODELS
from mmrec.errors import UsageError


@dataclass
class CDRConfig:
    """Training settings. UniCDR's are kept (batch 1024, 10 negatives, maxlen 10, dropout 0.3, λ 0.5,
    10 % interaction masking, 0.6 critic weight) except, to fit the CPU budget (1 thread), dim 64 instead
    of 128, Adam 5e-3 instead of 1e-3 and the sampled softmax weighted to the 1,000-item evaluation list
    instead of the BCE (chosen on valid.txt; the same for every model). Every model measured on the Amazon
    pairs kept its first epoch; 8 epochs with patience 2 stop after epoch 3 (docs/benchmarks.md)."""

    model: str = field(default="unicdr", metadata={"help": "cross-domain model (registry CDR_MODELS)"})
    dim: int = field(default=64, metadata={"help": "embedding size"})
    lr: float = field(default=5e-3, metadata={"help": "Adam / SparseAdam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay of the dense parameters"})
    batch_size: int = field(default=1024, metadata={"help": "interactions per batch (one domain per batch)"})
    negatives: int = field(default=10, metadata={"help": "uniform negatives per positive"})
    maxlen: int = field(default=10, metadata={"help": "history length (last items in file order)"})
    dropout: float = field(default=0.3, metadata={"help": "dropout on the user vector"})
    lam: float = field(default=0.5, metadata={"help": "aggregator mix: λ·user + (1 − λ)·pooled history"})
    aggregator: str = field(default="", metadata={
        "help": "history aggregator: mean, user_attention, item_similarity, position_attention"
                "; empty = the model's default", "default_text": "the model's"})
    interaction_mask: float = field(default=0.1, metadata={"help": "share of history items dropped per sample"})
    domain_mask: float = field(default=0.5, metadata={"help": "share of samples trained as cold start"})
    critic_weight: float = field(default=0.6, metadata={"help": "weight of UniCDR's mutual-information critic"})
    objective: str = field(default="softmax", metadata={
        "help": "bce (UniCDR's) or softmax (sampled softmax over 1 + negatives)", "choices": ("bce", "softmax")})
    softmax_candidates: int = field(default=1000, metadata={
        "help": "softmax: the ranking list the sampled negatives stand for, each weighted (N - 1)/K in the "
                "partition (1000 = the evaluation's list; 0 = unweighted)"})
    epochs: int = field(default=8, metadata={"help": "maximum epochs (early stopping on valid NDCG@10)"})
    patience: int = field(default=2, metadata={"help": "validations without a better valid NDCG@10 before stopping"})
    eval_every: int = field(default=0, metadata={
        "help": "training steps between validations (early stopping and the kept weights at this granularity); "
                "0 = once per epoch"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, batching and negatives"})
    eval_seed: int = field(default=0, metadata={"help": "seed of the 999 evaluation negatives"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads while training (restored after)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda or cuda:N: where the model trains and is evaluated"})
    max_minutes: float = field(default=14.0, metadata={"help": "stop training after this many minutes"})
    count_residual: bool = field(default=True, metadata={
        "help": "add w·log(1 + leave-one-out cross-domain co-count) to the score (crossdomain.residual); "
                "never in single-domain"})
    residual_gate: str = field(default="user", metadata={
        "help": "weight of the count residual: global (one per domain) or user (a learned gate on the user's "
                "history size, count row total and the item's degree)", "choices": ("global", "user", "fixed")})
    residual_init: float = field(default=4.0, metadata={"help": "starting weight of the count residual (the weight of 'fixed')"})
    residual_popularity: float = field(default=0.0, metadata={
        "help": "starting weight of a learned log(1 + target item degree) term of the residual (0 = none)"})
    cold_drop_user: bool = field(default=False, metadata={
        "help": "cold samples (domain-masked in training, cold-start users in evaluation) leave the user embedding "
                "out of their vector: an overlap user's has trained on its target items, a cold-start user's never has"})
    ease_items: int = field(default=4000, metadata={"help": "items the EASE weights of item_similarity are solved on"})
    # UniCDR+ and FARM
    gnn_layers: int = field(default=1, metadata={"help": "LightGCN layers over the item graph (unicdr+, farm)"})
    gnn_topk: int = field(default=10, metadata={"help": "partners kept per item in the co-interaction graph"})
    gnn_cross: bool = field(default=True, metadata={"help": "link items across the two domains in the graph"})
    contrast_weight: float = field(default=0.1, metadata={"help": "weight of the contrast (unicdr+) / align (farm) loss"})
    soft_weight: float = field(default=0.5, metadata={"help": "share of the soft InfoNCE in the unicdr+ contrast"})
    temperature: float = field(default=0.2, metadata={"help": "InfoNCE temperature"})
    experts: int = field(default=2, metadata={"help": "MMoE experts of the unicdr+ head"})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "label columns of a Parquet log (MMoE head tasks)"})
    item_emb: str = field(default="", metadata={
        "help": "item embeddings (file or extract folder, key '<domain>:<item>') for unicdr+ / farm"})
    emb_column: str = field(default="fused", metadata={"help": "vector column of --item-emb"})

    def __post_init__(self) -> None:
        model = CDR_MODELS.get(self.model)  # an unknown name lists the known ones
        for name in ("dim", "batch_size", "negatives", "maxlen", "epochs", "patience", "threads", "gnn_topk", "experts"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "lam", "interaction_mask", "domain_mask", "critic_weight", "soft_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.eval_every < 0:
            raise UsageError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.softmax_candidates < 0:
            raise UsageError(f"softmax_candidates must be >= 0, got {self.softmax_candidates}")
        if self.residual_gate not in ("global", "user", "fixed"):
            raise UsageError(f"residual_gate must be 'global', 'user' or 'fixed', got {self.residual_gate!r}")
        if self.residual_init <= 0:
            raise UsageError(f"residual_init must be > 0, got {self.residual_init}")
        if self.objective not in ("bce", "softmax"):
            raise UsageError(f"objective must be 'bce' or 'softmax', got {self.objective!r}")
        self.tasks = tuple(self.tasks)
        self.aggregator = self.aggregator or model.default_aggregator
        if self.aggregator not in AGGREGATORS:
            AGGREGATORS.get(self.aggregator)
