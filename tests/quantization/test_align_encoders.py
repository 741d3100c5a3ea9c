import numpy as np
import pytest

from mmrec.errors import UsageError
from mmrec.pipelines.align import align_encoders
from mmrec.quantization.files import load_tensors
from mmrec.store import read_embeddings
from mmrec.synthetic.sample_data import write_sample_data


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    write_sample_data(root, items=60, segments=0, users=40, seed=1, topics=4, shard_size=32)
    return root


def test_slow_path_trains_head_and_lora_through_the_encoder(small_sample, tmp_path):
    out = tmp_path / "aligned"
    report = align_encoders(small_sample / "behaviour.parquet", str(small_sample), out,
                            {"text": "hf-text:tiny", "trainable": {"lora_rank": 2},
                             "train": {"epochs": 3, "batch_size": 32, "lr": 5e-3}}, progress=False)
    assert report["items"] == 60 and report["train_pairs"] > 32
    assert report["epoch_loss"][-1] < report["epoch_loss"][0]
    keys, vectors = read_embeddings(out, "fused")
    assert keys == [f"item-{i:06d}" for i in range(60)]
    assert sorted(p.name for p in out.glob("emb-*.parquet")) == ["emb-items-000000.parquet", "emb-items-000001.parquet"]
    tensors, _ = load_tensors(out / "encoders.safetensors")
    lora_b = [v for k, v in tensors.items() if "lora_b" in k]
    assert lora_b and any(np.abs(v).max() > 0 for v in lora_b)  # LoRA left its zero init
    assert any(k.startswith("text.head.") for k in tensors)
    assert report["after"]["pair_cosine"] != pytest.approx(report["before"]["pair_cosine"])


def test_slow_path_needs_an_encoder_and_training(small_sample, tmp_path):
    with pytest.raises(UsageError, match="at least one encoder"):
        align_encoders(small_sample / "behaviour.parquet", str(small_sample), tmp_path)
    with pytest.raises(UsageError, match="trainable: expected a mapping"):  # the slow path always trains
        align_encoders(small_sample / "behaviour.parquet", str(small_sample), tmp_path, text="hf-text:tiny", trainable=False)
