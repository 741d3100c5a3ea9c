"""From a :class:`RankConfig` to tensors: providers, train/test samples, the item table and schema.

:func:`build_provider` turns one ``features`` entry into a :class:`mmrec.rankers.features.FeatureProvider`
(checking its width against the config); :func:`prepare_data` reads the log, splits it by time (the
latest ``test_fraction`` of rows are the test set, the ``validation_fraction`` before them the
validation set), fits id vocabularies on the training rows only (ids never seen in training map to
the out-of-vocabulary row, as for new items in serving), builds every row's history over the whole
log, resolves every item's features once and every user's ``user_dense`` vectors once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrec.errors import InputError, UsageError
from mmrec.rankers.config import DataConfig, FeatureConfig
from mmrec.rankers.features import (
    BehaviourLog,
    ChainProvider,
    CodeProvider,
    EmbeddingProvider,
    EncoderProvider,
    FeatureProvider,
    InputSchema,
    ItemTable,
    RankSamples,
    UserVectorProvider,
    Vocab,
    histories,
    parquet_source,
    read_log,
    time_split,
)
from mmrec.rankers.features.collate import AUTHOR_ID, ITEM_ID, USER_ID


def build_provider(feature: FeatureConfig) -> FeatureProvider:
    """The provider of one ``features`` entry; a width other than ``dim`` / ``levels`` fails here."""
    if feature.kind in ("codes", "code_cross"):
        return CodeProvider(feature.path, name=feature.name, levels=feature.levels)
    if feature.kind == "user_dense":
        return UserVectorProvider(feature.path, column=feature.column, key_column=feature.key_column,
                                  key_format=feature.key_format, node_type=feature.node_type, name=feature.name,
                                  dim=feature.dim)

    def encoder() -> EncoderProvider:
        return EncoderProvider(feature.spec, parquet_source(feature.source, feature.source_column), name=feature.name,
                               cache_size=feature.cache_size, dim=feature.dim, weights=feature.weights)

    if feature.kind == "encoder":
        return encoder()
    cached = EmbeddingProvider(feature.path, column=feature.column, name=feature.name, dim=feature.dim)
    return ChainProvider([cached, encoder()], name=feature.name) if feature.spec else cached


def item_keys(item_ids: np.ndarray, pattern: str) -> list[str]:
    """Feature-file keys of log item ids through the ``item_key`` pattern."""
    try:
        return [pattern.format(i.item() if isinstance(i, np.generic) else i) for i in item_ids]
    except (ValueError, IndexError, KeyError) as err:
        raise UsageError(f"data.item_key {pattern!r} cannot format item id {item_ids[0]!r}: {err}") from None


@dataclass
class RankData:
    """Everything a training run needs, on the CPU."""

    schema: InputSchema
    train: RankSamples
    test: RankSamples
    items: ItemTable
    valid: RankSamples | None = None  # the validation rows, with data.validation_fraction
    vocabs: dict[str, list] = field(default_factory=dict)  # sparse field -> raw ids of rows 1..n
    features: dict[str, dict[str, Any]] = field(default_factory=dict)  # per provider: kind, width, misses


def prepare_data(data: DataConfig, features: list[FeatureConfig]) -> RankData:
    """Read, split and resolve; see the module docstring."""
    built = [(f, build_provider(f)) for f in features]  # width errors before the (longer) log read
    log = _read(data, data.log)
    if len(log) < 2:
        raise UsageError(f"{data.log}: need at least 2 rows, got {len(log)}")
    train_rows, test_rows = time_split(len(log), data.test_fraction)
    valid_rows = train_rows[len(train_rows) - int(round(len(log) * data.validation_fraction)):] if data.validation_fraction \
        else train_rows[:0]
    train_rows = train_rows[: len(train_rows) - len(valid_rows)]
    if not len(train_rows):
        raise UsageError(f"{data.log}: no training rows left after the test and validation splits")
    raw = _raw_ids(log)
    vocabs = {name: Vocab(values[train_rows]) for name, values in raw.items()}
    domains, domain_id = np.unique(log.domain.astype(str), return_inverse=True)
    schema, items, samples, stats = _resolve(data, built, log, vocabs, tuple(str(d) for d in domains), domain_id)
    return RankData(schema=schema, train=samples(train_rows), test=samples(test_rows), items=items,
                    valid=samples(valid_rows) if len(valid_rows) else None,
                    vocabs={name: v.values.tolist() for name, v in vocabs.items()}, features=stats)


def prepare_scoring(data: DataConfig, features: list[FeatureConfig], *, vocabs: dict[str, list], domains: Sequence[str],
                    log: str | Path | None = None, labels: bool = True) -> tuple[RankSamples, ItemTable, dict[str, Any]]:
    """The samples of a trained run's inputs: ``(samples, items, feature stats)``.

    ``vocabs`` (``vocab.json``) and ``domains`` (the schema's) are the run's, so ids map to the rows
    the model was trained with (ids it never saw: the out-of-vocabulary row). ``log`` None: the
    test rows of the run's own log (the split of training); else every row of ``log``, histories
    built over it. ``labels`` False: task columns missing from ``log`` are read as unobserved
    (predicting on impressions without outcomes); the history's positive column is still needed.
    """
    built = [(f, build_provider(f)) for f in features]
    path = data.log if log is None else log
    log_data = _read(data, path, labels=labels or log is None)
    rows = time_split(len(log_data), data.test_fraction)[1] if log is None else np.arange(len(log_data))
    known = {str(d): i for i, d in enumerate(domains)}
    names = log_data.domain.astype(str)
    unknown = sorted(set(names.tolist()) - set(known))
    if unknown:
        raise InputError(f"{path}: domain {unknown[0]!r} was not in the run's training log; domains: {', '.join(known)}",
                         field=data.domain)
    domain_id = np.array([known[d] for d in names], np.int64)
    vocab = {name: Vocab(np.asarray(values)) for name, values in vocabs.items()}
    _, items, samples, stats = _resolve(data, built, log_data, vocab, tuple(domains), domain_id)
    return samples(rows), items, stats


def _read(data: DataConfig, path: str | Path, *, labels: bool = True) -> BehaviourLog:
    """The log at ``path`` through the one log reader; ``labels`` False reads missing task columns as nulls."""
    source: Any = path
    if not labels:
        import pyarrow as pa

        from mmrec.io import open_parquet

        table = open_parquet(path, "behaviour log").read()
        if data.history.length and data.history.positive not in table.column_names:
            raise InputError(f"{path}: missing column {data.history.positive!r}, the history's positive label "
                             f"(data.history.positive); have {table.column_names}", field=data.history.positive)
        for task in data.tasks:
            if task not in table.column_names:
                table = table.append_column(task, pa.nulls(len(table), pa.int8()))
        source = table
    return read_log(source, tasks=data.tasks, user=data.user, item=data.item, author=data.author,
                    domain=data.domain, ts=data.ts, sparse=data.sparse)


def _raw_ids(log: BehaviourLog) -> dict[str, np.ndarray]:
    return {USER_ID: log.user, ITEM_ID: log.item, **({AUTHOR_ID: log.author} if log.author is not None else {}), **log.sparse}


def _resolve(data: DataConfig, built: list[tuple[FeatureConfig, FeatureProvider]], log: BehaviourLog,
             vocabs: dict[str, Vocab], domains: tuple[str, ...], domain_id: np.ndarray):
    """``(schema, items, samples(rows), feature stats)`` of ``log`` with fixed ``vocabs`` and domain ids."""
    providers = [p for f, p in built if f.kind != "user_dense"]
    user_providers = [p for f, p in built if f.kind == "user_dense"]
    cross = {f.name for f, _ in built if f.kind == "code_cross"}
    item_ids, item_row = np.unique(log.item, return_inverse=True)
    encoded = {name: vocabs[name].encode(values) for name, values in _raw_ids(log).items() if name != ITEM_ID}

    items = ItemTable.from_providers(item_keys(item_ids, data.item_key), vocabs[ITEM_ID].encode(item_ids), providers)
    positive = np.zeros(len(log), bool)
    if data.history.length:
        k = data.tasks.index(data.history.positive)
        positive = (log.labels[:, k] > 0) & log.label_mask[:, k]
    hist = histories(log.user, item_row, positive, data.history.length, pad=items.pad)
    users, group = np.unique(log.user, return_inverse=True)
    user_tables = {p.name: torch.from_numpy(p.lookup(p.keys_of(users))) for p in user_providers}  # (users, D)

    def samples(rows: np.ndarray) -> RankSamples:
        return RankSamples(
            sparse={name: torch.from_numpy(ids[rows]) for name, ids in encoded.items()},
            item_row=torch.from_numpy(item_row[rows].astype(np.int64)),
            history=torch.from_numpy(hist[rows]),
            domain=torch.from_numpy(domain_id[rows].astype(np.int64)),
            group=torch.from_numpy(group[rows].astype(np.int64)),
            labels=torch.from_numpy(log.labels[rows]),
            label_mask=torch.from_numpy(log.label_mask[rows]),
            user_dense=user_tables,
        )

    schema = InputSchema(
        tasks=tuple(data.tasks), domains=domains,
        sparse={name: len(vocabs[name]) for name in data.sparse_fields()},
        codes={p.name: tuple(p.codebook_sizes) for p in providers if p.kind == "codes" and p.name not in cross},
        dense={p.name: p.width for p in providers if p.kind == "dense"},
        history=data.history.length,
        cross={p.name: tuple(p.codebook_sizes) for p in providers if p.name in cross},
        user_dense={p.name: p.width for p in user_providers},
    )
    stats = {p.name: {"kind": "code_cross" if p.name in cross else p.kind, "width": p.width, "items": len(item_ids),
                      **p.stats.as_dict()} for p in providers}
    stats.update({p.name: {"kind": "user_dense", "width": p.width, "users": len(users), **p.stats.as_dict()}
                  for p in user_providers})
    return schema, items, samples, stats
