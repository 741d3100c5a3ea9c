"""Every cross-domain family saves through mmrec.runs (kind cdr) and loads back with identical outputs; an
older cdr folder (config.json + data.json) fails in one line until `python -m mmrec.runs convert`
rewrites it. SYNTHETIC pair with planted tastes (cdr_synth), one epoch each."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from mmrec.crossdomain import CDRConfig, HeldoutEvaluator, domain_histories, train_model
from mmrec.crossdomain.files import load_data
from mmrec.errors import InputError
from mmrec.pipelines.cdr import evaluate_run, load_run, save_run, user_vectors
from mmrec.runs import main as runs_main
from mmrec.runs import read_config

FAST = dict(dim=16, maxlen=6, batch_size=256, epochs=1, patience=1, lr=0.02, gnn_topk=5)


def _outputs(model, config, data):
    """What a run answers: the held-out metrics of both domains and every user's vectors in each."""
    hist = domain_histories(data, config.maxlen)
    metrics = HeldoutEvaluator(data, hist, {d: data.domains[d].valid for d in range(2)}, config.eval_seed)(model)
    users = np.arange(data.n_users)
    return metrics, [user_vectors(model, config, data, d, users) for d in range(2)]


@pytest.mark.parametrize("name", ["unicdr", "unicdr+", "farm", "single-domain", "count", "item-knn"])
def test_a_saved_run_of_each_family_loads_with_identical_outputs(small_pair, tmp_path, name):
    data = load_data(small_pair, "aa_bb")
    config = CDRConfig(model=name, **FAST)
    model, report = train_model(data, config)
    save_run(tmp_path / "run", model, config, data, "aa_bb", report)
    loaded, loaded_config, loaded_data = load_run(tmp_path / "run")
    assert read_config(tmp_path / "run", kind="cdr")["job"]["pair"] == "aa_bb" and loaded_config == config
    assert all(np.array_equal(a.train, b.train) for a, b in zip(data.domains, loaded_data.domains))
    loaded_data.domains[0].valid, loaded_data.domains[1].valid = data.domains[0].valid, data.domains[1].valid
    metrics, vectors = _outputs(model.eval(), config, data)
    again, loaded_vectors = _outputs(loaded, loaded_config, loaded_data)
    assert again == metrics and all(np.array_equal(a, b) for a, b in zip(vectors, loaded_vectors))


def test_an_older_cdr_folder_fails_in_one_line_then_converts(small_pair, tmp_path):
    data = load_data(small_pair, "aa_bb")
    config = CDRConfig(model="unicdr", **FAST)
    model, _ = train_model(data, config)
    run = save_run(tmp_path / "run", model, config, data, "aa_bb", {"config": {}})
    before = evaluate_run(run, small_pair / "bb_aa" / "valid.txt")
    # rewrite it as the previous mmrec wrote it: the CDRConfig alone in config.json, the data in data.json
    saved = read_config(run)
    vocab = json.loads((run / "vocab.json").read_text())
    info = {"pair": "aa_bb", **saved["job"]["data"], "user_vocab": vocab["users"]}
    for dom, items in zip(info["domains"], vocab["items"]):
        dom["item_vocab"] = items
    (run / "config.json").write_text(json.dumps(saved["model"]))
    (run / "data.json").write_text(json.dumps(info))
    (run / "vocab.json").unlink()
    save_file(load_file(str(run / "model.safetensors")), str(run / "model.safetensors"))
    with pytest.raises(InputError) as err:
        load_run(run)
    assert "\n" not in str(err.value) and f"python -m mmrec.runs convert {run}" in str(err.value)
    assert runs_main(["convert", str(run)]) == 0 and not (run / "data.json").exists()
    assert evaluate_run(run, small_pair / "bb_aa" / "valid.txt") == before
