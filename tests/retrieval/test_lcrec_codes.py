"""SYNTHETIC: a retriever trained from LC-Rec's ``.index.json`` equals one trained from the same codes in
``codes.parquet`` (same weights, same validation metrics)."""

import numpy as np
from safetensors.numpy import load_file
from seq_data import planted_groups, write_lcrec

from mmrec.pipelines.codes import export_codes
from mmrec.pipelines.retrieve import train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import save_codes


def test_retriever_from_index_json_equals_retriever_from_parquet(tmp_path):
    sequences, group_of = planted_groups(users=60)
    write_lcrec(tmp_path / "src", "G", sequences)
    import_sequences(tmp_path / "src", "G", tmp_path / "data")
    keys = [f"item-{i:06d}" for i in range(len(group_of))]
    save_codes(tmp_path / "codes.parquet", keys, np.stack([group_of, np.arange(len(group_of)) % 3], axis=1), info={"method": "SYNTHETIC"})
    export_codes(tmp_path / "codes.parquet", tmp_path / "G.index.json", data=str(tmp_path / "data"))
    (tmp_path / "G.keys.json").unlink()  # read as a file made by LC-Rec: indexes only
    job = {"model": "kuaiformer", "batch_size": 32, "model_config": dict(dim=16, layers=1, heads=2, max_len=8, dropout=0.0, interests=1),
           "loop": {"epochs": 2, "progress": False}}
    a = train(tmp_path / "data", tmp_path / "parquet", {**job, "codes": str(tmp_path / "codes.parquet")}, progress=False)
    b = train(tmp_path / "data", tmp_path / "lcrec", {**job, "codes": str(tmp_path / "G.index.json")}, progress=False)
    assert a["train"]["items_with_codes"] == b["train"]["items_with_codes"] == len(keys)
    assert a["validation"] == b["validation"]
    wa, wb = load_file(tmp_path / "parquet" / "model.safetensors"), load_file(tmp_path / "lcrec" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
