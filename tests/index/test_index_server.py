"""The HTTP search API: answers, rejects bad requests with 4xx, keeps serving."""

import http.client
import json
import threading

import pytest

from mmrec.index import build_index
from mmrec.index.server import make_server


@pytest.fixture(scope="module")
def server(topics_data):
    x, _, keys = topics_data
    index = build_index(x, None, "faiss:IVF64,Flat", keys=keys, progress=False, n_queries=200)
    srv = make_server(index, port=0, max_batch=8, max_body_bytes=64 * 1024)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _call(srv, method, path, body=None, headers=None):
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload


def test_binds_loopback_and_reports_health(server):
    assert server.server_address[0] == "127.0.0.1"
    status, body = _call(server, "GET", "/health")
    assert status == 200 and body == {"status": "ok", "kind": "faiss", "n": 4000, "dim": 32, "metric": "ip"}


def test_search_by_vectors_and_by_keys(server, topics_data):
    x, labels, _ = topics_data
    status, body = _call(server, "POST", "/search", {"vectors": x[:3].tolist(), "k": 5})
    assert status == 200 and len(body["results"]) == 3
    assert [hits[0]["key"] for hits in body["results"]] == ["item-00000", "item-00001", "item-00002"]
    status, body = _call(server, "POST", "/search", {"keys": ["item-00010"], "k": 4})
    hits = body["results"][0]
    assert status == 200 and hits[0]["key"] == "item-00010" and len(hits) == 4
    assert all(labels[h["row"]] == labels[10] for h in hits)


@pytest.mark.parametrize(
    "body,status,message",
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"vectors": [[0.1] * 31], "k": 3}, 422, "dim 31, expected 32"),
        ({"vectors": [[0.1] * 32, [0.2] * 31]}, 422, "equal-length"),
        ({"vectors": [["a"] * 32]}, 422, "numbers"),
        ({"vectors": [[float("nan")] * 32]}, 422, "NaN"),
        ({"vectors": [[0.1] * 32] * 9}, 413, "batch of 9"),
        ({"keys": ["item-00001", "nope"]}, 422, "unknown key"),
        ({"keys": ["item-00001"], "vectors": [[0.0] * 32]}, 422, "exactly one"),
        ({"keys": ["item-00001"], "k": 0}, 422, "k must be"),
        ({"keys": []}, 422, "non-empty"),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, body, status, message):
    got, payload = _call(server, "POST", "/search", body)
    assert got == status and message in payload["error"]
    assert _call(server, "GET", "/health")[0] == 200


def test_oversized_body_unknown_path_and_concurrent_clients(server, topics_data):
    x, _, _ = topics_data
    status, payload = _call(server, "POST", "/search", b"x" * (64 * 1024 + 1))
    assert status == 413 and "over the limit" in payload["error"]
    assert _call(server, "POST", "/nope", {"keys": ["item-00001"]})[0] == 404
    assert _call(server, "GET", "/nope")[0] == 404
    results = []

    def client(i):
        results.append(_call(server, "POST", "/search", {"vectors": x[i : i + 4].tolist(), "k": 3})[0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [200] * 8
