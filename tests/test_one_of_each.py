"""One of each: one masked-softmax pooling (mmrec.layers.masked_softmax) behind every attention pool,
one writer of the emb-*.parquet schema (mmrec.store.write_emb_file)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from mmrec.crossdomain.aggregators import UserAttention
from mmrec.layers import masked_softmax, target_attention
from mmrec.store import read_embeddings, write_emb_file, write_embeddings

ROOT = Path(__file__).resolve().parents[1]


def test_masked_softmax_weighs_only_unmasked_positions_and_empty_rows_are_zero():
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, True, True], [False, False, False]])
    w = masked_softmax(scores, mask)
    torch.testing.assert_close(w[0, :2], torch.softmax(torch.tensor([1.0, 2.0]), 0))
    torch.testing.assert_close(w[1, 1:], torch.softmax(torch.tensor([-1.0, 0.0]), 0))
    assert w[0, 2] == 0 and w[1, 0] == 0 and torch.equal(w[2], torch.zeros(3))
    w[:2].sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_pools_of_every_area_are_the_one_masked_softmax():
    torch.manual_seed(0)
    q, k, mask = torch.randn(4, 8), torch.randn(4, 5, 8), torch.rand(4, 5) > 0.3
    expected = (masked_softmax((k @ q[:, :, None]).squeeze(-1) / 8**0.5, mask)[..., None] * k).sum(1)
    torch.testing.assert_close(target_attention(q, k, k, mask), expected)
    agg = UserAttention(8)
    items = torch.where(mask, torch.arange(5).expand(4, 5), -1)
    got = agg.weights(q, k, items, items >= 0)
    torch.testing.assert_close(got, masked_softmax(agg.logits(q, k, items, items >= 0), items >= 0, dim=1))
    sources = [p for p in ROOT.glob("*/*.py") if ".venv" not in p.parts] + list(ROOT.glob("*/*/*.py"))
    by_hand = [p.relative_to(ROOT).as_posix() for p in sources if ".venv" not in p.parts and p.name != "layers.py"
               and re.search(r"softmax\([^\n]*masked_fill\(~", p.read_text())]
    assert not by_hand, f"masked softmax written by hand (use mmrec.layers.masked_softmax): {by_hand}"


def test_emb_files_have_one_schema_whoever_writes_them(tmp_path):
    keys = ["a", "b", "c"]
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_emb_file(tmp_path / "x" / "emb-0.parquet", keys, {"fused": vectors}, {"fused": 4}, meta={"rows": 3}, model={})
    write_embeddings(tmp_path / "y", {"0": keys}, dict(zip(keys, vectors)), "fused", info={"rows": 3})
    a, b = (pq.read_schema(tmp_path / d / "emb-0.parquet") for d in ("x", "y"))
    assert a.types == b.types and a.names == b.names == ["key", "fused"] and set(a.metadata) == set(b.metadata)
    got_keys, got = read_embeddings(tmp_path / "x", "fused")
    assert got_keys == keys and np.array_equal(got, vectors)
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", ".git", "tests"} & set(p.relative_to(ROOT).parts)]
    by_hand = [p.relative_to(ROOT).as_posix() for p in sources if p.name != "store.py" and '"dim": json.dumps' in p.read_text()]
    assert not by_hand, f"emb schema built by hand (use mmrec.store.write_emb_file): {by_hand}"
