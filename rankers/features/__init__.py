"""Feature providers that turn item keys into ranker inputs, and the batch collate that feeds rankers.

- Providers (:class:`FeatureProvider`): :class:`EmbeddingProvider` (cached ``mmrec extract``
  embeddings, memory-mapped), :class:`CodeProvider` (``mmrec quantize`` codes),
  :class:`EncoderProvider` (an encoder for new items, behind an LRU cache), :class:`ChainProvider`
  (first provider that has the key), :class:`UserVectorProvider` (user vectors by raw user id, from
  ``mmrec cdr export`` / ``mmrec graph export``). Unknown keys get a zero vector / code ``-1``, counted.
- Samples: :func:`read_log`, :class:`Vocab`, :func:`time_split`, :func:`histories`.
- Batches: :class:`ItemTable`, :class:`RankSamples`, :func:`collate` / :class:`Collator` ->
  :class:`RankBatch`; :class:`InputSchema` describes a batch to a ranker.
"""

from mmrec.rankers.features.base import ChainProvider, FeatureProvider, ProviderStats
from mmrec.rankers.features.codes import CodeProvider
from mmrec.rankers.features.collate import Collator, InputSchema, ItemTable, RankBatch, RankSamples, collate
from mmrec.rankers.features.embeddings import EmbeddingProvider
from mmrec.rankers.features.encoder import EncoderProvider, parquet_source
from mmrec.rankers.features.log import BehaviourLog, Vocab, histories, read_log, time_split
from mmrec.rankers.features.users import UserVectorProvider

__all__ = [
    "BehaviourLog", "ChainProvider", "CodeProvider", "Collator", "EmbeddingProvider", "EncoderProvider",
    "FeatureProvider", "InputSchema", "ItemTable", "ProviderStats", "RankBatch", "RankSamples", "UserVectorProvider", "Vocab",
    "collate", "histories", "parquet_source", "read_log", "time_split",
]
