"""The retriever families of ``mmrec retrieve train`` (:data:`RETRIEVERS`), one :class:`RetrieverFamily` each.

A family says how its model is trained on the training part of a ``mmrec seq import`` folder and how a
run of it is rebuilt from its run folder (:func:`mmrec.runs.load_run`, kind ``retrieve``):

- ``kuaiformer`` (:class:`~mmrec.retrieval.kuaiformer.KuaiFormer`, :class:`~mmrec.retrieval.kuaiformer.RetrieverConfig`)
  and ``sasrec`` (:class:`~mmrec.retrieval.kuaiformer.SASRec`, :class:`~mmrec.retrieval.kuaiformer.SASRecConfig`):
  :mod:`mmrec.retrieval.sequence_train`;
- ``generative`` (:class:`~mmrec.retrieval.generative.GenerativeRetriever`): :mod:`mmrec.retrieval.generative_train`;
- ``pop`` and ``cooc``: the counted baselines of :mod:`mmrec.retrieval.baselines`.

Entries are ``"module:Class"`` strings, imported on first lookup, so the CLI lists the names (its
``--model`` choices) without importing the models. Every family resolves its device through
:func:`mmrec.device.resolve_device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrec.registry import Registry

RETRIEVERS = Registry("retriever")
RETRIEVERS.register("kuaiformer", "mmrec.retrieval.sequence_train:KuaiFormerFamily")
RETRIEVERS.register("sasrec", "mmrec.retrieval.sequence_train:SASRecFamily")
RETRIEVERS.register("generative", "mmrec.retrieval.generative_train:GenerativeFamily")
RETRIEVERS.register("pop", "mmrec.retrieval.baselines:PopularityFamily")
RETRIEVERS.register("cooc", "mmrec.retrieval.baselines:CoOccurrenceFamily")


@dataclass
class Trained:
    """What a family's :meth:`RetrieverFamily.train` returns: the model (a scorer with ``state_dict``), its
    config as saved in the run (with ``max_len``, the history length it reads), the validation metrics
    of the kept epoch and the training report."""

    model: Any
    config: dict[str, Any]
    validation: dict[str, Any]
    train: dict[str, Any]


class RetrieverFamily:
    """How a family trains (:meth:`train`) and loads (:meth:`load`); the job's options reach it as the
    ``mmrec.pipelines.retrieve.TrainJob`` ``job``."""

    features: tuple[str, ...] = ()  # item features the family reads: "codes", "emb"

    @classmethod
    def train(cls, job: Any, history, targets: np.ndarray, *, codes: np.ndarray | None = None, content: np.ndarray | None = None,
              sizes: list[int] | None = None, progress: bool = True) -> Trained:
        """Train on ``history`` (the training parts, a :class:`~mmrec.retrieval.data.Sequences`), validate on
        ``targets`` ``(users,)``; ``codes`` ``(n_items, L)`` (-1: none) with their ``sizes``, ``content`` ``(n_items, E)``."""
        raise NotImplementedError

    @classmethod
    def load(cls, config: dict[str, Any], tensors: dict[str, Any], device: str = "cpu") -> Any:
        """The scorer of a run (eval mode, on ``device``) from its saved model ``config`` and ``tensors``."""
        raise NotImplementedError


__all__ = ["RETRIEVERS", "RetrieverFamily", "Trained"]
