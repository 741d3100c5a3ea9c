"""SYNTHETIC: retrievers size their code tables from the codes file's metadata (``codebook_sizes`` of
``mmrec quantize``), not from the largest code seen; ``--max-len`` is refused for ``--model generative``."""

import json

import numpy as np
import pytest
from seq_data import planted, write_lcrec

from mmrec.config import build_config
from mmrec.errors import InputError, UsageError
from mmrec.pipelines.retrieve import TrainJob, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import codebook_sizes, save_codes
from mmrec.retrieval.data import ITEM_KEY


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    write_lcrec(root / "src", "S", planted(users=40, items=12, length=5))
    import_sequences(root / "src", "S", root / "data")
    keys = [ITEM_KEY.format(i) for i in range(12)]
    codes = np.stack([np.arange(12) % 3, np.arange(12) // 3], 1)  # largest codes 2 and 3; the codebooks hold 8 and 5
    save_codes(root / "codes.parquet", keys, codes, info={"method": "SYNTHETIC", "codebook_sizes": [8, 5]})
    return root


def test_codebook_sizes_come_from_the_metadata_else_from_the_codes():
    codes = np.array([[0, 1], [2, 3]])
    assert codebook_sizes(codes, {"codebook_sizes": [8, 5]}) == [8, 5]
    assert codebook_sizes(codes, {}) == [3, 4]
    assert codebook_sizes(codes, {"codebook_sizes": [8]}) == [3, 4]  # another level count: not this file's
    with pytest.raises(InputError, match="exceed"):
        codebook_sizes(codes, {"codebook_sizes": [2, 5]})


@pytest.mark.parametrize("model, sizes", [("kuaiformer", "model_config"), ("generative", "generative")])
def test_retrievers_read_code_sizes_from_the_codes_metadata(small, tmp_path, model, sizes):
    job = {"model": model, "codes": str(small / "codes.parquet"), "batch_size": 16, "loop": {"epochs": 1, "progress": False}}
    if model == "kuaiformer":
        job["model_config"] = {"dim": 8, "layers": 1, "heads": 1, "max_len": 4}
    else:
        job["generative"] = {"dim": 8, "heads": 1, "max_len": 4, "beam": 10}
    train(small / "data", tmp_path / "run", job)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["code_sizes"] == [8, 5]


def test_max_len_of_kuaiformer_is_refused_for_generative():
    with pytest.raises(UsageError, match="gen-max-len"):
        build_config(TrainJob, {"model": "generative", "codes": "codes.parquet", "model_config": {"max_len": 7}}, "retrieve train")
    job = build_config(TrainJob, {"model": "generative", "codes": "codes.parquet", "generative": {"max_len": 7}}, "retrieve train")
    assert job.generative.max_len == 7
