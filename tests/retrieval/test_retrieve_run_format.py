"""Every retriever family (mmrec.retrieval.registry.RETRIEVERS) saves through mmrec.runs and loads back
with identical outputs; an older retrieve folder fails in one line until `python -m mmrec.runs convert`
rewrites it. SYNTHETIC sequences with a planted next-item rule, one epoch each."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from seq_data import planted, write_lcrec

from mmrec.config import build_config, replace_config
from mmrec.errors import InputError, UsageError
from mmrec.pipelines.retrieve import TrainJob, _item_features, evaluate_run, load_run, read_vocab, save_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import save_codes
from mmrec.retrieval import RETRIEVERS, KuaiFormer, SASRec, SASRecConfig
from mmrec.retrieval.data import ITEM_KEY, read_sequences
from mmrec.retrieval.generative_beam import CodeTrie, beam_search
from mmrec.runs import main as runs_main
from mmrec.runs import read_config
from mmrec.testing import with_cuda

TINY = {"dim": 16, "layers": 1, "heads": 2, "max_len": 6, "dropout": 0.0}
GEN = {"dim": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0, "max_len": 5, "beam": 10}
FAMILIES = {
    "sasrec": {"model": "sasrec", "model_config": TINY},
    "sasrec+transition": {"model": "sasrec", "model_config": {**TINY, "transition": True, "transition_order": 2}},
    "kuaiformer": {"model": "kuaiformer", "model_config": {**TINY, "interests": 2}, "codes": True},
    "generative": {"model": "generative", "generative": GEN, "codes": True},
    "pop": {"model": "pop"},
    "cooc": {"model": "cooc"},
}


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    """SYNTHETIC: 120 users following a next-item permutation of 40 items; each item's codes (4, 4, 3) are unique."""
    root = tmp_path_factory.mktemp("runs")
    import_sequences(write_lcrec(root / "src", "R", planted(users=120, items=40, length=7, noise=0.1)), "R", root / "data")
    n = len(read_vocab(root / "data")["items"])
    codes = np.stack([np.arange(n) % 4, (np.arange(n) // 4) % 4, np.arange(n) // 16], 1)
    save_codes(root / "codes.parquet", [ITEM_KEY.format(i) for i in range(n)], codes, info={"method": "SYNTHETIC"})
    return root / "data", root / "codes.parquet"


def _job(seq, name: str) -> TrainJob:
    data, codes = seq
    options = dict(FAMILIES[name])
    if options.pop("codes", False):
        options["codes"] = str(codes)
    return build_config(TrainJob, {**options, "batch_size": 64, "loop": {"epochs": 1, "progress": False}}, "test")


def _outputs(model, hist: np.ndarray) -> tuple[torch.Tensor, ...]:
    """What a run answers: every item's score, or a generative model's beams and their scores."""
    if hasattr(model, "score"):
        return (model.score(hist),)
    with torch.no_grad():
        return beam_search(model, CodeTrie.of(model), torch.as_tensor(hist))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_saved_run_of_each_family_loads_with_identical_outputs(seq, tmp_path, name):
    data, _ = seq
    job = _job(seq, name)
    history, targets = read_sequences(data)[0].split_last()
    codes = _item_features(job, history.n_items)[0]  # None without job.codes
    torch.manual_seed(0)
    trained = RETRIEVERS.get(job.model).train(job, history, targets, codes=codes, progress=False)
    save_run(tmp_path / "run", trained.config, {**asdict(job), "data": str(data)}, trained.model.state_dict(), read_vocab(data), {})
    loaded, config = load_run(tmp_path / "run")
    assert type(loaded) is type(trained.model) and config["kind"] == "retrieve" and config["job"]["model"] == job.model
    hist = history.padded(np.arange(len(history)), trained.config["max_len"])
    for a, b in zip(_outputs(trained.model, hist), _outputs(loaded, hist)):
        assert torch.equal(a, b)
    # the job writes the same folder: evaluated again, the saved run gives the validation it reported
    report = train(data, tmp_path / "job", job)
    assert evaluate_run(tmp_path / "job")["ndcg@10"] == pytest.approx(report["validation"]["ndcg@10"], abs=1e-9)


def test_sasrec_is_its_own_family_sharing_kuaiformers_code(seq, tmp_path):
    model, config = load_run(_saved(seq, tmp_path, "sasrec"))
    assert isinstance(model, SASRec) and isinstance(model, KuaiFormer) and model.queries is None
    assert build_config(SASRecConfig, config["model"]) == model.config and model.config.readout == "last"
    with pytest.raises(UsageError, match="readout last, 1 interest"):
        SASRecConfig(n_items=5, interests=2)
    assert SASRecConfig(n_items=5, code_sizes=(4,)).code_sizes == (4,)  # content / codes add to the id
    with pytest.raises(UsageError, match="unknown retriever 'nope'; known: cooc, generative, kuaiformer, pop, sasrec"):
        TrainJob(model="nope")


def _saved(seq, root, name):
    data, _ = seq
    train(data, root / name, _job(seq, name))
    return root / name


@pytest.mark.parametrize("name", ["sasrec+transition", "cooc"])
def test_an_older_retrieve_folder_fails_in_one_line_then_converts(seq, tmp_path, name):
    run = _saved(seq, tmp_path, name)
    before, config = load_run(run)
    # rewrite it as the previous mmrec wrote it: job, model (None for a counted one), max_len and data side by side
    old = {"job": {k: v for k, v in config["job"].items() if k != "data"}, "max_len": config["model"]["max_len"],
           "model": None if name == "cooc" else config["model"], "data": config["job"]["data"]}
    (run / "config.json").write_text(json.dumps(old))
    save_file(load_file(str(run / "model.safetensors")), str(run / "model.safetensors"), metadata={"mmrec": json.dumps({"model": name})})
    with pytest.raises(InputError) as err:
        load_run(run)
    assert "\n" not in str(err.value) and f"python -m mmrec.runs convert {run}" in str(err.value)
    assert runs_main(["convert", str(run)]) == 0 and read_config(run, kind="retrieve")["job"]["data"] == config["job"]["data"]
    after, _ = load_run(run)
    hist = read_sequences(seq[0])[0].split_last()[0].padded(np.arange(50), 6)
    assert torch.equal(before.score(hist), after.score(hist))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_resolves_its_device_through_the_one_resolver(seq, tmp_path, name):
    run = _saved(seq, tmp_path, name)
    with pytest.raises(UsageError, match="CUDA is not available"):
        load_run(run, device="cuda")
    if name not in ("pop", "cooc"):  # counted, not trained on a device
        with pytest.raises(UsageError, match="CUDA is not available"):
            train(seq[0], tmp_path / "cuda", replace_config(_job(seq, name), "test", loop={"epochs": 1, "progress": False, "device": "cuda"}))


@with_cuda
@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_run_trained_on_cuda_loads_alike_on_the_cpu(seq, tmp_path, name):
    job = replace_config(_job(seq, name), "test", loop={"epochs": 1, "progress": False, "device": "cuda"})
    report = train(seq[0], tmp_path / "run", job)
    on_cuda, config = load_run(tmp_path / "run", device="cuda")
    on_cpu, _ = load_run(tmp_path / "run")
    hist = read_sequences(seq[0])[0].split_last()[0].padded(np.arange(50), config["model"]["max_len"])
    if hasattr(on_cpu, "score"):  # beams may swap near-ties between devices: a generative run is compared by its metrics
        assert torch.allclose(on_cuda.score(hist).cpu(), on_cpu.score(hist), atol=1e-3)
    assert evaluate_run(tmp_path / "run")["ndcg@10"] == pytest.approx(report["validation"]["ndcg@10"], abs=0.02)


def test_a_runs_config_json_trains_the_same_job_again(seq, tmp_path, capsys):
    from mmrec.cli import main

    run = _saved(seq, tmp_path, "sasrec")
    assert main(["retrieve", "train", "--data", str(seq[0]), "--config", str(run / "config.json"), "--out", str(tmp_path / "again"),
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    first = json.loads((run / "metrics.json").read_text())
    assert read_config(tmp_path / "again")["job"] == read_config(run)["job"]
    assert again["validation"]["ndcg@10"] == pytest.approx(first["validation"]["ndcg@10"], abs=1e-6)
