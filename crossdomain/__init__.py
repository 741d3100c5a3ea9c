"""mmrec.crossdomain — cold-start cross-domain user modelling: UniCDR, UniCDR+, FARM and a single-domain
baseline on ``user<TAB>item`` pair data or Parquet behaviour logs, with the 1-vs-999 ranking protocol."""

from mmrec.crossdomain.aggregators import AGGREGATORS, Aggregator, ease_weights
from mmrec.crossdomain.data import Batch, CDRData, Domain, histories, load_log_pair, load_pair, make_batch, read_pairs
from mmrec.crossdomain.evaluate import evaluate_scores, metrics_from_ranks, ranks, sample_candidates
from mmrec.crossdomain.farm import FARM, FrequencyFilter
from mmrec.crossdomain.item_graph import ItemEncoder, co_interaction_graph, read_item_embeddings
from mmrec.crossdomain.single_domain import SingleDomain
from mmrec.crossdomain.train import (
    MODELS,
    CDRConfig,
    build_model,
    config_from_args,
    evaluate_run,
    export_user_features,
    format_table,
    load_run,
    save_run,
    train_cdr,
)
from mmrec.crossdomain.unicdr import UniCDR
from mmrec.crossdomain.unicdr_plus import MMoEHead, UniCDRPlus

__all__ = [
    "AGGREGATORS", "Aggregator", "Batch", "CDRConfig", "CDRData", "Domain", "FARM", "FrequencyFilter",
    "ItemEncoder", "MMoEHead", "MODELS", "SingleDomain", "UniCDR", "UniCDRPlus", "build_model",
    "co_interaction_graph", "config_from_args", "ease_weights", "evaluate_run", "evaluate_scores",
    "export_user_features", "format_table", "histories", "load_log_pair", "load_pair", "load_run", "make_batch",
    "metrics_from_ranks", "ranks", "read_item_embeddings", "read_pairs", "sample_candidates", "save_run", "train_cdr",
]
