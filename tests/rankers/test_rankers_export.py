"""Export: every registered ranker's torch.export program gives the eager scores; `mmrec rank export` on a run."""

import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml

from mmrec.cli import main
from mmrec.rankers import RANKERS, load_ranker, simulate
from mmrec.rankers.export import batch_inputs, export_onnx, export_program

NAMES = [n for n in RANKERS.names() if n != "gtr"]  # gtr takes live data: test_gtr.py
HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.parametrize("name", NAMES)
def test_exported_program_gives_the_eager_scores_at_other_batch_sizes(name, tiny_schema, batch_factory):
    torch.manual_seed(0)
    config = {"task_groups": [["click"], ["like", "follow"]]} if name == "home" else {}
    model = RANKERS.get(name)(tiny_schema, config).eval()
    program, _ = export_program(model, batch_factory(tiny_schema, 64))
    for n, seed in ((5, 1), (130, 2)):  # batch and history sizes other than the example's
        batch = batch_factory(tiny_schema, n, seed=seed)
        with torch.no_grad():
            eager = torch.sigmoid(model(batch))
        torch.testing.assert_close(program.module()(batch_inputs(batch, history=True)), eager)


def test_onnx_export_is_skipped_cleanly_without_the_packages(monkeypatch, tiny_schema, batch_factory, tmp_path):
    model = RANKERS.get("mmoe")(tiny_schema, {}).eval()
    program, _ = export_program(model, batch_factory(tiny_schema, 16))
    real = importlib.util.find_spec
    hidden = ("onnx", "onnxscript")  # neither installed, whatever this machine has
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))
    assert export_onnx(program, tmp_path / "m.onnx") == "onnx, onnxscript not installed (pip install mmrec[onnx])"
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    simulate(root, users=40, items=80, authors=10, impressions=20, seed=1)
    (root / "rank.yaml").write_text(yaml.safe_dump({
        "data": {"log": "behaviour.parquet", "tasks": ["click", "like", "follow"], "history": {"length": 5}},
        "features": [{"name": "content", "kind": "embeddings", "path": "emb", "dim": 32}],
        "model": {"name": "ple", "embedding_dim": 8, "expert": [16], "tower": [8]},
        "optim": {"epochs": 1, "batch_size": 256, "threads": 1}, "out": "run"}))
    assert main(["rank", "train", "--config", str(root / "rank.yaml")]) == 0
    return root / "run"


def test_rank_export_writes_a_program_with_the_eager_scores(run, tmp_path, capsys):
    from mmrec.pipelines.rank import load_run
    from mmrec.rankers.data import prepare_scoring
    from mmrec.rankers.features.collate import collate

    out = tmp_path / "export"
    assert main(["rank", "export", "--run", str(run), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "ple" and report["max_abs_diff"] < 1e-5 and report["check_rows"] > 64
    assert report["inputs"]["history/item_id"]["shape"] == ["history_items"] and report["inputs"]["domain"]["shape"] == ["batch"]
    assert json.loads((out / "export.json").read_text()) == report
    assert (out / "vocab.json").read_text() == (run / "vocab.json").read_text()

    program = torch.export.load(str(out / "ranker.pt2"))  # a fresh load, as a server would
    loaded = load_run(run)
    samples, items, _ = prepare_scoring(loaded.config.data, loaded.config.features, vocabs=loaded.vocabs,
                                        domains=loaded.model.schema.domains)
    batch = collate(samples, items, torch.arange(len(samples) - 3, len(samples)))
    with torch.no_grad():
        eager = torch.sigmoid(load_ranker(run)(batch))
    torch.testing.assert_close(program.module()(batch_inputs(batch, history=True)), eager)

    if not HAVE_ONNX:
        assert report["onnx"] is None and "not installed" in report["onnx_skipped"]
        return
    import onnxruntime

    assert report["onnx"] == "ranker.onnx" and report["onnx_skipped"] is None
    session = onnxruntime.InferenceSession(str(out / "ranker.onnx"))
    inputs = list(batch_inputs(batch, history=True).values())  # the graph's inputs in the mapping's order
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    np.testing.assert_allclose(got, eager.numpy(), atol=1e-5)
