"""QARM item alignment and quantized codes (PAPERS.md, QARM and OneRec sections).

- Pairs and alignment: :func:`mine_pairs` (User2Item + Swing, streamed), :func:`align` (fast path
  over cached embeddings), :func:`align_encoders` (slow path through trainable encoders).
- Codes: ``QUANTIZERS`` (``rq-kmeans``, ``balanced``, ``vq``, ``rq-vae``), :func:`quantize` (the
  ``mmrec quantize`` job), :func:`load_quantizer`, :func:`code_report`.
- Features for rankers: :class:`CodeEmbedding`, :class:`CodeCrossFeatures`, :func:`prefix_match`,
  :func:`target_attention`.
"""

from mmrec.losses import info_nce
from mmrec.quantization.align import AlignConfig, align, align_vectors, pair_metrics
from mmrec.quantization.align_encoders import align_encoders
from mmrec.quantization.base import QUANTIZERS, CodeQuantizer, load_quantizer
from mmrec.quantization.collisions import add_suffix, collision_groups
from mmrec.quantization.features import CodeCrossFeatures, CodeEmbedding, prefix_match, target_attention
from mmrec.quantization.files import load_codes, save_codes
from mmrec.store import read_embeddings
from mmrec.quantization.kmeans import assign, balanced_kmeans, kmeans
from mmrec.quantization.pairs import PairConfig, mine_pairs
from mmrec.quantization.quantize import quantize
from mmrec.quantization.report import code_report, plot_usage
from mmrec.quantization.rq_kmeans import BalancedRQKMeans, RQKMeans, RQKMeansConfig
from mmrec.quantization.rq_vae import RQVAE, ResidualQuantizer, RQVAEConfig, RQVAEQuantizer
from mmrec.quantization.vq import VQCodes, VQConfig

__all__ = [
    "QUANTIZERS", "AlignConfig", "BalancedRQKMeans", "CodeCrossFeatures", "CodeEmbedding", "CodeQuantizer",
    "PairConfig", "RQKMeans", "RQKMeansConfig", "RQVAE", "RQVAEConfig", "RQVAEQuantizer", "ResidualQuantizer",
    "VQCodes", "VQConfig", "add_suffix", "align", "align_encoders", "align_vectors", "assign", "balanced_kmeans",
    "code_report", "collision_groups", "info_nce", "kmeans", "load_codes", "load_quantizer", "mine_pairs",
    "pair_metrics", "plot_usage", "prefix_match", "quantize", "read_embeddings", "save_codes", "target_attention",
]
