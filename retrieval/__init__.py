"""mmrec.retrieval: sequential retrieval over user histories -- sequences, the leave-one-out evaluator,
the KuaiFormer-style retriever, SASRec (its one-interest, ids-only case), the counted baselines and the
registry of the retriever families (:data:`RETRIEVERS`). The jobs over files (train, evaluate, serve) are
:mod:`mmrec.pipelines.retrieve`; the importer is :mod:`mmrec.pipelines.seq_import`."""

from mmrec.retrieval.baselines import CoOccurrence, Popularity
from mmrec.retrieval.data import Sequences, read_sequences
from mmrec.retrieval.evaluate import evaluate, metrics_from_ranks, target_ranks
from mmrec.retrieval.kuaiformer import (
    KuaiFormer,
    RetrieverConfig,
    SASRec,
    SASRecConfig,
    full_softmax_loss,
    interest_scores,
    sampled_softmax_loss,
)
from mmrec.retrieval.registry import RETRIEVERS

__all__ = ["RETRIEVERS", "CoOccurrence", "KuaiFormer", "Popularity", "RetrieverConfig", "SASRec", "SASRecConfig", "Sequences", "evaluate",
           "full_softmax_loss", "interest_scores", "metrics_from_ranks", "read_sequences", "sampled_softmax_loss", "target_ranks"]
