"""SYNTHETIC: what makes generative training cheap must not change what it computes: the per-epoch
validation sample is fixed (the same users every epoch, whatever the run's seed) and the reported figures
are on all users; a batch padded only to its longest history (length bucketing) gives the same loss as
the same batch padded to ``max_len``; the bucketed epoch still visits every sample once."""

from collections import Counter

import numpy as np
import pytest
import torch
from test_generative import SIZES, TINY, planted_codes, write_planted

from mmrec.errors import UsageError
from mmrec.pipelines.retrieve import TrainJob, evaluate_run, train
from mmrec.retrieval import generative_train
from mmrec.retrieval.data import Sequences, read_sequences
from mmrec.retrieval.generative import GenerativeConfig, GenerativeRetriever
from mmrec.retrieval.generative_train import _Windows, validation_sample


def test_subset_keeps_the_chosen_users_sequences_in_order():
    seqs = Sequences.from_lists([[1, 2], [3], [4, 5, 6], [7, 8, 9, 0]], 10)
    sub = seqs.subset(np.array([3, 0, 2]))
    assert [sub[u].tolist() for u in range(len(sub))] == [[7, 8, 9, 0], [1, 2], [4, 5, 6]] and sub.n_items == 10


def test_validation_sample_is_fixed_and_the_report_is_on_all_users(tmp_path, monkeypatch):
    write_planted(tmp_path)
    seen = []
    real = generative_train.evaluate_generative

    def recording(model, histories, targets, **kw):
        seen.append((histories.offsets.copy(), histories.items.copy(), np.array(targets)))
        return real(model, histories, targets, **kw)

    monkeypatch.setattr(generative_train, "evaluate_generative", recording)
    job = {"model": "generative", "codes": str(tmp_path / "codes.parquet"), "seed": 3, "val_users": 100, "batch_size": 128, "lr": 3e-3,
           "generative": {**TINY, "arch": "lazy-decoder"}, "loop": {"epochs": 3, "progress": False}}
    report = train(tmp_path / "data", tmp_path / "run", job)
    history, targets = read_sequences(tmp_path / "data")[0].split_last()
    sample = validation_sample(len(targets), 100)
    assert len(seen) == 4 and len(sample) == 100 and len(set(sample.tolist())) == 100
    for offsets, items, wanted in seen[:3]:  # every epoch: the same 100 users, not drawn from the run's seed 3
        assert np.array_equal(wanted, targets[sample]) and np.array_equal(offsets, history.subset(sample).offsets)
        assert np.array_equal(items, history.subset(sample).items)
    assert np.array_equal(seen[3][2], targets)  # the restored best model, once, on all users
    assert report["validation"]["users"] == len(targets) == 500 and report["train"]["val_users"] == 100
    best = report["train"]["history"][report["train"]["best_epoch"] - 1]["metric"]
    assert report["train"]["best_sampled_metrics"]["ndcg@10"] == best and report["train"]["best_sampled_metrics"]["users"] == 100
    evaluated = evaluate_run(tmp_path / "run")  # the saved run scores all users the same way
    assert evaluated["ndcg@10"] == pytest.approx(report["validation"]["ndcg@10"])
    assert validation_sample(500, 0) is None and validation_sample(500, 500) is None
    with pytest.raises(UsageError, match="val_users"):
        TrainJob(model="sasrec", val_users=100)


@pytest.mark.parametrize("arch", ["encoder-decoder", "lazy-decoder"])
def test_a_bucketed_batch_gives_the_loss_of_the_same_batch_padded_to_max_len(arch):
    sequences, codes = planted_codes(users=60, length=9)
    seqs = Sequences.from_lists(sequences, 64)
    torch.manual_seed(0)
    model = GenerativeRetriever(GenerativeConfig(n_items=64, code_sizes=SIZES, **{**TINY, "arch": arch, "max_len": 8})).eval()
    model.set_codes(codes)
    windows = _Windows(seqs, 8, np.ones(64, dtype=bool))
    batches = list(windows.epochs(32, seed=0)(0))
    widths = {b["history"].shape[1] for b in batches}
    assert min(widths) < 8  # bucketing pads a batch of short histories less than max_len
    for batch in batches:
        h = batch["history"]
        full = torch.cat([h.new_full((len(h), 8 - h.shape[1]), -1), h], 1)  # the same samples, left-padded to max_len
        bucketed, levels = model.loss(h, batch["targets"])
        padded, levels_padded = model.loss(full, batch["targets"])
        assert torch.allclose(bucketed, padded, atol=1e-5) and levels == pytest.approx(levels_padded, abs=1e-5)
    every = Counter(t for b in batches for t in b["targets"].tolist())  # one epoch: every sample once
    assert every == Counter(seqs.items[windows.ends].tolist()) and sum(every.values()) == len(windows)


def test_attn_dropout_zero_leaves_only_the_block_dropouts():
    sizes = dict(n_items=64, code_sizes=SIZES, **{**TINY, "dropout": 0.3, "decoder_layers": 2})
    history, targets = torch.randint(0, 64, (16, 5)), torch.randint(0, 64, (16,))
    codes = planted_codes(users=1)[1]
    torch.manual_seed(0)
    default = GenerativeRetriever(GenerativeConfig(**sizes))
    fast = GenerativeRetriever(GenerativeConfig(**sizes, attn_dropout=0.0))
    fast.load_state_dict(default.state_dict())  # the option adds no parameters
    for m in (default, fast):
        m.set_codes(codes)
    attn = [m for m in fast.modules() if hasattr(m, "attn_dropout")]
    assert attn and all(m.attn_dropout == 0.0 and m.dropout == 0.3 for m in attn)
    assert all(m.attn_dropout == 0.3 for m in default.modules() if hasattr(m, "attn_dropout"))  # default: dropout
    default.eval(), fast.eval()
    assert torch.equal(default.loss(history, targets)[0], fast.loss(history, targets)[0])  # eval: no dropout at all
    fast.train()
    torch.manual_seed(1)
    a = fast.loss(history, targets)[0]
    torch.manual_seed(1)
    assert torch.equal(a, fast.loss(history, targets)[0]) and not torch.equal(a, default.eval().loss(history, targets)[0])
    with pytest.raises(UsageError, match="attn_dropout"):
        GenerativeConfig(attn_dropout=1.0)
