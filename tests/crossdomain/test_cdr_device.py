"""Cross-domain models train where CDRConfig.device says (mmrec.device.resolve_device). The CUDA tests skip
cleanly without CUDA. SYNTHETIC pair (cdr_synth)."""

import numpy as np
import pytest
import torch

import mmrec.crossdomain.train as cdr_train
from mmrec.crossdomain import CDRConfig, train_model
from mmrec.crossdomain.data import Batch
from mmrec.crossdomain.files import load_data
from mmrec.errors import UsageError
from mmrec.pipelines.cdr import evaluate_run, train_cdr
from mmrec.testing import with_cuda

FAST = dict(dim=16, maxlen=6, batch_size=256, epochs=1, patience=1, lr=0.02, gnn_topk=5)


def test_the_configured_device_is_resolved_and_every_batch_and_weight_follows_it(small_pair, monkeypatch):
    asked, moved = [], set()
    real_resolve, real_to = cdr_train.resolve_device, Batch.to

    def resolve(name, **kwargs):
        asked.append(name)
        return real_resolve("cpu")  # where a GPU would be, here: the CPU

    def to(batch, device):
        moved.add(str(device))
        return real_to(batch, device)

    monkeypatch.setattr(cdr_train, "resolve_device", resolve)
    monkeypatch.setattr(Batch, "to", to)
    model, report = train_model(load_data(small_pair, "aa_bb"), CDRConfig(model="farm", device="cuda:3", **FAST))
    assert asked == ["cuda:3"] and moved == {"cpu"} and report["epochs_run"] == 1
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA")
def test_cuda_asked_where_there_is_none_fails_before_training(small_pair):
    with pytest.raises(UsageError, match="CUDA is not available"):
        train_model(load_data(small_pair, "aa_bb"), CDRConfig(model="unicdr", device="cuda", **FAST))


def test_auto_trains_on_cuda_when_present_else_on_the_cpu(small_pair):
    model, _ = train_model(load_data(small_pair, "aa_bb"), CDRConfig(model="single-domain", **FAST))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in model.parameters()} == {expected}


@with_cuda
@pytest.mark.parametrize("name", ["unicdr", "unicdr+", "farm", "count"])
def test_a_model_trained_on_cuda_evaluates_alike_on_the_cpu(small_pair, tmp_path, name):
    report = train_cdr(small_pair, "aa_bb", out=tmp_path / "run", config=CDRConfig(model=name, device="cuda", **FAST))
    again = evaluate_run(tmp_path / "run", small_pair / "bb_aa" / "valid.txt")["metrics"]
    assert again["NDCG@10"] == pytest.approx(report["metrics"]["bb"]["NDCG@10"], abs=2e-3)
    on_cuda = evaluate_run(tmp_path / "run", small_pair / "bb_aa" / "valid.txt", device="cuda")["metrics"]
    assert np.isclose(on_cuda["MRR"], again["MRR"], atol=2e-3)
