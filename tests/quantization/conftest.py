import json

import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample_items(tmp_path_factory):
    """SYNTHETIC sample items with a behaviour log, titles embedded by the real MiniLM.

    Returns a dict: data folder, emb folder, keys, topics and hidden styles (index-aligned with keys).
    """
    from mmrec.pipelines.extract import extract
    from mmrec.store import read_embeddings
    from mmrec.synthetic.sample_data import write_sample_data

    root = tmp_path_factory.mktemp("qsample")
    write_sample_data(root / "data", items=240, segments=0, users=120, seed=0, topics=8)
    extract(str(root / "data"), root / "emb", image=None, text="hf-text:all-MiniLM-L6-v2", audio=None,
            num_workers=0, progress=False)
    keys, _ = read_embeddings(root / "emb", "fused")
    meta = json.loads((root / "data" / "sample.json").read_text())
    import webdataset as wds

    info = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(sorted(map(str, (root / "data").glob("items-*.tar"))), shardshuffle=False)}
    topics = np.array([info[k]["topic"] for k in keys])
    styles = np.array([meta["item_styles"][info[k]["item_id"]] for k in keys])
    return {"data": root / "data", "emb": root / "emb", "log": root / "data" / "behaviour.parquet",
            "keys": keys, "topics": topics, "styles": styles}
