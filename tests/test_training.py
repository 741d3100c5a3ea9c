"""The shared training loop (mmrec.training): learning, early stopping, NaN guard, resume, clean errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.testing import with_cuda
from mmrec.training import LoopConfig, TrainingError, fit, shuffled_batches


def _regression(seed: int = 0):
    """SYNTHETIC: y = x @ w_true, a rule the loop must recover."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=g)
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return x, x @ w


def _setup(lr: float = 0.05):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def test_fit_learns_a_planted_rule_and_reports_per_epoch():
    x, y = _regression()
    model, opt = _setup()
    result = fit(model, opt, shuffled_batches(len(x), 32, seed=0),
                 lambda m, rows: (nn.functional.mse_loss(m(x[rows]), y[rows]), {"rows": len(rows)}),
                 config={"epochs": 20, "progress": False})
    assert result.history[-1]["loss"] < 0.01 < result.history[0]["loss"]
    assert torch.allclose(model.weight.detach(), torch.tensor([[1.0, -2.0, 0.5, 3.0]]), atol=0.05)
    assert result.samples == 20 * 256 and result.steps == 20 * 8 and result.history[0]["rows"] == 32
    assert result.stopped == "epochs" and result.device == "cpu" and result.amp is None


def test_early_stopping_restores_the_best_epoch():
    x, y = _regression()
    model, opt = _setup()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    weights = []

    def evaluate(m):
        weights.append(m.weight.detach().clone())
        return {"ndcg": next(scores)}

    result = fit(model, opt, shuffled_batches(len(x), 64, seed=0), lambda m, r: nn.functional.mse_loss(m(x[r]), y[r]),
                 config=LoopConfig(epochs=6, patience=2, progress=False), evaluate=evaluate, monitor="ndcg")
    assert result.stopped == "early_stop" and len(result.history) == 4
    assert result.best_epoch == 2 and result.best_metric == 0.5 and result.best_metrics == {"ndcg": 0.5}
    assert torch.equal(model.weight.detach(), weights[1])


def test_nan_guard_skips_bad_steps_and_stops_on_a_run_of_them():
    x, y = _regression()
    model, opt = _setup()
    calls = {"n": 0}

    def step(m, rows):
        calls["n"] += 1
        loss = nn.functional.mse_loss(m(x[rows]), y[rows])
        return loss * math.nan if calls["n"] == 3 else loss

    result = fit(model, opt, shuffled_batches(len(x), 32, seed=0), step, config={"epochs": 2, "progress": False})
    assert result.skipped_steps == 1 and result.steps == 15
    assert torch.isfinite(model.weight).all()

    model, opt = _setup()
    before = model.weight.detach().clone()
    with pytest.raises(TrainingError, match=r"non-finite for 3 steps in a row \(epoch 1, step 3\)"):
        fit(model, opt, shuffled_batches(len(x), 32, seed=0), lambda m, r: m(x[r]).sum() * math.inf,
            config={"epochs": 2, "progress": False})
    assert torch.equal(model.weight.detach(), before)  # never updated from a non-finite loss


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path):
    x, y = _regression()

    def step(m, rows):
        return nn.functional.mse_loss(m(x[rows]), y[rows])

    model, opt = _setup()
    fit(model, torch.optim.Adam(model.parameters(), lr=0.01), shuffled_batches(len(x), 32, seed=1), step,
        config={"epochs": 4, "progress": False})
    full = model.weight.detach().clone()

    ckpt = tmp_path / "loop.pt"
    model, _ = _setup()
    fit(model, torch.optim.Adam(model.parameters(), lr=0.01), shuffled_batches(len(x), 32, seed=1), step,
        config={"epochs": 2, "progress": False, "checkpoint": str(ckpt)})
    model, _ = _setup()  # a fresh process: weights and optimizer state come from the file
    result = fit(model, torch.optim.Adam(model.parameters(), lr=0.01), shuffled_batches(len(x), 32, seed=1), step,
                 config={"epochs": 4, "progress": False, "checkpoint": str(ckpt), "resume": True})
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert torch.allclose(model.weight.detach(), full, atol=1e-6)


def test_empty_data_and_bad_settings_are_one_line_errors():
    model, opt = _setup()
    with pytest.raises(TrainingError, match="no batch"):
        fit(model, opt, lambda epoch: iter(()), lambda m, b: m(b).sum(), config={"progress": False})
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        LoopConfig(epochs=0)
    with pytest.raises(UsageError, match="amp on needs CUDA"):
        fit(model, opt, lambda e: [torch.ones(2, 4)], lambda m, b: m(b).sum(), config={"amp": "on", "progress": False})


def test_config_builder_names_the_unknown_key_and_the_known_ones(tmp_path):
    with pytest.raises(UsageError, match=r"loop: unknown field 'epoch'; known: epochs, max_steps"):
        build_config(LoopConfig, {"epoch": 3}, "loop")
    with pytest.raises(UsageError, match=r"loop.epochs: expected an integer, got 'many'"):
        build_config(LoopConfig, {"epochs": "many"}, "loop")
    path = tmp_path / "loop.yaml"
    path.write_text("epochs: 3\npatience: 1\n")
    assert build_config(LoopConfig, path, "loop") == LoopConfig(epochs=3, patience=1)
    path.write_text("- not a mapping\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        build_config(LoopConfig, path, "loop")
    assert replace_config(LoopConfig(), "loop", epochs=2).epochs == 2
    with pytest.raises(UsageError, match="unknown field 'nope'"):
        replace_config(LoopConfig(), "loop", nope=1)


def test_on_epoch_sees_every_epoch_and_stop_training_ends_the_run_cleanly():
    from mmrec.training import StopTraining, epoch_callback

    x, y = _regression()
    model, opt = _setup()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    seen, ambient = [], []

    def on_epoch(epoch, metrics):
        seen.append((epoch, metrics))
        if epoch == 3:
            raise StopTraining

    with epoch_callback(lambda e, m: ambient.append(e)):
        result = fit(model, opt, shuffled_batches(len(x), 64, seed=0), lambda m, r: nn.functional.mse_loss(m(x[r]), y[r]),
                     config=LoopConfig(epochs=6, progress=False), evaluate=lambda m: {"ndcg": next(scores), "tail": {"ndcg": 1.0}},
                     monitor="ndcg", on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2, 3] and ambient == [1, 2, 3]  # the block's callback too, and no 4th epoch
    assert seen[1][1]["metric"] == 0.5 and seen[1][1]["ndcg"] == 0.5 and seen[1][1]["tail/ndcg"] == 1.0
    assert seen[0][1]["loss"] == result.history[0]["loss"]
    assert result.stopped == "callback" and len(result.history) == 3 and result.best_epoch == 2
    fit(model, opt, shuffled_batches(len(x), 64, seed=0), lambda m, r: nn.functional.mse_loss(m(x[r]), y[r]),
        config=LoopConfig(epochs=1, progress=False))
    assert ambient == [1, 2, 3]  # outside the block: not called


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA")
def test_fit_does_not_ignore_an_explicit_loop_device():
    model, opt = _setup()
    with pytest.raises(UsageError, match="loop.device cuda asked"):
        fit(model, opt, lambda e: [torch.ones(1, 4)], lambda m, b: m(b).sum(), config=LoopConfig(epochs=1, device="cuda", progress=False))
    result = fit(model, opt, lambda e: [torch.ones(1, 4)], lambda m, b: m(b).sum(), config=LoopConfig(epochs=1, device="cpu", progress=False))
    assert result.device == "cpu"


@with_cuda
def test_fit_moves_the_model_to_an_explicit_device():
    model, opt = _setup()
    fit(model, opt, lambda e: [torch.ones(1, 4)], lambda m, b: m(b.cuda()).sum(), config=LoopConfig(epochs=1, device="cuda", progress=False))
    assert model.weight.device.type == "cuda"
