"""The HTTP search API over a loaded index: FastAPI on uvicorn, loopback by default (``mmrec[serve]``).

- ``GET /health`` → ``{"status": "ok", "kind", "n", "dim", "metric"}``
- ``POST /search`` with ``{"vectors": [[...], ...], "k": 10}``, ``{"keys": ["item-1", ...], "k": 10}`` or
  ``{"text": ["a red cat", ...], "k": 10}`` → ``{"results": [[{"key", "row", "score"}, ...] per query], "k", "took_ms"}``
- ``GET /metrics`` (Prometheus text format), ``GET /openapi.json`` and ``/docs`` (OpenAPI)
- clip-retrieval's ``GET /indices-list``, ``POST /knn-service``, ``POST /metadata``, and the search page at
  ``GET /`` (:mod:`mmrec.index.http_app`); ``metadata`` and ``codes`` name the files whose captions,
  images and codes they show (:class:`~mmrec.index.items.ItemInfo`)

Text queries, as clip-retrieval's back end takes them: when the index holds text-encoder vectors
(column ``text``, the ``text_emb`` matrices of extract's npy layout, or ``fused`` of a job whose only
encoder was text, with ``concat`` / ``mean`` fusion, which leaves the text vector unchanged), the
server loads that encoder offline from the ``manifest.json`` of the embeddings folder recorded in
``index.json`` (spec and local weights path as extract wrote them) and embeds the texts with it
(:func:`text_encoder_for`). Any other index answers text queries with 422 and the reason.

Routes, request models, error codes and metrics are :mod:`mmrec.index.http_app`. This module binds
the socket (backlog ``backlog``) and runs uvicorn on it: one event loop, at most ``max_connections``
open connections and in-flight requests (uvicorn answers 503 beyond), keep-alive connections closed
after ``keep_alive_s`` idle, searches in at most ``search_concurrency`` threads.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrec.config import build_config, replace_config
from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex
from mmrec.index.exact import faiss_module
from mmrec.index.kinds import load_index

_GRACE_S = 5.0  # how long shutdown() lets in-flight requests finish


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class ServerConfig:
    """Where to listen and what to accept."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (loopback only by default)"})
    port: int = field(default=8080, metadata={"help": "port (0 picks a free one)"})
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata={"help": "largest request body in bytes"})
    max_batch: int = field(default=256, metadata={"help": "most queries per request"})
    max_k: int = field(default=1000, metadata={"help": "largest k a request may ask for"})
    search_threads: int | None = field(default=1, metadata={"help": "FAISS threads per search; requests already run in parallel (none: leave them)"})
    search_concurrency: int | None = field(default=None, metadata={"help": "searches running at once, the rest wait (none: the usable cores)",
                                                                   "default_text": "cores"})
    max_connections: int = field(default=512, metadata={"help": "open connections and in-flight requests; more get 503"})
    backlog: int = field(default=2048, metadata={"help": "listen backlog: connections the kernel queues before they are accepted"})
    keep_alive_s: float = field(default=30.0, metadata={"help": "seconds an idle keep-alive connection stays open"})
    text_encoder: str | None = field(default="auto", metadata={
        "help": "encoder of {'text': [...]} queries: auto = the text encoder recorded in the embeddings' manifest.json, "
        "when the index holds its vectors; none = no text queries; or an encoder spec", "metavar": "SPEC"})
    metadata: str | None = field(default=None, metadata={
        "help": "item metadata: Parquet with key (caption / title, url, image bytes ...) or JSON {key: {...}}, e.g. an LC-Rec <DS>.item.json"})
    codes: str | None = field(default=None, metadata={"help": "item codes shown on the page and in /metadata: codes.parquet or <DS>.index.json"})
    name: str | None = field(default=None, metadata={"help": "index name on /indices-list (none: the index folder's name)"})
    cors: str | None = field(default=None, metadata={
        "help": "web origins whose pages may call the API (comma-separated, or *), e.g. where clip-retrieval's front is served; "
        "none: only the server's own page", "metavar": "ORIGINS"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be in 0..65535, got {self.port}")
        if min(self.max_body_bytes, self.max_batch, self.max_k, self.max_connections, self.backlog) < 1:
            raise UsageError("max_body_bytes, max_batch, max_k, max_connections and backlog must be >= 1")
        if self.search_concurrency is None:
            self.search_concurrency = _usable_cores()
        if self.search_concurrency < 1 or self.keep_alive_s <= 0:
            raise UsageError(f"search_concurrency must be >= 1 and keep_alive_s > 0, got {self.search_concurrency}, {self.keep_alive_s}")


def _manifest(index: BaseIndex) -> tuple[dict[str, Any] | None, str]:
    """The ``manifest.json`` of the embeddings the index was built from (beside them, or one folder up
    for extract's npy layout), and the folder name the vectors came from."""
    files = index.info.get("source", {}).get("files") or []
    if not files:
        return None, ""
    folder = Path(files[0]).parent
    for candidate in (folder / "manifest.json", folder.parent / "manifest.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text()), folder.name
    return None, folder.name


def text_encoder_for(index: BaseIndex, spec: str | None = "auto") -> tuple[Any, str]:
    """``(encoder, "")`` for the text queries of ``index``, or ``(None, why not)``.

    ``spec`` ``"auto"``: the text encoder of the index's embeddings (module docstring), with the local
    weights recorded in their manifest; None: no text queries; another spec: that encoder (offline
    default weights), trusted to match the index's vectors."""
    from mmrec.encoders import load_encoder

    if spec is None:
        return None, "text queries are off on this server (--text-encoder none)"
    if spec != "auto":
        encoder = load_encoder(spec, device="cpu").for_inference()
    else:
        manifest, folder = _manifest(index)
        column = index.info.get("column")
        if manifest is None or "text" not in manifest.get("encoders", {}):
            return None, (f"this index (column {column!r}) was not built from text-encoder embeddings with a manifest.json "
                          "(mmrec extract --text ...); search it by 'vectors' or 'keys'")
        encoders, fuse = manifest["encoders"], manifest.get("fuse")
        text_only = set(encoders) == {"text"} and fuse in ("concat", "mean")
        if not (folder == "text_emb" or column == "text" or (column == "fused" and text_only)):
            return None, (f"this index holds column {column!r} of {', '.join(sorted(encoders))} embeddings (fuse {fuse!r}), "
                          "not text-encoder vectors; build it with --column text to search it by 'text'")
        weights = encoders["text"].get("weights") or {}
        encoder = load_encoder(encoders["text"]["name"], weights=weights.get("path") if weights.get("kind") in ("file", "folder") else None,
                               device="cpu").for_inference()
    if encoder.modality != "text" or encoder.dim != index.dim:
        return None, f"text encoder {encoder.name} gives {encoder.modality} vectors of dim {encoder.dim}; the index has dim {index.dim}"
    return encoder, ""


def _require_serve() -> Any:
    try:
        import uvicorn

        from mmrec.index import http_app
    except ImportError as err:
        raise UsageError(f"mmrec index serve needs the 'serve' extra (pip install 'mmrec[serve]'): {err}") from None
    return uvicorn, http_app


class IndexServer:
    """The HTTP server of one index, bound when made: ``serve_forever()`` runs it (blocking, any
    thread), ``shutdown()`` stops it from another thread, ``server_close()`` releases the socket."""

    def __init__(self, index: BaseIndex, config: ServerConfig, *, name: str = "index", encoder: Any = None) -> None:
        uvicorn, http_app = _require_serve()
        from mmrec.index.items import ItemInfo

        self.index = index
        self.config = config
        why_not = ""
        if encoder is None:
            encoder, why_not = text_encoder_for(index, config.text_encoder)
        self.items = ItemInfo(index, metadata=config.metadata, codes=config.codes)
        self.app = http_app.create_app(index, config, text_encoder=encoder, no_text=why_not, items=self.items,
                                       name=config.name or name)
        try:
            family, kind, proto = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0][:3]
            # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
            # without it every reply waits for the client's delayed ACK (~40 ms on loopback)
            self.socket = socket.socket(family, kind, proto)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((config.host, config.port))
            self.socket.listen(config.backlog)  # connections queue from now on, before serving starts
        except OSError as err:
            raise UsageError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}") from None
        self.server_address = self.socket.getsockname()
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False, lifespan="on",
            limit_concurrency=config.max_connections, backlog=config.backlog,
            timeout_keep_alive=config.keep_alive_s, timeout_graceful_shutdown=_GRACE_S,
        ))
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until :meth:`shutdown` (or SIGINT / SIGTERM when run in the main thread)."""
        self._stopped.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = _GRACE_S + 5) -> None:
        """Stop serving (in-flight requests get :data:`_GRACE_S` seconds) and wait for :meth:`serve_forever` to return."""
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()


def make_server(index: BaseIndex | str | Path, config: ServerConfig | None = None, *, encoder: Any = None,
                **overrides: Any) -> IndexServer:
    """A bound, not yet running server for an index object or folder (port 0: any free port); ``encoder``
    (an object with ``embed(texts) -> (q, d) tensor``) answers text queries instead of ``config.text_encoder``'s."""
    config = replace_config(build_config(ServerConfig, config, "server"), "server", **overrides)
    name = "index"
    if not isinstance(index, BaseIndex):
        name = Path(index).resolve().name
        index = load_index(index)
    return IndexServer(index, config, name=name, encoder=encoder)


def serve_index(index: BaseIndex | str | Path, config: ServerConfig | dict | None = None, **overrides: Any) -> None:
    """Serve until interrupted (blocking).

    ``config.search_threads`` sets FAISS's OpenMP threads for the whole process (None leaves them):
    searches already run in parallel threads, and nested OpenMP teams on top of them oversubscribe
    the cores.
    """
    config = replace_config(build_config(ServerConfig, config, "server"), "server", **overrides)
    if config.search_threads is not None:
        faiss_module().omp_set_num_threads(config.search_threads)
    server = make_server(index, config)
    print(f"mmrec index serve: {server.index.kind} index, {server.index.n} vectors, on {server.url} "
          f"(search page at /, POST /search, clip-retrieval's /knn-service, GET /health, GET /metrics, docs at /docs; "
          f"{config.search_concurrency} search threads)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
