"""SYNTHETIC: content vectors and codes let the retriever place items whose ids it never trained."""

import numpy as np
import pytest
from seq_data import planted_groups, write_lcrec

from mmrec.pipelines.retrieve import evaluate_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import save_codes
from mmrec.retrieval.data import ITEM_KEY
from mmrec.store import write_embeddings

TINY = dict(dim=32, layers=1, heads=2, max_len=10, dropout=0.0, interests=2)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    sequences, group_of = planted_groups()
    write_lcrec(root / "src", "G", sequences)
    import_sequences(root / "src", "G", root / "data")
    keys = [ITEM_KEY.format(i) for i in range(len(group_of))]
    rng = np.random.default_rng(0)
    content = np.eye(group_of.max() + 1, dtype=np.float32)[group_of] + 0.05 * rng.standard_normal((len(group_of), group_of.max() + 1))
    write_embeddings(root / "emb", {"000000": keys}, dict(zip(keys, content.astype(np.float32))), "fused", info={"model": "SYNTHETIC"})
    save_codes(root / "codes.parquet", keys, group_of[:, None], info={"method": "SYNTHETIC"})
    return root


@pytest.mark.parametrize("model", ["kuaiformer", "sasrec"])
def test_content_and_codes_rank_never_trained_items_that_ids_cannot(grouped, model):
    root = grouped
    # in-batch loss: the full softmax (the default at this size) pushes every never-seen target down, content and codes too
    job = {"model": model, "loss": "inbatch", "lr": 5e-3, "batch_size": 64, "model_config": TINY,
           "loop": {"epochs": 12, "patience": 4, "progress": False}}
    ids = train(root / "data", root / model / "ids", job)
    content = train(root / "data", root / model / "content", {**job, "emb": str(root / "emb")})
    codes = train(root / "data", root / model / "codes", {**job, "codes": str(root / "codes.parquet")})
    tail = {name: r["validation"]["tail"] for name, r in [("ids", ids), ("content", content), ("codes", codes)]}
    assert tail["ids"]["users"] == 200 and tail["ids"]["max_train_interactions"] == 5  # the rare targets: never in training
    assert tail["ids"]["recall@10"] < 0.5
    assert tail["content"]["recall@10"] > 0.9 and tail["codes"]["recall@10"] > 0.9
    assert content["train"]["items_with_content"] == codes["train"]["items_with_codes"] == 48
    assert evaluate_run(root / model / "content")["tail"] == pytest.approx(tail["content"])


def test_sasrec_with_content_and_the_transition_term_reloads_with_the_same_scores(grouped):
    """The Scientific hybrid's shape (sasrec + content + the order-2 transition term, full softmax): the run
    folder holds the content and the counts, so evaluating it again gives the training's validation figures."""
    root = grouped
    job = {"model": "sasrec", "loss": "full", "emb": str(root / "emb"), "lr": 5e-3, "batch_size": 64,
           "model_config": {**TINY, "transition": True, "transition_order": 2}, "loop": {"epochs": 3, "progress": False}}
    report = train(root / "data", root / "hybrid", job)
    assert report["train"]["items_with_content"] == 48
    assert report["validation"]["recall@10"] > 0.4  # the frequent half of the targets follows the planted group walk
    again = evaluate_run(root / "hybrid")
    assert {k: again[k] for k in ("recall@10", "ndcg@10")} == pytest.approx({k: report["validation"][k] for k in ("recall@10", "ndcg@10")})
