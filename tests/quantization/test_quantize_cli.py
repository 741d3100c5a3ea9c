import json

import numpy as np
import pytest
from PIL import Image
from quant_data import blobs, write_emb

from mmrec.cli import main
from mmrec.quantization import load_codes, load_quantizer
from mmrec.store import read_embeddings


@pytest.mark.parametrize("command", ["align", "quantize"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: mmrec {command}" in capsys.readouterr().out


def test_align_then_quantize_chain(sample_items, tmp_path, capsys):
    aligned = tmp_path / "aligned"
    assert main(["align", "--log", str(sample_items["log"]), "--emb", str(sample_items["emb"]), "--out", str(aligned),
                 "--epochs", "5", "--temperature", "0.3", "--no-learn-temperature", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((aligned / "align.json").read_text())
    assert report["temperature"] == pytest.approx(0.3) and len(report["epoch_loss"]) == 5

    codes_dir = tmp_path / "codes"
    assert main(["quantize", "--emb", str(aligned), "--out", str(codes_dir), "--levels", "2", "--codebook-size", "16"]) == 0
    line = capsys.readouterr().out
    assert "rq-kmeans: 240 items, 2 levels" in line and "unique ids" in line
    assert sorted(p.name for p in codes_dir.iterdir()) == ["codebook.safetensors", "codes.parquet", "report.json", "usage.png"]
    keys, codes, info = load_codes(codes_dir / "codes.parquet")
    assert keys == sample_items["keys"] and codes.shape == (240, 2) and info["codebook_sizes"] == [16, 16]
    _, x = read_embeddings(aligned, "fused")
    assert np.array_equal(load_quantizer(codes_dir / "codebook.safetensors").transform(x), codes)
    report = json.loads((codes_dir / "report.json").read_text())
    assert report["method"] == "rq-kmeans" and len(report["levels"]) == 2 and 0 < report["relative_reconstruction_error"] < 1
    assert Image.open(codes_dir / "usage.png").format == "PNG"


def test_quantize_methods_from_the_cli(tmp_path, capsys):
    x, _ = blobs(n_per=50, k=4, d=8)
    write_emb(tmp_path / "emb", x)
    for argv in (["--method", "balanced", "--levels", "2", "--codebook-size", "8", "--niter", "3"],
                 ["--method", "vq", "--levels", "4", "--dedup", "suffix"],
                 ["--method", "rq-vae", "--levels", "2", "--codebook-size", "8", "--epochs", "2"]):
        out = tmp_path / argv[1]
        assert main(["quantize", "--emb", str(tmp_path / "emb"), "--out", str(out), "--json", *argv]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["method"] == argv[1] and report["items"] == 200
    assert json.loads((tmp_path / "vq" / "report.json").read_text())["unique_id_pct"] == 100


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmrec: error:")
    return err[0]


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    x, _ = blobs(n_per=10, k=2, d=4)
    x[3, 1] = np.nan
    write_emb(tmp_path / "nan", x)
    assert main(["quantize", "--emb", str(tmp_path / "nan"), "--out", str(tmp_path / "o"), "--codebook-size", "4"]) == 2
    assert "of key 'item-000003' has NaN or inf" in _one_error_line(capsys)
    write_emb(tmp_path / "few", blobs(n_per=10, k=2, d=4)[0])
    assert main(["quantize", "--emb", str(tmp_path / "few"), "--out", str(tmp_path / "o")]) == 2
    assert "20 items are fewer than the codebook needs (256)" in _one_error_line(capsys)
    assert main(["quantize", "--emb", str(tmp_path / "few"), "--out", str(tmp_path / "o"), "--method", "pq"]) == 2
    assert "unknown quantizer 'pq'" in _one_error_line(capsys)
    assert main(["quantize", "--emb", str(tmp_path / "few"), "--out", str(tmp_path / "o"), "--column", "image"]) == 2
    assert "no column 'image'; vector columns: fused" in _one_error_line(capsys)
    write_emb(tmp_path / "mixed", blobs(n_per=10, k=2, d=4)[0], shard="a")
    write_emb(tmp_path / "mixed", blobs(n_per=10, k=2, d=6)[0], keys=[f"x{i}" for i in range(20)], shard="b")
    assert main(["quantize", "--emb", str(tmp_path / "mixed"), "--out", str(tmp_path / "o"), "--codebook-size", "4"]) == 1
    assert "has dim 6, other files have 4" in _one_error_line(capsys)
    assert main(["align", "--log", "x.parquet", "--out", str(tmp_path / "o")]) == 2
    assert "exactly one of --emb" in _one_error_line(capsys)
    assert main(["quantize", "--emb", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "embeddings folder not found" in _one_error_line(capsys)


def test_sample_data_cli_writes_a_behaviour_log_by_default(tmp_path, capsys):
    assert main(["sample-data", "--out", str(tmp_path / "a"), "--items", "12", "--segments", "0", "--users", "5"]) == 0
    assert "behaviour log of 5 users" in capsys.readouterr().out
    assert (tmp_path / "a" / "behaviour.parquet").exists()
    assert main(["sample-data", "--out", str(tmp_path / "b"), "--items", "12", "--segments", "0", "--users", "0", "--json"]) == 0
    assert "users" not in json.loads(capsys.readouterr().out)
    assert not (tmp_path / "b" / "behaviour.parquet").exists()
