"""A small HTTP search API over a loaded index (stdlib ``ThreadingHTTPServer``), loopback by default.

- ``GET /health`` → ``{"status": "ok", "kind", "n", "dim", "metric"}``
- ``POST /search`` with ``{"vectors": [[...], ...], "k": 10}`` or ``{"keys": ["item-1", ...], "k": 10}``
  → ``{"results": [[{"key", "row", "score"}, ...] per query], "k", "took_ms"}``

Every failure answers JSON ``{"error": "..."}`` with a 4xx code and the server keeps serving:
400 malformed JSON or a body that is not an object, 404 unknown path, 411 no Content-Length,
413 a body over ``max_body_bytes`` or a batch over ``max_batch`` queries, 422 a well-formed request
that cannot be answered (wrong dimension, non-numeric or non-finite values, unknown keys, bad ``k``).
Searches run concurrently (one thread per connection); FAISS CPU indexes and the tree are read-only
while serving.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex
from mmrec.index.exact import faiss_module
from mmrec.index.kinds import load_index


@dataclass
class ServerConfig:
    """Where to listen and what to accept."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (loopback only by default)"})
    port: int = field(default=8080, metadata={"help": "port (0 picks a free one)"})
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata={"help": "largest request body in bytes"})
    max_batch: int = field(default=256, metadata={"help": "most queries per request"})
    max_k: int = field(default=1000, metadata={"help": "largest k a request may ask for"})
    search_threads: int | None = field(default=1, metadata={"help": "FAISS threads per search; requests already run in parallel (none: leave them)"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be in 0..65535, got {self.port}")
        if self.max_body_bytes < 1 or self.max_batch < 1 or self.max_k < 1:
            raise UsageError("max_body_bytes, max_batch and max_k must be >= 1")


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    timeout = 30  # seconds a client may stall mid-request before its connection is dropped
    # headers and body leave in one segment, without waiting for Nagle: otherwise the body waits
    # for the client's delayed ACK (~40 ms per request on loopback)
    wbufsize = -1
    disable_nagle_algorithm = True
    server: "IndexServer"

    def log_message(self, format: str, *args: Any) -> None:  # no per-request lines on stderr
        return

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/health":
            self._send(404, {"error": f"no such path {self.path!r}; use GET /health or POST /search"})
            return
        index = self.server.index
        self._send(200, {"status": "ok", "kind": index.kind, "n": index.n, "dim": index.dim, "metric": index.metric})

    def do_POST(self) -> None:
        try:
            if self.path.rstrip("/") != "/search":
                self.close_connection = True  # the body is not read
                raise _Reject(404, f"no such path {self.path!r}; use POST /search")
            self._send(200, self._search(self._read_json()))
        except _Reject as err:
            self._send(err.status, {"error": str(err)})

    def _read_json(self) -> dict[str, Any]:
        limit = self.server.config.max_body_bytes
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise _Reject(411, "a Content-Length header is required")
        if int(length) > limit:
            self.close_connection = True  # the body is left unread
            raise _Reject(413, f"body of {length} bytes is over the limit of {limit}")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Reject(400, f"malformed JSON: {err}") from None
        if not isinstance(body, dict):
            raise _Reject(400, "the body must be a JSON object")
        return body

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        config, index = self.server.config, self.server.index
        k = body.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= config.max_k:
            raise _Reject(422, f"k must be an integer in 1..{config.max_k}, got {k!r}")
        if ("vectors" in body) == ("keys" in body):
            raise _Reject(422, "give exactly one of 'vectors' or 'keys'")
        batch = body.get("vectors", body.get("keys"))
        if not isinstance(batch, list) or not batch:
            raise _Reject(422, "'vectors' / 'keys' must be a non-empty list")
        if len(batch) > config.max_batch:
            raise _Reject(413, f"batch of {len(batch)} queries is over the limit of {config.max_batch}")
        start = time.perf_counter()
        try:
            if "keys" in body:
                if not all(isinstance(key, str) for key in batch):
                    raise _Reject(422, "'keys' must be a list of strings")
                results = index.neighbours(keys=batch, k=k)
            else:
                try:
                    vectors = np.asarray(batch, dtype=np.float32)
                except (TypeError, ValueError):
                    raise _Reject(422, "'vectors' must be a list of equal-length lists of numbers") from None
                if vectors.ndim != 2:
                    raise _Reject(422, f"'vectors' must be a list of lists of numbers, got shape {vectors.shape}")
                results = index.neighbours(vectors, k=k)
        except UsageError as err:
            raise _Reject(422, str(err)) from None
        return {"results": results, "k": k, "took_ms": round((time.perf_counter() - start) * 1000, 3)}


class IndexServer(ThreadingHTTPServer):
    """The HTTP server bound to one index; ``serve_forever()`` runs it, ``shutdown()`` stops it."""

    daemon_threads = True

    def __init__(self, index: BaseIndex, config: ServerConfig) -> None:
        self.index = index
        self.config = config
        try:
            super().__init__((config.host, config.port), _Handler)
        except OSError as err:
            raise UsageError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(index: BaseIndex | str | Path, config: ServerConfig | None = None, **overrides: Any) -> IndexServer:
    """A bound, not yet running server for an index object or folder (port 0: any free port)."""
    config = replace_config(build_config(ServerConfig, config, "server"), "server", **overrides)
    if not isinstance(index, BaseIndex):
        index = load_index(index)
    return IndexServer(index, config)


def serve_index(index: BaseIndex | str | Path, config: ServerConfig | dict | None = None, **overrides: Any) -> None:
    """Serve until interrupted (blocking).

    ``config.search_threads`` sets FAISS's OpenMP threads for the whole process (None leaves them):
    requests already run in parallel threads, and nested OpenMP teams on top of them oversubscribe
    the cores.
    """
    config = replace_config(build_config(ServerConfig, config, "server"), "server", **overrides)
    if config.search_threads is not None:
        faiss_module().omp_set_num_threads(config.search_threads)
    server = make_server(index, config)
    print(f"mmrec index serve: {server.index.kind} index, {server.index.n} vectors, on {server.url} (POST /search, GET /health)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
