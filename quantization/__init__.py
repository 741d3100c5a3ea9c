"""QARM item alignment and quantized codes (docs/papers.md, "QARM"): the algorithms.

- Pairs and alignment: :func:`mine_pairs` (User2Item + Swing, streamed from a behaviour log),
  :func:`align_vectors` (a head over cached vectors), :func:`train_tower` (InfoNCE through the shared
  loop), :class:`EncoderTower` (the slow path, in :mod:`mmrec.quantization.encoder_tower`).
- Codes: ``QUANTIZERS`` (``rq-kmeans``, ``balanced``, ``vq``, ``rq-vae``), :func:`load_quantizer`,
  :func:`code_report`.
- Features for rankers: :class:`CodeEmbedding`, :class:`CodeCrossFeatures`, :func:`prefix_match`,
  :func:`target_attention`.

The jobs over folders are in :mod:`mmrec.pipelines`: ``mmrec align`` is
:mod:`mmrec.pipelines.align`, ``mmrec quantize`` is :func:`mmrec.pipelines.quantize.quantize`
(still importable here as ``quantize``, loaded on first use, for callers of the old path).
"""

from mmrec.layers import CodeEmbedding, target_attention
from mmrec.losses import info_nce
from mmrec.quantization.align import AlignConfig, align_vectors, pair_metrics, train_tower
from mmrec.quantization.base import QUANTIZERS, CodeQuantizer, load_quantizer
from mmrec.quantization.collisions import add_suffix, collision_groups
from mmrec.quantization.features import CodeCrossFeatures, prefix_match
from mmrec.quantization.files import load_codes, save_codes, save_index_json
from mmrec.quantization.kmeans import assign, balanced_kmeans, kmeans
from mmrec.quantization.pairs import PairConfig, mine_pairs
from mmrec.quantization.report import code_report, plot_usage
from mmrec.quantization.rq_kmeans import BalancedRQKMeans, RQKMeans, RQKMeansConfig
from mmrec.quantization.rq_vae import RQVAE, ResidualQuantizer, RQVAEConfig, RQVAEQuantizer
from mmrec.quantization.vq import VQCodes, VQConfig
from mmrec.store import read_embeddings

__all__ = [
    "QUANTIZERS", "AlignConfig", "BalancedRQKMeans", "CodeCrossFeatures", "CodeEmbedding", "CodeQuantizer",
    "PairConfig", "RQKMeans", "RQKMeansConfig", "RQVAE", "RQVAEConfig", "RQVAEQuantizer", "ResidualQuantizer",
    "VQCodes", "VQConfig", "add_suffix", "align_vectors", "assign", "balanced_kmeans", "code_report",
    "collision_groups", "info_nce", "kmeans", "load_codes", "load_quantizer", "mine_pairs", "pair_metrics",
    "plot_usage", "prefix_match", "read_embeddings", "save_codes", "save_index_json", "target_attention", "train_tower",
]
