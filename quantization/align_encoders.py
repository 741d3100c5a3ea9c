"""Item alignment through the encoders (the slow path of :mod:`mmrec.quantization.align`).

QARM fine-tunes the multimodal encoder itself. Here each modality's encoder is loaded trainable
(a projection head, plus LoRA adapters or unfrozen blocks when ``trainable`` asks for them, see
:mod:`mmrec.encoders.base`), the items' raw content is read from the webdataset shards and
preprocessed once, and the tower ``rows -> fuse(pool(encode(inputs)))`` is trained with the same
InfoNCE trainer as the fast path. Pairs are mined with the tower's initial vectors (the frozen
space: heads start at the identity and LoRA at zero). The aligned vectors are written in the layout
of ``mmrec extract`` under ``column``, one file per shard.

[I] Preprocessed inputs of every item are held in memory (this path is for catalogues that fit;
the fast path over cached embeddings is the one that scales); samples that fail to decode are left
out and counted, as in ``mmrec extract``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.encoders import Encoder, TrainableConfig, load_encoder
from mmrec.encoders.fusion import FUSERS
from mmrec.errors import InputError, UsageError
from mmrec.io import write_json
from mmrec.quantization.align import AlignConfig, _device, encode_rows, pair_metrics, split_pairs, train_tower
from mmrec.quantization.files import save_tensors
from mmrec.store import write_embeddings
from mmrec.quantization.pairs import PairConfig, mine_pairs, read_pairs


class EncoderTower(nn.Module):
    """Item rows -> fused, L2-normalised vectors through trainable encoders."""

    def __init__(self, encoders: dict[str, Encoder], fuse: str, prepared: list[dict[str, list[Any]]]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fuser = FUSERS.build(fuse)
        if self.fuser.out_dim({m: e.dim for m, e in encoders.items()}) is None:
            raise UsageError("alignment needs a fused vector; use fuse 'concat' or 'mean'")
        self.prepared = prepared

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        items = [self.prepared[r] for r in rows.tolist()]
        device = next(self.parameters()).device
        vectors, present = {}, {}
        for m, encoder in self.encoders.items():
            flat = [(row, x) for row, item in enumerate(items) for x in item.get(m, ())]
            sums = torch.zeros(len(items), encoder.dim, device=device)
            if flat:
                owners = torch.tensor([row for row, _ in flat], device=device)
                encoded = encoder.encode(encoder.collate([x for _, x in flat]))  # (n_inputs, d)
                sums = sums.index_add(0, owners, encoded)
            vectors[m] = F.normalize(sums, dim=-1)  # mean-pooled per item, renormalised
            present[m] = torch.tensor([m in item for item in items], device=device)
        return self.fuser(vectors, present)  # (B, d)


def _read_items(shards: list[str], encoders: dict[str, Encoder]) -> tuple[list[str], dict[str, list[str]], list[dict], list[dict]]:
    import webdataset as wds

    from mmrec.pipelines.shards import raw_inputs, shard_name

    keys, by_shard, prepared, errors = [], {}, [], []
    for path in shards:
        names = by_shard.setdefault(shard_name(path), [])
        for sample in wds.WebDataset(path, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None):
            try:
                item = {}
                for m, encoder in encoders.items():
                    raws = raw_inputs(sample, m)
                    if raws:
                        item[m] = [encoder.preprocess(r) for r in raws]
            except Exception as err:  # hostile bytes: skip the sample, as extract does
                errors.append({"key": sample["__key__"], "reason": f"{type(err).__name__}: {err}"})
                continue
            if item:
                keys.append(sample["__key__"])
                names.append(sample["__key__"])
                prepared.append(item)
    return keys, by_shard, prepared, errors


def align_encoders(log: str | Path, shards: str | list[str], out: str | Path, *, image: str | None = None,
                   text: str | None = None, audio: str | None = None, weights: dict[str, str] | None = None,
                   trainable: bool | dict | TrainableConfig = True, fuse: str = "concat", column: str = "fused",
                   config: AlignConfig | dict | None = None, pairs: PairConfig | dict | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Align trainable encoders on pairs mined from ``log``; write aligned vectors of every item to ``out``.

    ``out`` gets ``emb-X.parquet`` per shard (``key`` + ``column``), ``manifest.json``,
    ``pairs.parquet``, ``encoders.safetensors`` (the trained parameters: heads, LoRA, unfrozen
    blocks, keyed ``modality.name``) and ``align.json`` (the returned report).
    """
    from mmrec.pipelines.shards import expand_shards

    config = config if isinstance(config, AlignConfig) else AlignConfig(**(config or {}))
    pair_config = pairs if isinstance(pairs, PairConfig) else PairConfig(**(pairs or {}))
    specs = {m: s for m, s in (("image", image), ("text", text), ("audio", audio)) if s}
    if not specs:
        raise UsageError("give at least one encoder spec (image=, text=, audio=)")
    if TrainableConfig.coerce(trainable) is None:
        raise UsageError("the slow path trains the encoders: trainable must not be False")
    start = time.perf_counter()
    device = _device(config.device)
    torch.manual_seed(config.seed)
    encoders = {m: load_encoder(s, weights=(weights or {}).get(m), trainable=trainable, device=str(device))
                for m, s in specs.items()}
    keys, by_shard, prepared, errors = _read_items(expand_shards(shards), encoders)
    if len(keys) < 2:
        raise InputError(f"fewer than 2 readable items in {shards} ({len(errors)} failed)")
    tower = EncoderTower(encoders, fuse, prepared)
    before = encode_rows(tower, len(keys), batch=config.batch_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = mine_pairs(log, keys, before, out / "pairs.parquet", pair_config, progress=progress)
    train, held = split_pairs(read_pairs(out / "pairs.parquet", {k: r for r, k in enumerate(keys)}),
                              config.holdout, config.seed)
    history = train_tower(tower, train, config, progress=progress)
    after = encode_rows(tower, len(keys), batch=config.batch_size)
    info = {"aligned": True, "column": column, "encoders": {m: e.describe() for m, e in encoders.items()},
            "specs": specs, "fuse": fuse, "dim": int(after.shape[1])}
    write_embeddings(out, by_shard, dict(zip(keys, after)), column, info=info)
    trained = {f"{m}.{name}": p.detach().cpu().numpy()
               for m, e in encoders.items() for name, p in e.named_parameters() if p.requires_grad}
    save_tensors(out / "encoders.safetensors", trained, {"specs": specs, "trainable": str(trainable)})
    report = {
        "items": len(keys), "read_errors": len(errors), "pairs": counts, "train_pairs": len(train),
        "heldout_pairs": len(held), "before": pair_metrics(before, held, config.seed),
        "after": pair_metrics(after, held, config.seed), **history, "config": asdict(config),
        "pair_config": asdict(pair_config), "elapsed_s": round(time.perf_counter() - start, 3),
    }
    write_json(out / "align.json", report)
    return report
