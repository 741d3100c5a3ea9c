"""The tables of swappable cross-domain parts: models (:data:`CDR_MODELS`) and history aggregators
(:data:`AGGREGATORS`).

Entries are ``"module:Class"`` strings, imported on first lookup, so the CLI can list the names (its
``--model`` choices) without importing torch or torch-geometric. A model class builds itself with
``from_config(config, data, state)`` and names its ``default_aggregator``; an aggregator class takes
``(dim, *, lam, maxlen, similarity)``.
"""

from __future__ import annotations

from mmrec.registry import Registry

CDR_MODELS = Registry("cross-domain model")
CDR_MODELS.register("single-domain", "mmrec.crossdomain.single_domain:SingleDomain")
CDR_MODELS.register("unicdr", "mmrec.crossdomain.unicdr:UniCDR")
CDR_MODELS.register("unicdr+", "mmrec.crossdomain.unicdr_plus:UniCDRPlus")
CDR_MODELS.register("farm", "mmrec.crossdomain.farm:FARM")
CDR_MODELS.register("count", "mmrec.crossdomain.baseline_model:CountModel")
CDR_MODELS.register("ease", "mmrec.crossdomain.baseline_model:EASEModel")
CDR_MODELS.register("item-knn", "mmrec.crossdomain.baseline_model:ItemKNNModel")

AGGREGATORS = Registry("aggregator")
AGGREGATORS.register("mean", "mmrec.crossdomain.aggregators:MeanPool")
AGGREGATORS.register("user_attention", "mmrec.crossdomain.aggregators:UserAttention")
AGGREGATORS.register("item_similarity", "mmrec.crossdomain.aggregators:ItemSimilarity")
AGGREGATORS.register("position_attention", "mmrec.crossdomain.aggregators:PositionAttention")
