"""clip-retrieval's back-end routes on ``mmrec index serve`` (``/indices-list``, ``/knn-service``,
``/metadata``): the JSON contract its ``ClipClient`` and web front read, pinned without the peer; text
and embedding queries find the planted topics (SYNTHETIC); the hostile bodies of ``/search`` get the
same JSON errors there."""

import http.client
import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")

from index_data import TopicWords, item_files  # noqa: E402
from index_data import running_server as _running  # noqa: E402

from mmrec.index import build_index  # noqa: E402

# every field ClipClient.query sends (clip_retrieval/clip_client.py), text and embedding_input set by the test
CLIP_CLIENT = {"text": None, "image": None, "image_url": None, "embedding_input": None, "deduplicate": True,
               "use_safety_model": True, "use_violence_detector": True, "indice_name": "topics", "use_mclip": False,
               "aesthetic_score": 9, "aesthetic_weight": 0.5, "modality": "image", "num_images": 5, "num_result_ids": 5}


@pytest.fixture(scope="module")
def index(topics_data):
    x, _, keys = topics_data
    return build_index(x, None, "faiss:Flat", keys=keys, progress=False, n_queries=50)


@pytest.fixture(scope="module")
def server(index, topics_data, tmp_path_factory):
    x, labels, keys = topics_data
    metadata, codes = item_files(tmp_path_factory.mktemp("items"), keys, labels)
    with _running(index, max_batch=8, max_body_bytes=64 * 1024, name="topics", metadata=str(metadata), codes=str(codes),
                  encoder=TopicWords(x, labels)) as srv:
        yield srv


def _call(srv, method, path, body=None):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.request(method, path, body=json.dumps(body).encode() if isinstance(body, (dict, list)) else body)
    resp = conn.getresponse()
    out = resp.status, resp.getheader("content-type", ""), resp.read()
    conn.close()
    return out[0], json.loads(out[2]) if out[1].startswith("application/json") else out[2]


def test_indices_list_names_the_index(server):
    assert _call(server, "GET", "/indices-list") == (200, ["topics"])


def test_text_query_as_clip_client_sends_it_finds_the_planted_topic(server, topics_data):
    _, labels, keys = topics_data
    status, hits = _call(server, "POST", "/knn-service", {**CLIP_CLIENT, "text": "pictures of topic 3"})
    assert status == 200 and 1 <= len(hits) <= 5  # deduplicate may drop some of the 5 searched, as in clip_back
    status, hits = _call(server, "POST", "/knn-service", {**CLIP_CLIENT, "text": "pictures of topic 3", "deduplicate": False})
    assert status == 200 and len(hits) == 5
    for hit in hits:
        assert {"id", "similarity", "key", "caption", "url", "codes"} <= set(hit)
        assert isinstance(hit["id"], int) and isinstance(hit["similarity"], float)
        assert keys[hit["id"]] == hit["key"] and labels[hit["id"]] == 3
        assert hit["caption"] == f"SYNTHETIC item {hit['id']} of topic 3" and hit["url"].endswith(f"/{hit['key']}.jpg")
        assert hit["codes"][0] == 3
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)


def test_embedding_query_finds_the_item_itself_first(server, topics_data):
    x, labels, _ = topics_data
    status, hits = _call(server, "POST", "/knn-service", {**CLIP_CLIENT, "embedding_input": x[10].tolist(), "num_images": 4,
                                                         "num_result_ids": 4})
    assert status == 200 and [h["id"] for h in hits][0] == 10 and len(hits) == 4
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5) and all(labels[h["id"]] == labels[10] for h in hits)
    minimal = _call(server, "POST", "/knn-service", {"embedding_input": x[10].tolist(), "deduplicate": False})  # 40 by default
    assert minimal[0] == 200 and len(minimal[1]) == 40


def test_metadata_answers_fields_codes_and_image_links(server, topics_data):
    _, labels, keys = topics_data
    status, body = _call(server, "POST", "/metadata", {"ids": [3, 100], "indice_name": "topics"})
    assert status == 200 and [b["id"] for b in body] == [3, 100]
    meta = body[0]["metadata"]
    assert meta["key"] == keys[3] and meta["caption"] == f"SYNTHETIC item 3 of topic {labels[3]}"
    assert meta["codes"] == [int(labels[3]), 3, 3] and meta["image"] == "/items/3/image"
    assert "image" not in body[1]["metadata"]  # only the first 8 items have image bytes
    status, png = _call(server, "GET", "/items/3/image")
    assert status == 200 and png.startswith(b"\x89PNG")
    assert _call(server, "GET", "/items/100/image")[0] == 404
    status, payload = _call(server, "GET", "/items/x1/image")
    assert status == 404 and payload == {"error": "no image for row 'x1'"}


def test_deduplicate_drops_near_identical_hits(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    x[1:4] = x[0] + 1e-3 * rng.standard_normal((3, 8))  # items 0-3: the same vector, nearly
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = build_index(x, None, "faiss:Flat", keys=[f"item-{i}" for i in range(40)], progress=False, n_queries=10)
    with _running(index) as srv:
        query = {"embedding_input": x[0].tolist(), "num_images": 3, "num_result_ids": 10}
        kept = [h["id"] for h in _call(srv, "POST", "/knn-service", {**query, "deduplicate": True})[1]]
        every = [h["id"] for h in _call(srv, "POST", "/knn-service", {**query, "deduplicate": False})[1]]
    assert set(every) < {0, 1, 2, 3}
    assert len(kept) == 3 and len(set(kept) & {0, 1, 2, 3}) == 1


@pytest.mark.parametrize(
    "body,knn,status,message",
    [
        (b"{not json", None, 400, "malformed JSON"),
        (b"[1, 2]", None, 400, "JSON object"),
        (b"", None, 400, "malformed JSON"),
        (b'{"vectors": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", b'{"embedding_input": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
         400, "deeper than 200 levels"),
        (b"x" * (64 * 1024 + 1), None, 413, "over the limit of 65536"),
        ({"vectors": [[0.1] * 31]}, {"embedding_input": [0.1] * 31}, 422, "dim 31, expected 32"),
        ({"vectors": [[float("nan")] * 32]}, {"embedding_input": [float("nan")] * 32}, 422, "NaN"),
        ({"vectors": [["a"] * 32]}, {"embedding_input": ["a"] * 32}, 422, "Input should be a valid number"),
        ({"keys": ["item-00001"], "vector": [0.0]}, {"text": "topic 1", "vector": [0.0]}, 422, "vector: Extra inputs are not permitted"),
        ({"keys": ["item-00001"], "k": 0}, {"text": "topic 1", "num_images": 0}, 422, "must be an integer in 1..1000, got 0"),
        ({"keys": ["item-00001"], "k": 1001}, {"text": "topic 1", "num_images": 1001}, 422, "must be an integer in 1..1000, got 1001"),
        ({"keys": ["item-00001"], "k": "5"}, {"text": "topic 1", "num_images": "5"}, 422, "must be an integer in 1..1000, got '5'"),
        ({"keys": ["item-00001"], "text": ["a"]}, {"text": "a", "embedding_input": [0.0] * 32}, 422, "give exactly one of"),
    ],
)
def test_hostile_bodies_get_the_same_json_errors_as_search(server, body, knn, status, message):
    knn = body if knn is None else knn
    for path, sent in (("/search", body), ("/knn-service", knn)):
        got, payload = _call(server, "POST", path, sent)
        assert got == status and message in payload["error"], (path, payload)
    if knn is body:  # the body is broken before any field is read: /metadata answers the same
        got, payload = _call(server, "POST", "/metadata", body)
        assert got == status and message in payload["error"]
    assert _call(server, "GET", "/health")[0] == 200


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/knn-service", {"image": "aGk="}, 422, "image queries are not supported"),
        ("/knn-service", {"text": "topic 1", "indice_name": "laion5B"}, 422, "unknown indice_name 'laion5B'"),
        ("/knn-service", {"text": "topic 1", "num_images": 5, "num_result_ids": 1001}, 422, "num_result_ids must be an integer in 1..1000"),
        ("/metadata", {"ids": [0, 4000]}, 422, "unknown id 4000"),
        ("/metadata", {"ids": ["0"]}, 422, "'ids' must be a list of integers"),
        ("/metadata", {"ids": list(range(9))}, 413, "batch of 9 ids is over the limit of 8"),
    ],
)
def test_clip_route_specific_errors(server, path, body, status, message):
    got, payload = _call(server, "POST", path, body)
    assert got == status and message in payload["error"]


def test_cors_lets_the_origins_named_call_and_no_other(index):
    def preflight(srv, origin):
        conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
        conn.request("OPTIONS", "/knn-service", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "content-type"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.getheader("access-control-allow-origin")

    with _running(index, cors="https://rom1504.github.io") as srv:
        assert preflight(srv, "https://rom1504.github.io") == "https://rom1504.github.io"
        assert preflight(srv, "https://elsewhere.example") is None
    with _running(index) as srv:
        assert preflight(srv, "https://rom1504.github.io") is None


def test_text_queries_without_an_encoder_get_the_reason(index):
    with _running(index, text_encoder=None) as srv:
        status, payload = _call(srv, "POST", "/knn-service", {"text": "topic 1"})
    assert status == 422 and "text queries are off" in payload["error"]
