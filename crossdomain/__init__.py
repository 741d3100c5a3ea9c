"""mmrec.crossdomain — cold-start cross-domain user modelling: UniCDR, UniCDR+, FARM and a single-domain
baseline over two domains sharing users, the count / EASE / item-kNN baselines and the count residual,
with the 1-vs-999 ranking protocol.

Models and algorithms over arrays only; reading pair folders / behaviour logs and writing run folders is
:mod:`mmrec.pipelines.cdr`. Names are imported on first use (transformers' lazy module), so the CLI can
read :data:`CDR_MODELS` and :class:`CDRConfig` without importing torch-geometric.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AGGREGATORS": "registry", "CDR_MODELS": "registry",
    "CDRConfig": "config",
    "Aggregator": "aggregators", "ItemSimilarity": "aggregators", "MeanPool": "aggregators",
    "PositionAttention": "aggregators", "UserAttention": "aggregators", "ease_weights": "aggregators",
    "CDRModel": "base",
    "BASELINES": "baselines", "CoCount": "baselines", "CrossEASE": "baselines", "ItemKNN": "baselines",
    "evaluate_baseline": "baselines", "fit_baseline": "baselines", "tune_baseline": "baselines",
    "GRID": "baselines", "select_baseline": "baselines", "BaselineModel": "baseline_model",
    "Batch": "data", "CDRData": "data", "Domain": "data", "domain_histories": "data", "histories": "data",
    "log_pair": "data", "make_batch": "data", "other_histories": "data",
    "CountResidual": "residual",
    "HeldoutEvaluator": "evaluate", "evaluate_scores": "evaluate", "metrics_from_ranks": "evaluate",
    "ranks": "evaluate", "sample_candidates": "evaluate",
    "FARM": "farm", "FrequencyFilter": "farm",
    "ItemEncoder": "item_graph", "co_interaction_graph": "item_graph",
    "SingleDomain": "single_domain",
    "build_model": "train", "make_optimizers": "train", "train_model": "train",
    "UniCDR": "unicdr",
    "MMoEHead": "unicdr_plus", "UniCDRPlus": "unicdr_plus",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmrec.crossdomain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mmrec.crossdomain.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
