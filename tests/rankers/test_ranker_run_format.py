"""A ranker saved as a run folder (mmrec.runs, kind "rank") loads back to the same scores; an older
rank folder (config in the weights' metadata) converts to it."""

from __future__ import annotations

import json
from dataclasses import asdict

import torch

from mmrec.rankers import RANKERS, load_ranker, save_checkpoint
from mmrec.runs import load_run, main


def test_rank_run_save_then_load_run_gives_identical_scores(tiny_schema, batch_factory, tmp_path):
    torch.manual_seed(0)
    model = RANKERS.get("pepnet")(tiny_schema, {"name": "pepnet", "embedding_dim": 8, "tower": [16]}).eval()
    batch = batch_factory(tiny_schema, 32)
    save_checkpoint(tmp_path / "run", model, job={"optim": {"lr": 0.01}}, vocab={"item_id": list(range(17))}, metrics={"auc": 0.5})
    config, _, vocab, metrics = load_run(tmp_path / "run", kind="rank")
    assert config["model"]["ranker"]["name"] == "pepnet" and config["job"] == {"optim": {"lr": 0.01}}
    assert vocab == {"item_id": list(range(17))} and metrics == {"auc": 0.5}
    loaded = load_ranker(tmp_path / "run")
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))
    # the layout before format 1: config and schema in the weights' metadata, the RankConfig in metrics.json
    from safetensors.torch import save_file

    old = tmp_path / "old"
    old.mkdir()
    meta = {"model": asdict(model.config), "schema": model.schema.as_dict()}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old / "model.safetensors"), metadata={"mmrec": json.dumps(meta)})
    (old / "metrics.json").write_text(json.dumps({"config": {"model": {"name": "pepnet"}}, "auc": 0.5}))
    (old / "vocab.json").write_text(json.dumps({"item_id": list(range(17))}))
    assert main(["convert", str(old)]) == 0
    with torch.no_grad():
        assert torch.equal(load_ranker(old)(batch), model(batch))
