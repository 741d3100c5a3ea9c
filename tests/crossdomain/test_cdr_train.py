import json

import numpy as np
import pytest
from cdr_synth import write_pair

from mmrec.cli import main
from mmrec.crossdomain import CDRConfig
from mmrec.errors import UsageError
from mmrec.pipelines.cdr import apply_overrides, evaluate_run, export_user_features, load_run, train_cdr

FAST = dict(dim=16, maxlen=6, batch_size=128, epochs=3, patience=3, lr=0.02, gnn_topk=5)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdr_synth")
    planted = write_pair(root, users=500, items=(1200, 1300), groups=20, per_user=16, cold=50)
    return root, planted


@pytest.mark.slow
@pytest.mark.parametrize("model", ["unicdr", "unicdr+", "farm"])
def test_cross_domain_models_recover_the_planted_taste_for_cold_users(synth, model):
    root, _ = synth
    report = train_cdr(root, "aa_bb", config=CDRConfig(model=model, **FAST))
    # SYNTHETIC: a cold user's held-out items are in 1 of 20 item groups; chance HR@10 is 0.01, and
    # knowing the group (1/20 of the candidates) from the other domain alone gives about 10 / 50 = 0.2
    for target in ("aa", "bb"):
        assert report["metrics"][target]["HR@10"] > 0.08, report["metrics"]


def test_single_domain_has_nothing_for_cold_users(synth):
    import torch

    root, _ = synth
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = train_cdr(root, "aa_bb", config=CDRConfig(model="single-domain", threads=1, **{**FAST, "epochs": 2}))
        assert torch.get_num_threads() == 2  # the caller's thread count is restored
    finally:
        torch.set_num_threads(previous)
    for target in ("aa", "bb"):  # every held-out item is equally popular here: chance level
        assert report["metrics"][target]["HR@10"] < 0.05, report["metrics"]
    assert report["epochs_run"] == 2 and [h["epoch"] for h in report["history"]] == [1, 2]
    assert set(report["history"][0]["valid_ndcg10"]) == {"aa", "bb"} and "bce" in report["history"][0]["loss"]
    assert report["best_epoch"] in (1, 2) and report["stopped"] in ("epochs", "early_stop")


def test_run_folder_evaluates_again_and_exports_user_features(synth, tmp_path):
    import pyarrow.parquet as pq

    root, _ = synth
    run = tmp_path / "run"
    report = train_cdr(root, "aa_bb", out=run, targets=("aa",),
                       config=CDRConfig(model="farm", **{**FAST, "epochs": 2}))
    assert set(report["metrics"]) == {"aa"}
    for name in ("config.json", "vocab.json", "model.safetensors", "metrics.json"):
        assert (run / name).is_file()
    again = evaluate_run(run, root / "aa_bb" / "valid.txt")
    assert again["target"] == "aa"
    assert again["metrics"] == pytest.approx(report["metrics"]["aa"])
    model, config, data = load_run(run)
    assert config.model == "farm" and data.n_users == 500
    manifest = export_user_features(run, tmp_path / "users", target="aa", users=np.arange(10))
    assert manifest["users"] == 10 and manifest["dim"] == 16
    table = pq.read_table(tmp_path / "users" / "emb-users.parquet")
    assert table.column("key").to_pylist()[:2] == ["0", "1"]  # the raw user ids of the pair files
    vectors = np.asarray(table.column("fused").to_pylist())
    assert vectors.shape == (10, 16) and np.abs(vectors).sum(1).min() > 0  # cold users 0-9 get vectors too
    from mmrec.rankers.features import EmbeddingProvider

    provider = EmbeddingProvider(tmp_path / "users", column="fused", dim=16)
    assert np.allclose(provider.lookup(["3"])[0], vectors[3], atol=1e-6)
    with pytest.raises(UsageError, match="--target"):  # a file outside the pair's folders names no domain
        evaluate_run(run, _copy(root / "aa_bb" / "valid.txt", tmp_path / "valid.txt"))


def _copy(src, dst):
    dst.write_text(src.read_text())
    return dst


def test_cli_train_and_evaluate(synth, tmp_path, capsys):
    root, _ = synth
    run = tmp_path / "cli-run"
    assert main(["cdr", "train", "--data", str(root), "--pair", "aa_bb", "--model", "unicdr", "--out", str(run),
                 "--epochs", "1", "--set", "dim=16", "--set", "batch_size=128", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "unicdr" and set(report["metrics"]) == {"aa", "bb"}
    assert main(["cdr", "evaluate", "--run", str(run), "--test", str(root / "bb_aa" / "valid.txt")]) == 0
    text = capsys.readouterr().out
    assert "| bb |" in text and "NDCG@10" in text
    assert main(["cdr", "train", "--data", str(root), "--pair", "aa_bb", "--model", "unicdr", "--set", "dim"]) == 2
    assert main(["cdr", "train", "--data", str(tmp_path), "--pair", "aa_bb", "--model", "unicdr"]) == 2
    assert main(["cdr", "export", "--run", str(run), "--out", str(tmp_path / "users"), "--target", "bb", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["users"] == 500 and manifest["target"] == "bb" and manifest["dim"] == 16
    assert main(["cdr", "train", "--data", str(root), "--pair", "aa_bb", "--model", "unicdr", "--set", "nope=1"]) == 2
    assert "unknown field 'nope'; known: model, dim" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --model choices come from the registry
        main(["cdr", "train", "--data", str(root), "--pair", "aa_bb", "--model", "bert4rec"])


def test_cli_options_come_from_the_config_dataclasses(capsys):
    with pytest.raises(SystemExit):
        main(["cdr", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{count,ease,farm,item-knn,single-domain,unicdr,unicdr+}" in text
    assert "--batch-size N interactions per batch (one domain per batch) (default 1024)" in text
    assert "--gnn-cross, --no-gnn-cross" in text


def test_overrides_parse_json_and_name_unknown_keys():
    cfg = apply_overrides({"model": "unicdr+", "seed": 3}, ["lr=0.01", "aggregator=mean", "tasks=[\"a\", \"b\"]"])
    assert cfg.seed == 3 and cfg.lr == 0.01 and cfg.aggregator == "mean" and cfg.tasks == ("a", "b")
    with pytest.raises(UsageError, match="unknown field 'nope'; known: model, dim, lr"):
        apply_overrides(None, ["nope=1"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        apply_overrides(None, ["dim"])
    with pytest.raises(UsageError, match="cdr.dim: expected an integer"):
        apply_overrides(None, ["dim=wide"])
    with pytest.raises(UsageError, match="unknown field 'dims'"):
        train_cdr("unused", "aa_bb", config={"dims": 3})


def test_parquet_log_trains_the_mmoe_head_on_every_label_and_evaluates_raw_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = []
    for u in range(300):
        for domain in ("video", "live"):
            if (domain == "video" and u < 10):  # users 0-9 are cold in video
                continue
            for item in rng.choice(1500, 12, replace=False):
                rows.append((f"u{u}", f"{domain[0]}{item}", domain, 1, int(rng.random() < 0.3)))
    users, items, domains, click, like = zip(*rows)
    log = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": items, "domain": domains, "click": click, "like": like}), log)
    run = tmp_path / "run"
    report = train_cdr(log, "video_live", out=run, config=CDRConfig(model="unicdr+", tasks=("click", "like"),
                                                                     **{**FAST, "epochs": 1}))
    assert report["metrics"] == {} and report["epochs_run"] == 1
    model, config, data = load_run(run)
    assert model.head.tasks == 2 and data.tasks == ("click", "like")
    video_items = sorted({i for i, d in zip(items, domains) if d == "video"})
    test = tmp_path / "test.txt"
    test.write_text("".join(f"u{u}\t{video_items[u]}\n" for u in range(10)))
    result = evaluate_run(run, test, target="video")
    assert result["metrics"]["n"] == 10 and 0.0 <= result["metrics"]["MRR"] <= 1.0
    # exported user vectors are keyed by the log's raw user ids, ready to join a ranker's user_id
    export_user_features(run, tmp_path / "users", target="video")
    table = pq.read_table(tmp_path / "users" / "emb-users.parquet")
    assert table.column("key").to_pylist() == data.user_vocab
    assert sorted(table.column("key").to_pylist()) == sorted(set(users)) and table.num_rows == 300
    from mmrec.store import read_embeddings

    keys, vectors = read_embeddings(tmp_path / "users")
    assert keys[:3] == ["u0", "u1", "u2"] and vectors.shape == (300, 16) and np.isfinite(vectors).all()
    test.write_text("nobody\tv1\n")
    with pytest.raises(UsageError, match="known to the run"):
        evaluate_run(run, test, target="video")
