"""Text queries to the index server (clip-retrieval's ``{"text": [...]}``), embedded by the real MiniLM
the index's vectors came from (loaded offline from the emb folder's manifest.json); a clear 422 for an
index without a text encoder. SYNTHETIC titles on two planted topics."""

from __future__ import annotations

import http.client
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

from index_data import running_server as _running  # noqa: E402

from mmrec.index.server import text_encoder_for  # noqa: E402
from mmrec.pipelines.extract import extract  # noqa: E402
from mmrec.pipelines.index import build_index  # noqa: E402

MINILM = "hf-text:all-MiniLM-L6-v2"
MUSIC = ["live guitar concert tonight", "rock band plays on stage", "jazz piano trio performs", "singer covers a pop song"]
FOOD = ["homemade noodle soup recipe", "how to bake sourdough bread", "spicy fried chicken dinner", "fresh salad with lemon"]


@pytest.fixture(scope="module")
def titles(tmp_path_factory):
    """The titles as a folder of .txt files, extracted with MiniLM (text only): ``(emb folder, root)``."""
    root = tmp_path_factory.mktemp("titles")
    for i, text in enumerate(MUSIC + FOOD):
        (root / "titles").mkdir(exist_ok=True)
        (root / "titles" / f"{'music' if i < 4 else 'food'}-{i}.txt").write_text(text)
    extract(str(root / "titles"), root / "emb", image=None, text=MINILM, audio=None, num_workers=0, progress=False)
    return root / "emb", root


def _post(srv, body):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=60)
    conn.request("POST", "/search", body=json.dumps(body).encode())
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_text_queries_find_the_planted_topic(titles):
    emb, root = titles
    index = build_index(emb, root / "index", "faiss:Flat", column="text", progress=False)
    with _running(root / "index") as srv:
        status, body = _post(srv, {"text": ["an acoustic guitar gig", "a bowl of ramen noodles"], "k": 4})
        assert status == 200, body
        music, food = ([hit["key"] for hit in hits] for hits in body["results"])
        assert all(key.startswith("music-") for key in music) and all(key.startswith("food-") for key in food)
        assert _post(srv, {"text": ["a"], "keys": ["music-0"]})[0] == 422
    encoder, _ = text_encoder_for(index)
    query = encoder.embed(["an acoustic guitar gig"]).numpy()
    assert np.allclose(index.search(query, 1)[0][0, 0], body["results"][0][0]["score"], atol=1e-5)


def test_fused_of_a_text_only_job_takes_text_and_other_indexes_get_422(titles):
    emb, root = titles
    fused = build_index(emb, root / "fused", "faiss:Flat", column="fused", progress=False)
    assert text_encoder_for(fused)[0] is not None  # concat of one modality is the text vector itself
    vectors_only = build_index(np.eye(8, 384, dtype=np.float32), None, "faiss:Flat", progress=False)
    encoder, why = text_encoder_for(vectors_only)
    assert encoder is None and "not built from text-encoder embeddings" in why
    with _running(vectors_only) as srv:
        status, body = _post(srv, {"text": ["guitar"]})
        assert status == 422 and "search it by 'vectors' or 'keys'" in body["error"]
    with _running(root / "fused", text_encoder=None) as srv:
        status, body = _post(srv, {"text": ["guitar"]})
        assert status == 422 and "--text-encoder none" in body["error"]
