"""Multi-task, multi-domain rankers and their trainer (docs/papers.md, "PEPNet" and "Multi-task rankers").

- ``RANKERS``: ``pepnet`` (:class:`PEPNet`: :class:`GateNU`, :class:`EPNet`, :class:`PPNet`),
  ``mmoe`` (:class:`MMoE`), ``home`` (:class:`HoME`), ``ple`` (:class:`PLE`, CGC levels),
  ``esmm`` (:class:`ESMM`, pCTR x pCVR over the entire space), ``shared_bottom`` (:class:`SharedBottom`),
  ``smes`` (:class:`SMES`, sparse experts: jointly chosen shared ones plus private ones per task, a load-balancing loss);
  every one takes an :class:`mmrec.rankers.features.InputSchema` and a config, embeds a
  :class:`mmrec.rankers.features.RankBatch` (:class:`FeatureEmbedding`, DIN :class:`TargetAttention` over
  the history) and returns ``(B, K)`` logits.
- Training: :class:`RankConfig` / :func:`load_config` (the YAML of ``mmrec rank train``; the job
  itself is :func:`mmrec.pipelines.rank.train`, also importable here as ``train``),
  :func:`predict`, :func:`masked_bce`, :func:`load_ranker` / :func:`save_checkpoint`;
  :func:`prepare_scoring` (a saved run's inputs for ``mmrec rank evaluate|predict``);
  :mod:`mmrec.rankers.export` (``torch.export`` / ONNX programs for serving).
- Metrics: :func:`auc`, :func:`uauc_gauc`, :func:`metrics_table`.
- Data: :func:`simulate` writes a SYNTHETIC multi-task, multi-domain log with planted effects.
- Live gifting (MMBee): :class:`GTR` / :class:`GTRConfig` (SIM search + DIN, MFQ segment vectors, GIE
  expansions), :func:`prepare_gtr_data` (:class:`GTRData` from a :mod:`mmrec.synthetic.live_sim` folder),
  :func:`build_gtr`, :func:`train_gtr`, :func:`predict_gtr`, :func:`save_gtr`, :func:`load_gtr`.
"""

from mmrec.layers import TargetAttention
from mmrec.rankers.base import RANKERS, Ranker, RankerConfig
from mmrec.rankers.checkpoint import load_ranker, save_checkpoint
from mmrec.rankers.config import DataConfig, FeatureConfig, HistoryConfig, OptimConfig, RankConfig, load_config
from mmrec.rankers.data import RankData, build_provider, prepare_data, prepare_scoring
from mmrec.rankers.esmm import ESMM, ESMMConfig
from mmrec.rankers.gates import GateNU
from mmrec.rankers.gtr import GTR, GTRConfig
from mmrec.rankers.gtr_data import GTRData, prepare_gtr_data
from mmrec.rankers.gtr_train import build_gtr, load_gtr, predict_gtr, save_gtr, train_gtr
from mmrec.rankers.home import HoME, HoMEConfig
from mmrec.rankers.inputs import FeatureEmbedding
from mmrec.rankers.losses import masked_bce
from mmrec.rankers.metrics import auc, format_table, metrics_table, uauc_gauc
from mmrec.rankers.mmoe import MMoE, MMoEConfig
from mmrec.rankers.pepnet import EPNet, PEPNet, PEPNetConfig, PPNet
from mmrec.rankers.ple import CGC, PLE, PLEConfig
from mmrec.rankers.predict import predict
from mmrec.rankers.shared_bottom import SharedBottom, SharedBottomConfig
from mmrec.rankers.smes import SMES, SMESConfig
from mmrec.synthetic.rank_sim import SimulationConfig, simulate

__all__ = [
    "GTR", "GTRConfig", "GTRData", "build_gtr", "load_gtr", "predict_gtr", "prepare_gtr_data", "save_gtr", "train_gtr",
    "CGC", "ESMM", "ESMMConfig", "PLE", "PLEConfig",
    "RANKERS", "DataConfig", "EPNet", "FeatureConfig", "FeatureEmbedding", "GateNU", "HistoryConfig", "HoME",
    "HoMEConfig", "MMoE", "MMoEConfig", "OptimConfig", "PEPNet", "PEPNetConfig", "PPNet", "RankConfig", "RankData",
    "Ranker", "RankerConfig", "SMES", "SMESConfig", "SharedBottom", "SharedBottomConfig", "SimulationConfig", "TargetAttention", "auc",
    "build_provider", "format_table", "load_config", "load_ranker", "masked_bce", "metrics_table", "predict",
    "prepare_data", "prepare_scoring", "save_checkpoint", "simulate", "uauc_gauc",
]

