"""MFQ (MMBee): orthogonal projection, distinct query outputs, overfitting, weights file, mmrec extract --fuse mfq."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds

from mmrec.cli import main
from mmrec.encoders import load_encoder
from mmrec.encoders.fusion import FUSERS
from mmrec.encoders.mfq import MFQ, MFQConfig, load_mfq, masked_mean, orthogonal_residual, save_mfq
from mmrec.encoders.shards import raw_inputs
from mmrec.errors import UsageError
from mmrec.pipelines.extract import extract

TINY = MFQConfig(dims={"image": 8, "audio": 6, "text": 10}, width=16, heads=2, queries=3, out_dim=12)
TINY_KW = {"image": "open_clip:tiny", "text": "hf-text:tiny", "audio": "speech:tiny"}


def _batch(b=6, seed=0, dims=TINY.dims, lengths=(4, 2, 5)):
    g = torch.Generator().manual_seed(seed)
    tokens = {m: torch.randn(b, n, dims[m], generator=g) for m, n in zip(("image", "audio", "text"), lengths)}
    masks = {m: torch.ones(b, n, dtype=torch.bool) for m, n in zip(("image", "audio", "text"), lengths)}
    masks["text"] = torch.arange(lengths[2])[None, :] < torch.randint(1, lengths[2] + 1, (b,), generator=g)[:, None]
    masks["audio"][1] = False  # one segment without speech
    return tokens, masks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthogonal_residual_is_orthogonal_to_the_other_modalities_pooled_span(dtype):
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(7, n, 24, generator=g, dtype=dtype) * 3 for m, n in (("image", 4), ("audio", 3), ("text", 9))}
    masks = {m: torch.rand(7, v.shape[1], generator=g) < 0.8 for m, v in x.items()}
    masks["text"][:, 0] = True
    masks["audio"][2] = False  # absent modality: its pooled vector is zero and spans nothing
    out = orthogonal_residual(x, masks)
    pooled = {m: masked_mean(v, masks[m]) for m, v in x.items()}
    for m in x:
        for n in x:
            if n != m:
                dots = torch.einsum("bld,bd->bl", out[m], pooled[n] / pooled[n].norm(dim=-1, keepdim=True).clamp(min=1e-12))
                assert dots.abs().max() < 1e-5, (m, n)
        # the residual removed something (not the identity) and is not everything (not zero)
        assert not torch.allclose(out[m], x[m])
        assert out[m].norm() > 0.5 * x[m].norm()
    # where audio is absent, image keeps its component along nothing but text's pooled vector
    q = pooled["text"][2] / pooled["text"][2].norm()
    expected = x["image"][2] - (x["image"][2] @ q)[:, None] * q
    torch.testing.assert_close(out["image"][2], expected)


def test_queries_give_distinct_vectors_per_segment_and_per_query():
    torch.manual_seed(0)
    model = MFQ(TINY).eval()
    tokens, masks = _batch()
    z = model.query_outputs(tokens, masks)  # (B, K, w)
    assert z.shape == (6, 3, 16) and torch.isfinite(z).all()
    y = model(tokens, masks)
    assert y.shape == (6, 12)
    dist = torch.cdist(y, y)
    assert dist[~torch.eye(6, dtype=torch.bool)].min() > 1e-3  # every segment its own vector
    for b in range(6):  # the K queries pool different things
        qd = torch.cdist(z[b], z[b])
        assert qd[~torch.eye(3, dtype=torch.bool)].min() > 1e-3
    # padding is ignored: junk in masked positions changes nothing
    junk = {m: t.clone() for m, t in tokens.items()}
    junk["text"][~masks["text"]] = 100.0
    junk["audio"][1] = -50.0
    torch.testing.assert_close(model(junk, masks), y)


def test_mfq_overfits_a_batch():
    torch.manual_seed(0)
    model = MFQ(TINY)
    head = torch.nn.Linear(12, 1)
    tokens, masks = _batch(b=32, seed=3)
    labels = (torch.arange(32) % 2).float()[torch.randperm(32)]  # random labels: memorisation only
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(model(tokens, masks)).squeeze(-1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.6 and losses[-1] < 0.05


def test_mfq_checks_inputs():
    model = MFQ(TINY)
    tokens, masks = _batch()
    with pytest.raises(UsageError, match="needs tokens and masks"):
        model({k: v for k, v in tokens.items() if k != "text"}, masks)
    bad = dict(tokens, image=tokens["image"][..., :5])
    with pytest.raises(Exception, match="image tokens must be"):
        model(bad, masks)
    with pytest.raises(UsageError, match="multiple of heads"):
        MFQConfig(width=10, heads=4)


def test_weights_round_trip_and_fuser(tmp_path):
    torch.manual_seed(0)
    model = MFQ(TINY).eval()
    path = save_mfq(model, tmp_path / "mfq.safetensors", info={"trained_on": "SYNTHETIC"})
    loaded = load_mfq(path)
    tokens, masks = _batch()
    torch.testing.assert_close(loaded(tokens, masks), model(tokens, masks))
    fuser = FUSERS.build("mfq", weights=path)
    assert fuser.wants_tokens and fuser.out_dim(dict(TINY.dims)) == 12
    with pytest.raises(UsageError, match="trained for encoder dims"):
        fuser.out_dim({"image": 8, "audio": 6})
    with pytest.raises(UsageError, match="needs trained weights"):
        FUSERS.build("mfq")
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(Exception, match="not a readable safetensors"):
        load_mfq(tmp_path / "x.safetensors")


def _tiny_mfq(tmp_path):
    dims = {m: load_encoder(spec).dim for m, spec in TINY_KW.items()}
    torch.manual_seed(0)
    model = MFQ(MFQConfig(dims=dims, width=16, heads=2, queries=2, out_dim=8)).eval()
    return model, save_mfq(model, tmp_path / "mfq.safetensors")


def test_extract_fuse_mfq_on_live_segments_and_items(sample_dir, tmp_path):
    model, weights = _tiny_mfq(tmp_path)
    out = tmp_path / "emb"
    assert main(["extract", "--input", str(sample_dir / "segments-000000.tar"), "--out", str(out),
                 "--image", TINY_KW["image"], "--text", TINY_KW["text"], "--audio", TINY_KW["audio"],
                 "--fuse", "mfq", "--fusion-weights", str(weights), "--num-workers", "0", "--batch-size", "3", "--json"]) == 0
    table = pq.read_table(out / "emb-segments-000000.parquet")
    meta = json.loads(table.schema.metadata[b"mmrec"])
    assert meta["fuse"] == "mfq" and meta["fused_dim"] == 8
    fused = np.asarray(table.column("fused").to_pylist(), np.float32)
    # the same vectors by hand: every frame / comment / the speech encoded, then MFQ over the sequences
    encoders = {m: load_encoder(spec) for m, spec in TINY_KW.items()}
    samples = list(wds.WebDataset(str(sample_dir / "segments-000000.tar"), shardshuffle=False))
    assert table.column("key").to_pylist() == [s["__key__"] for s in samples]
    for first in range(0, len(samples), 3):  # encoded as extract batches them (padding inside a batch matters)
        batch = samples[first:first + 3]
        raws = {m: [raw_inputs(s, m) for s in batch] for m in encoders}
        flat = {m: encoders[m].embed([r for rs in raws[m] for r in rs]) for m in encoders}
        for j in range(len(batch)):
            tokens = {}
            for m in encoders:
                start = sum(len(rs) for rs in raws[m][:j])
                tokens[m] = flat[m][start:start + len(raws[m][j])][None]  # (1, L_m, d)
            masks = {m: torch.ones(t.shape[:2], dtype=torch.bool) for m, t in tokens.items()}
            expected = torch.nn.functional.normalize(model(tokens, masks), dim=-1)[0].detach().numpy()
            np.testing.assert_allclose(fused[first + j], expected, atol=2e-5)
    assert tokens["image"].shape[1] == 4 and tokens["text"].shape[1] >= 3  # real sequences, not pooled

    # items: each modality a length-1 sequence
    items = tmp_path / "emb-items"
    manifest = extract(str(sample_dir / "items-000000.tar"), items, **TINY_KW, fuse="mfq", fusion_weights=str(weights),
                       num_workers=0, progress=False)
    assert manifest["samples"] == 16
    item_table = pq.read_table(items / "emb-items-000000.parquet")
    got = np.asarray(item_table.column("fused").to_pylist(), np.float32)
    vectors = {m: torch.tensor(np.asarray(item_table.column(m).to_pylist(), np.float32))[:, None, :] for m in TINY_KW}
    masks = {m: torch.ones(16, 1, dtype=torch.bool) for m in TINY_KW}
    expected = torch.nn.functional.normalize(model(vectors, masks), dim=-1).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_extract_rejects_weights_for_other_fusers_and_mfq_without_weights(sample_dir, tmp_path):
    _, weights = _tiny_mfq(tmp_path)
    with pytest.raises(UsageError, match="takes no weights"):
        extract(str(sample_dir / "segments-000000.tar"), tmp_path / "a", **TINY_KW, fuse="concat", fusion_weights=str(weights))
    assert main(["extract", "--input", str(sample_dir / "segments-000000.tar"), "--out", str(tmp_path / "b"),
                 "--image", TINY_KW["image"], "--text", "none", "--audio", "none", "--fuse", "mfq"]) == 2
    assert main(["extract", "--input", str(sample_dir / "segments-000000.tar"), "--out", str(tmp_path / "c"),
                 "--image", TINY_KW["image"], "--text", "none", "--audio", "none", "--fuse", "mfq",
                 "--fusion-weights", str(weights)]) == 2  # weights trained for three modalities
