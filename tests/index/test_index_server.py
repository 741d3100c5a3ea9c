"""The HTTP search API on the real server (uvicorn on a free loopback port): answers, rejects bad
requests with 4xx and a message, keeps serving, holds 64 concurrent keep-alive clients, counts in /metrics."""

import http.client
import json
import os
import re
import socket
import threading

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")

from index_data import running_server as _running  # noqa: E402

from mmrec.index import build_index  # noqa: E402


@pytest.fixture(scope="module")
def index(topics_data):
    x, _, keys = topics_data
    return build_index(x, None, "faiss:IVF64,Flat", keys=keys, progress=False, n_queries=200)


@pytest.fixture(scope="module")
def server(index):
    with _running(index, max_batch=8, max_body_bytes=64 * 1024) as srv:
        yield srv


def _connect(srv):
    host, port = srv.server_address[:2]
    return http.client.HTTPConnection(host, port, timeout=30)


def _call(srv, method, path, body=None, headers=None, conn=None):
    own = conn is None
    conn = conn or _connect(srv)
    data = json.dumps(body).encode() if isinstance(body, dict) else body  # bytes, chunks or None
    conn.request(method, path, body=data, headers=headers or {}, encode_chunked="Transfer-Encoding" in (headers or {}))
    resp = conn.getresponse()
    raw = resp.read()
    if own:
        conn.close()
    return resp.status, json.loads(raw) if resp.getheader("content-type", "").startswith("application/json") else raw.decode()


def _metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_binds_loopback_and_reports_health(server):
    assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    status, body = _call(server, "GET", "/health")
    assert status == 200 and body == {"status": "ok", "kind": "faiss", "n": 4000, "dim": 32, "metric": "ip", "text_queries": False}


def test_search_by_vectors_and_by_keys(server, topics_data):
    x, labels, _ = topics_data
    status, body = _call(server, "POST", "/search", {"vectors": x[:3].tolist(), "k": 5})
    assert status == 200 and len(body["results"]) == 3 and body["k"] == 5
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
        (b"", 400, "malformed JSON"),
        ({"vectors": [[0.1] * 31], "k": 3}, 422, "dim 31, expected 32"),
        ({"vectors": [[0.1] * 32, [0.2] * 31]}, 422, "equal-length"),
        ({"vectors": [["a"] * 32]}, 422, "lists of numbers (vectors.0.0: Input should be a valid number)"),
        ({"vectors": [[float("nan")] * 32]}, 422, "NaN"),
        ({"vectors": [[0.1] * 32] * 9}, 413, "batch of 9"),
        ({"keys": ["item-00001", "nope"]}, 422, "unknown key"),
        ({"keys": [1]}, 422, "'keys' must be a list of strings"),
        ({"keys": ["item-00001"], "vectors": [[0.0] * 32]}, 422, "exactly one"),
        ({"keys": ["item-00001"], "k": 0}, 422, "k must be an integer in 1..1000, got 0"),
        ({"keys": ["item-00001"], "k": 1001}, 422, "k must be an integer in 1..1000, got 1001"),
        ({"keys": ["item-00001"], "k": "5"}, 422, "k must be an integer"),
        ({"keys": ["item-00001"], "vector": [[0.0] * 32]}, 422, "vector: Extra inputs are not permitted"),
        ({"keys": []}, 422, "non-empty"),
    ],
)
def test_bad_requests_get_4xx_with_a_message_and_the_server_keeps_serving(server, body, status, message):
    got, payload = _call(server, "POST", "/search", body)
    assert got == status and message in payload["error"]
    assert _call(server, "GET", "/health")[0] == 200


def test_oversized_bodies_get_413_declared_or_streamed(server):
    status, payload = _call(server, "POST", "/search", b"x" * (64 * 1024 + 1))
    assert status == 413 and "over the limit of 65536" in payload["error"]
    chunks = (b"[" * 4096 for _ in range(17))  # chunked, no Content-Length: counted while read
    status, payload = _call(server, "POST", "/search", chunks, headers={"Transfer-Encoding": "chunked"})
    assert status == 413 and "over the limit" in payload["error"]
    assert _call(server, "GET", "/health")[0] == 200


def test_unknown_path_and_method_get_json_errors(server):
    status, payload = _call(server, "POST", "/nope", {"keys": ["item-00001"]})
    assert status == 404 and "no such path '/nope'" in payload["error"]
    assert _call(server, "GET", "/nope")[0] == 404
    status, payload = _call(server, "GET", "/search")
    assert status == 405 and "GET is not allowed" in payload["error"]


def test_deep_json_gets_a_400_reply_not_a_dropped_connection(index):
    deep = b'{"vectors": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with _running(index, max_body_bytes=1024 * 1024) as srv:
        conn = _connect(srv)
        status, payload = _call(srv, "POST", "/search", deep, conn=conn)
        assert status == 400 and "deeper than 200 levels" in payload["error"]
        assert _call(srv, "GET", "/health", conn=conn)[0] == 200  # same keep-alive connection
        conn.close()


def test_64_concurrent_keep_alive_clients_get_no_reset(server, topics_data):
    x, _, _ = topics_data
    clients, rounds = 64, 5
    start = threading.Barrier(clients)
    outcomes = [None] * clients
    _, before = _call(server, "GET", "/metrics")

    def client(i):
        try:
            start.wait(timeout=30)
            conn = _connect(server)
            conn.connect()
            sock = conn.sock
            replies = [_call(server, "POST", "/search", {"vectors": x[i : i + 2].tolist(), "k": 3 + r % 2}, conn=conn) for r in range(rounds)]
            # searches of concurrent requests are batched: each still gets its own hits and its own k
            statuses = [status if [len(h) for h in body["results"]] == [3 + r % 2] * 2
                        and [h[0]["key"] for h in body["results"]] == [f"item-{i:05d}", f"item-{i + 1:05d}"] else body
                        for r, (status, body) in enumerate(replies)]
            outcomes[i] = (statuses, conn.sock is sock)  # one TCP connection for all rounds
            conn.close()
        except Exception as err:  # a reset, a refused connect or a timeout
            outcomes[i] = err

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes == [([200] * rounds, True)] * clients
    _, after = _call(server, "GET", "/metrics")
    calls = _metric(after, "mmrec_search_batch_rows_count") - _metric(before, "mmrec_search_batch_rows_count")
    assert 0 < calls < clients * rounds  # concurrent requests shared search calls


def _server_side_nodelay(conn):
    """TCP_NODELAY of the server's end of ``conn`` (the server runs in this process: find its socket by address)."""
    client = conn.sock
    want = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.fromfd(int(name), client.family, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:
            try:
                if (sock.getsockname(), sock.getpeername()) == want:
                    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            except OSError:
                continue
    raise AssertionError("the server's end of the connection was not found")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the server's socket through /proc")
def test_sequential_keep_alive_requests_do_not_wait_for_delayed_acks(server):
    # a reply held back by Nagle waits for the client's delayed ACK (~40 ms) on every keep-alive request;
    # the server's accepted sockets must have TCP_NODELAY (asyncio sets it only on IPPROTO_TCP sockets)
    conn = _connect(server)
    for _ in range(5):
        assert _call(server, "POST", "/search", {"keys": ["item-00001"], "k": 2}, conn=conn)[0] == 200
    assert _server_side_nodelay(conn) != 0
    conn.close()


def test_connections_beyond_max_connections_get_503_and_serving_resumes(index):
    with _running(index, max_connections=4) as srv:
        conns = [_connect(srv) for _ in range(8)]
        for conn in conns:
            conn.connect()
        statuses = []
        for conn in conns:
            try:
                statuses.append(_call(srv, "GET", "/health", conn=conn)[0])
            except ConnectionError as err:
                statuses.append(err)
        assert 503 in statuses and set(statuses) <= {200, 503}
        for conn in conns:
            conn.close()
        assert _call(srv, "GET", "/health")[0] == 200


def test_metrics_count_requests_and_time_them(server, topics_data):
    x, _, _ = topics_data
    status, before = _call(server, "GET", "/metrics")
    assert status == 200 and "# TYPE mmrec_http_request_duration_seconds histogram" in before
    for _ in range(3):
        assert _call(server, "POST", "/search", {"vectors": x[:2].tolist(), "k": 3})[0] == 200
    assert _call(server, "POST", "/search", {"keys": ["nope"]})[0] == 422
    _, after = _call(server, "GET", "/metrics")
    ok = dict(method="POST", path="/search", status="200")
    assert _metric(after, "mmrec_http_requests_total", **ok) - _metric(before, "mmrec_http_requests_total", **ok) == 3
    bad = dict(method="POST", path="/search", status="422")
    assert _metric(after, "mmrec_http_requests_total", **bad) - _metric(before, "mmrec_http_requests_total", **bad) == 1
    count = "mmrec_http_request_duration_seconds_count"
    assert _metric(after, count, path="/search") - _metric(before, count, path="/search") == 4
    assert _metric(after, "mmrec_search_queries_total") - _metric(before, "mmrec_search_queries_total") == 6
    assert _metric(after, "mmrec_http_requests_total", method="GET", path="/metrics", status="200") >= 1
    assert re.search(r'mmrec_http_request_duration_seconds_bucket\{le="\+Inf",path="/search"\} \d', after)


def test_openapi_documents_the_request_model(server):
    status, spec = _call(server, "GET", "/openapi.json")
    assert status == 200 and set(spec["paths"]) >= {"/search", "/health", "/metrics"}
    schema = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"vectors", "keys", "text", "k"} and schema["additionalProperties"] is False
    status, html = _call(server, "GET", "/docs")
    assert status == 200 and "swagger" in html.lower()


def test_server_is_unbound_after_shutdown(index):
    with _running(index) as srv:
        port = srv.server_address[1]
        assert _call(srv, "GET", "/health")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
