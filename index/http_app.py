"""The ASGI app of ``mmrec index serve`` (FastAPI; needs ``pip install 'mmrec[serve]'``).

Routes: ``POST /search`` (:class:`SearchRequest` → :class:`SearchResponse`), ``GET /health``,
clip-retrieval's back-end routes (``GET /indices-list``, ``POST /knn-service``, ``POST /metadata``,
below), the search page (``GET /`` and ``/static/*``, files of ``index/static/``, no build step, no
CDN; ``GET /info`` tells it what the server answers) with item thumbnails at ``GET /items/{row}/image``,
``GET /metrics`` (Prometheus text format: ``mmrec_http_requests_total{method,path,status}``,
``mmrec_http_request_duration_seconds{path}`` histogram, ``mmrec_http_requests_in_flight``,
``mmrec_search_queries_total``), ``GET /openapi.json`` and ``/docs``.

The body of ``/search`` is read as a stream and refused past ``max_body_bytes`` (a larger
Content-Length is refused before reading), then parsed and validated in one pass by pydantic-core,
whose parser stops at 200 nested levels, so a 100k-deep body costs microseconds and gets a 400.
Every failure answers JSON ``{"error": "..."}``: 400 malformed JSON, too deep, or not an object;
404 unknown path; 405 wrong method; 413 body over ``max_body_bytes`` or batch over ``max_batch``;
422 a well-formed request that cannot be answered (unknown field, wrong types, wrong dimension,
non-finite values, unknown keys, bad ``k``, text queries to an index without a text encoder).
``{"text": [...]}`` queries are embedded by the server's text encoder in a worker thread, then
searched as vectors.

clip-retrieval (``clip_back``; its ``ClipClient`` and web front): ``/indices-list`` answers ``[name]``;
``/knn-service`` takes :class:`KnnRequest` (``text`` or ``embedding_input``, ``num_images``,
``num_result_ids``, ``indice_name``, ``deduplicate``; its other fields are accepted and have no
effect, images as queries get 422) and answers ``[{"id": row, "similarity", "key", "caption", "url",
...}]``, best first, with the metadata fields of each hit when the server has metadata
(:class:`~mmrec.index.items.ItemInfo`); ``deduplicate`` drops a hit whose vector has cosine >= 0.94
with a better hit's, as clip_back does. ``/metadata`` takes ``{"ids": [row, ...]}`` and answers
``[{"id", "metadata": {"key", fields..., "codes"}}]``. Their bodies go through the same reader, parser
and limits as ``/search`` (``num_images`` and ``num_result_ids`` as ``k``, ``ids`` as a batch) and
their failures get the same JSON errors. ``cors`` (off by default) lets pages of other origins, such as
clip-retrieval's front served elsewhere, call the API.

Searches run in worker threads, at most ``search_concurrency`` at once. Requests that arrive while
those run wait, and the next free thread takes all waiting requests of the same ``k`` as one FAISS
call (up to ``_BATCH_ROWS`` query rows): a lone request is searched at once, and under load one
thread hop and one batched search serve many requests (a hop per request held by the GIL was the
largest cost under 64 clients). FAISS CPU indexes and the tree are read-only while serving.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator
from starlette.exceptions import HTTPException

from mmrec.errors import UsageError
from mmrec.index.base import BaseIndex
from mmrec.index.items import ItemInfo, image_type
from mmrec.store import check_vectors

if TYPE_CHECKING:
    from mmrec.index.server import ServerConfig

STATIC = Path(__file__).parent / "static"
_PAGE_FILES = ("app.js", "style.css")
_PATHS = ("/search", "/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/indices-list", "/knn-service", "/metadata", "/info", "/", *(f"/static/{f}" for f in _PAGE_FILES))
_IMAGE_PATH = re.compile(r"/items/\d+/image")
_DUPLICATE_COSINE = 0.94  # clip_back's deduplication threshold
_BATCH_ROWS = 1024  # most query rows one batched search takes
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SearchRequest(BaseModel):
    """One batch of queries: ``vectors``, ``keys`` of indexed items or ``text``, exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    vectors: list[list[Annotated[float, Strict()]]] | None = Field(None, description="query vectors (q, dim)")
    keys: list[str] | None = Field(None, description="keys of indexed items to search by")
    text: list[str] | None = Field(None, description="query texts, embedded by the index's text encoder")
    k: int = Field(10, ge=1, strict=True, description="neighbours per query, at most the server's max_k")

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchRequest:
        given = [q for q in (self.vectors, self.keys, self.text) if q is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'vectors', 'keys' or 'text'")
        if not given[0]:
            raise ValueError("'vectors' / 'keys' / 'text' must be a non-empty list")
        return self

    @property
    def queries(self) -> list[Any]:
        return next(q for q in (self.vectors, self.keys, self.text) if q is not None)


class KnnRequest(BaseModel):
    """clip-retrieval's ``/knn-service`` body (what its ``ClipClient`` and web front send)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="query text, embedded by the index's text encoder")
    embedding_input: list[Annotated[float, Strict()]] | None = Field(None, description="query vector (dim)")
    image: str | None = Field(None, description="not supported: 422")
    image_url: str | None = Field(None, description="not supported: 422")
    modality: Literal["image", "text"] = Field("image", description="accepted; an mmrec server holds one index")
    num_images: int = Field(40, ge=1, strict=True, description="results to answer, at most the server's max_k")
    num_result_ids: int | None = Field(None, ge=1, strict=True, description="neighbours searched before deduplication (>= num_images)")
    indice_name: str | None = Field(None, description="the index name of /indices-list")
    deduplicate: bool = Field(True, description="drop hits near-identical (cosine >= 0.94) to a better hit")
    use_mclip: bool = False
    use_safety_model: bool = False
    use_violence_detector: bool = False
    aesthetic_score: int | float | str | None = None
    aesthetic_weight: int | float | str | None = None

    @model_validator(mode="after")
    def _one_query(self) -> KnnRequest:
        if self.image is not None or self.image_url is not None:
            raise ValueError("image queries are not supported by mmrec; send 'text' or 'embedding_input'")
        if (self.text is None) == (self.embedding_input is None):
            raise ValueError("give exactly one of 'text' or 'embedding_input'")
        if self.embedding_input is not None and not self.embedding_input:
            raise ValueError("'embedding_input' must be a non-empty list")
        return self


class MetadataRequest(BaseModel):
    """clip-retrieval's ``/metadata`` body: the ``id`` (index rows) of hits."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Strict()]] = Field(description="index rows, as /knn-service answers them in 'id'")
    indice_name: str | None = None


class Hit(BaseModel):
    key: str
    row: int
    score: float


class SearchResponse(BaseModel):
    results: list[list[Hit]] = Field(description="hits per query, best first")
    k: int
    took_ms: float = Field(description="milliseconds from the checked request to its hits (embedding text queries and waiting for a search thread included)")


class Health(BaseModel):
    status: str
    kind: str
    n: int
    dim: int
    metric: str
    text_queries: bool = Field(description="whether {'text': [...]} queries are answered")


class Error(BaseModel):
    error: str


_HINTS = {"vectors": "'vectors' must be a list of lists of numbers", "keys": "'keys' must be a list of strings",
          "text": "'text' must be a list of strings", "embedding_input": "'embedding_input' must be a list of numbers",
          "ids": "'ids' must be a list of integers"}
_K_FIELDS = ("k", "num_images", "num_result_ids")


def _reject(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def _validation_message(err: ValidationError, max_k: int) -> tuple[int, str]:
    """``(status, one line)`` for pydantic's errors on a request body."""
    first = err.errors(include_url=False)[0]
    kind, loc, msg = first["type"], first["loc"], first["msg"]
    if kind == "json_invalid":
        if "recursion limit" in msg:
            return 400, "JSON nested deeper than 200 levels"
        return 400, f"malformed JSON: {msg.removeprefix('Invalid JSON: ')}"
    if kind == "model_type" and not loc:
        return 400, "the body must be a JSON object"
    if kind == "value_error" and not loc:
        return 422, msg.removeprefix("Value error, ")
    where = ".".join(str(part) for part in loc)
    if loc and loc[0] in _K_FIELDS and kind != "extra_forbidden":
        return 422, f"{loc[0]} must be an integer in 1..{max_k}, got {first.get('input')!r}"
    hint = _HINTS.get(loc[0]) if loc and kind != "extra_forbidden" else None
    if hint and loc[0] == "text" and len(loc) == 1 and kind == "string_type":
        hint = "'text' must be a string"
    return 422, f"{hint} ({where}: {msg})" if hint else f"{where}: {msg}"


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _reject(413, f"body of {length} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _reject(413, f"body of more than {limit} bytes is over the limit of {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parsed(request: Request, model: type[BaseModel], config: ServerConfig) -> Any:
    """The body of ``request`` read within ``max_body_bytes`` and validated as ``model`` in one pass; 4xx if not."""
    body = await _read_body(request, config.max_body_bytes)
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        raise _reject(*_validation_message(err, config.max_k)) from None


def _checked_k(name: str, k: int, max_k: int) -> None:
    if k > max_k:
        raise _reject(422, f"{name} must be an integer in 1..{max_k}, got {k}")


def _checked_batch(batch: int, max_batch: int, what: str = "queries") -> None:
    if batch > max_batch:
        raise _reject(413, f"batch of {batch} {what} is over the limit of {max_batch}")


def _query_vectors(index: BaseIndex, vectors: list[list[float]]) -> np.ndarray:
    """Query vectors ``(q, d)`` float32, finite, of the index's dimension; 422 if not."""
    try:
        try:
            array = np.asarray(vectors, dtype=np.float32)  # (q, d)
        except ValueError:
            raise _reject(422, "'vectors' must be a list of equal-length lists of numbers") from None
        return check_vectors(array, name="queries", dim=index.dim)
    except UsageError as err:
        raise _reject(422, str(err)) from None


def _checked(index: BaseIndex, query: SearchRequest) -> tuple[np.ndarray, bool]:
    """``(query vectors (q, d), False)`` or ``(index rows (q,), True)`` of a search by keys; 422 if unusable."""
    if query.keys is None:
        return _query_vectors(index, query.vectors), False
    try:
        return index.rows_of(query.keys), True
    except UsageError as err:
        raise _reject(422, str(err)) from None


def _distinct(index: BaseIndex, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``hits`` less those whose vector has cosine >= 0.94 with a better kept hit's (clip_back's deduplicate)."""
    if len(hits) < 2:
        return hits
    vectors = index.vectors(np.array([h["row"] for h in hits]))  # (h, d)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    kept: list[int] = []
    for i in range(len(hits)):
        if not kept or float((vectors[kept] @ vectors[i]).max()) < _DUPLICATE_COSINE:
            kept.append(i)
    return [hits[i] for i in kept]


class _Batcher:
    """Runs searches in at most ``slots`` threads; what waits meanwhile is searched together, by ``k``."""

    def __init__(self, index: BaseIndex, slots: int, metrics: _Metrics) -> None:
        self.index, self.slots, self.metrics = index, slots, metrics
        self.waiting: deque[tuple[np.ndarray, bool, int, asyncio.Future]] = deque()
        self.busy = 0

    async def search(self, queries: np.ndarray, by_rows: bool, k: int) -> list[list[dict[str, Any]]]:
        """Hits per query as ``[{"key", "row", "score"}, ...]``, best first."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((queries, by_rows, k, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self.waiting and self.busy < self.slots:
            k, batch, rows, rest = self.waiting[0][2], [], 0, deque()
            while self.waiting:
                item = self.waiting.popleft()
                if item[2] == k and (not batch or rows + len(item[0]) <= _BATCH_ROWS):
                    batch.append(item)
                    rows += len(item[0])
                else:
                    rest.append(item)
            self.waiting = rest
            self.busy += 1
            asyncio.ensure_future(self._run(batch, k))

    async def _run(self, batch: list, k: int) -> None:
        try:
            hits = await anyio.to_thread.run_sync(self._search, [(q, by_rows) for q, by_rows, _, _ in batch], k)
            start = 0
            for queries, _, _, future in batch:
                if not future.done():  # its client may have gone
                    future.set_result(hits[start : start + len(queries)])
                start += len(queries)
        except Exception as err:
            failure = _reject(422, str(err)) if isinstance(err, UsageError) else err
            for *_, future in batch:
                if not future.done():
                    future.set_exception(failure)
        finally:
            self.busy -= 1
            self._dispatch()

    def _search(self, parts: list[tuple[np.ndarray, bool]], k: int) -> list[list[dict[str, Any]]]:
        queries = np.concatenate([self.index.vectors(q) if by_rows else q for q, by_rows in parts])  # (B, d)
        self.metrics.batch_rows.observe(len(queries))
        scores, rows = self.index.search(queries, k)  # (B, k) each
        names = self.index.keys_of(rows)
        return [
            [{"key": key, "row": int(r), "score": float(s)} for key, r, s in zip(kk, rr, ss) if r >= 0]
            for kk, rr, ss in zip(names, rows, scores)
        ]


class _Metrics:
    """Prometheus counters of one app, in their own registry (two servers in a process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mmrec_http_requests", "HTTP requests answered", ("method", "path", "status"), registry=self.registry)
        self.latency = Histogram("mmrec_http_request_duration_seconds", "time from request to the end of the reply",
                                 ("path",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("mmrec_http_requests_in_flight", "requests being answered", registry=self.registry)
        self.queries = Counter("mmrec_search_queries", "query vectors or keys searched", registry=self.registry)
        self.batch_rows = Histogram("mmrec_search_batch_rows", "query rows per batched search call",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)


class _Metered:
    """ASGI middleware: counts every HTTP request by method, path and status, and times it."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]  # bounded label values
        path = path if path in _PATHS else "/items/{row}/image" if _IMAGE_PATH.fullmatch(path) else "other"
        status = 500
        start = time.perf_counter()

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def create_app(index: BaseIndex, config: ServerConfig, *, text_encoder: Any = None, no_text: str = "",
               items: ItemInfo | None = None, name: str = "index") -> FastAPI:
    """The FastAPI app answering searches over ``index`` within ``config``'s limits; ``text_encoder``
    (an :class:`~mmrec.encoders.Encoder`) embeds text queries, else they get 422 with ``no_text``;
    ``items`` gives the metadata and codes of hits; ``name`` is the index's name on ``/indices-list``."""
    metrics = _Metrics()
    batcher = _Batcher(index, config.search_concurrency, metrics)
    items = items or ItemInfo(index)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # the worker threads come from anyio's pool, 40 by default: at least one per search slot
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, config.search_concurrency)
        await anyio.to_thread.run_sync(index.rows_of, [])  # builds the key -> row table off the event loop
        yield

    app = FastAPI(title="mmrec index", version="1", lifespan=lifespan, redirect_slashes=False,
                  description=f"Nearest-neighbour search over a {index.kind} index of {index.n} vectors (dim {index.dim}, "
                  f"metric {index.metric}). Limits: body {config.max_body_bytes} bytes, {config.max_batch} queries, k <= {config.max_k}.")
    errors = {status: {"model": Error} for status in (400, 413, 422)}

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":
            message = (f"no such path {request.url.path!r}; use POST /search, GET /health, GET /metrics, the search page at /, "
                       "or clip-retrieval's GET /indices-list, POST /knn-service, POST /metadata")
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "kind": index.kind, "n": index.n, "dim": index.dim, "metric": index.metric,
                "text_queries": text_encoder is not None}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def embed(texts: list[str]) -> np.ndarray:
        if text_encoder is None:
            raise _reject(422, no_text or "this server has no text encoder")
        return await anyio.to_thread.run_sync(lambda: text_encoder.embed(texts).float().numpy())  # (q, d)

    # The body is parsed here rather than by FastAPI's json.loads: one pydantic-core pass from bytes,
    # with its nesting limit; the schema below documents it all the same.
    @app.post("/search", response_model=SearchResponse, responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": SearchRequest.model_json_schema()}}}})
    async def search(request: Request) -> Response:
        query = await _parsed(request, SearchRequest, config)
        _checked_k("k", query.k, config.max_k)
        batch = len(query.queries)
        _checked_batch(batch, config.max_batch)
        start = time.perf_counter()
        if query.text is not None:
            queries, by_rows = await embed(query.text), False
        else:
            queries, by_rows = _checked(index, query)
        results = await batcher.search(queries, by_rows, query.k)
        metrics.queries.inc(batch)
        took_ms = round((time.perf_counter() - start) * 1000, 3)
        return JSONResponse({"results": results, "k": query.k, "took_ms": took_ms})

    def check_name(indice_name: str | None) -> None:
        if indice_name not in (None, name):
            raise _reject(422, f"unknown indice_name {indice_name!r}; this server holds {name!r}")

    @app.get("/indices-list", response_model=list[str])
    async def indices_list() -> list[str]:
        return [name]

    @app.post("/knn-service", responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": KnnRequest.model_json_schema()}}}})
    async def knn_service(request: Request) -> Response:
        query = await _parsed(request, KnnRequest, config)
        _checked_k("num_images", query.num_images, config.max_k)
        searched = max(query.num_result_ids or query.num_images, query.num_images)
        _checked_k("num_result_ids", searched, config.max_k)
        check_name(query.indice_name)
        if query.text is not None:
            queries = await embed([query.text])
        else:
            queries = _query_vectors(index, [query.embedding_input])
        hits = (await batcher.search(queries, False, searched))[0]
        metrics.queries.inc(1)
        if query.deduplicate:
            hits = await anyio.to_thread.run_sync(_distinct, index, hits)
        return JSONResponse([{**items.describe(h["row"]), "id": h["row"], "similarity": h["score"], "key": h["key"]}
                             for h in hits[: query.num_images]])

    @app.post("/metadata", responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": MetadataRequest.model_json_schema()}}}})
    async def metadata(request: Request) -> Response:
        query = await _parsed(request, MetadataRequest, config)
        _checked_batch(len(query.ids), config.max_batch, "ids")
        check_name(query.indice_name)
        bad = [i for i in query.ids if not 0 <= i < index.n]
        if bad:
            raise _reject(422, f"unknown id {bad[0]}; ids are index rows 0..{index.n - 1}")
        keys = index.keys_of(np.array([query.ids]))[0] if query.ids else []
        return JSONResponse([{"id": i, "metadata": {"key": key, **items.describe(i)}} for i, key in zip(query.ids, keys)])

    @app.get("/items/{row}/image", response_class=Response)
    async def item_image(row: str) -> Response:
        data = items.images.get(int(row)) if row.isdigit() else None
        if data is None:
            raise _reject(404, f"no image for row {row!r}")
        return Response(data, media_type=image_type(data), headers={"Cache-Control": "max-age=3600"})

    @app.get("/", response_class=FileResponse, include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", response_class=FileResponse, include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in _PAGE_FILES:
            raise _reject(404, f"no such file {name!r}")
        return FileResponse(STATIC / name)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {"name": name, "kind": index.kind, "n": index.n, "dim": index.dim, "metric": index.metric, "max_k": config.max_k,
                "text_queries": text_encoder is not None, "codes": items.codes is not None, "metadata": bool(items.fields)}

    if config.cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in config.cors.split(",")], allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    app.add_middleware(_Metered, metrics=metrics)
    return app
