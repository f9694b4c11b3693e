"""The web application: hot routes answered straight from the service, the rest by FastAPI,
every request through the same middleware.

``ServiceApp`` speaks two public interfaces:

- **RSGI** (``__rsgi__``, Granian's interface; ``music-platform serve`` runs it): the request
  arrives parsed by Granian's Rust HTTP stack and the answer leaves with one
  ``response_bytes`` call. No ASGI scope dict, no receive/send coroutines: that is what lets
  the service reach nearly the throughput of a bare lookup on the same server.
- **ASGI** (``__call__``): test clients and any ASGI server.

On both, a request is an ``Exchange`` (``middleware.py``) that passes the middleware's
``before`` hooks, is answered -- by ``hot_get`` for the hot GET routes (user recommendations,
similar tracks, ``/health``, ``/ping``) or by the FastAPI app for everything else -- and
passes the ``after`` hooks (metrics, access log, CORS), whichever way it was answered, errors,
timeouts and oversized bodies included.

FastAPI declares every route, so ``/openapi.json``, ``/docs`` and ``/redoc`` describe the whole
API; its routes for the hot paths call the same service methods, so both paths answer byte
for byte alike (tested).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from time import perf_counter
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from music_platform.config import Settings
from music_platform.serving.limits import MAX_K
from music_platform.serving.metrics import Metrics
from music_platform.serving.middleware import (
    CLIENT_CLOSED_REQUEST,
    AccessLog,
    AccessLogMiddleware,
    CorsMiddleware,
    Exchange,
    MetricsMiddleware,
    Middleware,
    has_before_hook,
)
from music_platform.serving.service import (
    ACCESS_LOG_OFF,
    MAX_BODY_BYTES,
    MAX_URL_BYTES,
    TRACK_ID_PATTERN,
    USER_ID_PATTERN,
    RecommendationService,
    ReloadOutcome,
    ServingConfig,
    error_json,
)
from music_platform.warehouse import Warehouse

log = logging.getLogger(__name__)

USER_ROUTE = "/users/{user_id}/recommendations"
SIMILAR_ROUTE = "/tracks/{track_id}/similar"
PING_BODY = b'{"status":"ok"}'
DOCS_ASSETS = "/docs/assets"
# Route labels of the cold paths (anything else is counted as "other", keeping label sets small).
KNOWN_PATHS = frozenset(
    {
        "/",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/metrics",
        "/recommendations",
        "/admin/reload",
        "/artists",
        "/users",
        "/health",
        "/ping",
    }
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

KParam = Annotated[int, Query(ge=1, le=MAX_K, description=f"How many tracks to return (1-{MAX_K}).")]


# -- documentation models (the answers themselves are built as bytes by the service) --------
class Track(BaseModel):
    track_id: str
    track_name: str | None
    artist_id: str | None
    artist_name: str | None


class RecommendedTrack(Track):
    rank: int
    score: float
    reason: str


class UserRecommendations(BaseModel):
    user_id: str
    model_version: str | None
    fallback: bool = Field(description="true: the user is unknown and gets the popularity list")
    k: int = Field(description=f"The k asked for; the list has k items unless fewer exist (at most {MAX_K}).")
    recommendations: list[RecommendedTrack]


class SimilarTrack(Track):
    rank: int
    score: float


class SimilarTracks(BaseModel):
    track: Track
    model_version: str | None
    fallback: bool = Field(description="true: no model neighbours, popular tracks of the same genre instead")
    k: int
    similar: list[SimilarTrack]


class ColdStartRequest(BaseModel):
    artists: list[str] = Field(default_factory=list, max_length=50, description="Artist names or ids.")
    tracks: list[str] = Field(default_factory=list, max_length=50, description='Track ids, "Artist - Title" or titles.')

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"artists": ["Radiohead", "Björk"]}]}}


class MatchedArtist(BaseModel):
    query: str
    artist_id: str
    artist_name: str | None


class MatchedTrack(Track):
    query: str


class Matches(BaseModel):
    artists: list[MatchedArtist]
    tracks: list[MatchedTrack]


class Unmatched(BaseModel):
    artists: list[str]
    tracks: list[str]


class ColdStartRecommendations(BaseModel):
    model_version: str | None
    strategy: str = Field(description="model (the trained model's item features) or catalogue (warehouse only)")
    fallback: bool
    k: int
    matched: Matches
    unmatched: Unmatched
    recommendations: list[RecommendedTrack]


class Health(BaseModel):
    status: str = Field(description="ok, degraded (no published model: popularity only) or unavailable (503)")
    reason: str | None = Field(None, description="Why the status is not ok.")
    model_version: str | None
    users: int
    tracks: int
    recommendations: int
    similar_pairs: int
    preserialised: bool = Field(description="answers were serialised at load (they fit the memory budget)")
    loaded_at: str
    load_seconds: float
    cold_start: str
    reload_seconds: float
    last_check_at: str | None
    last_reload_error: str | None
    worker_pid: int = Field(description="The worker process that answered (each worker reloads on its own).")


class ErrorBody(BaseModel):
    """Every error answer of the service, whatever its status."""

    error: str = Field(description="The HTTP reason phrase.", examples=["Unprocessable Entity"])
    status: int = Field(examples=[422])
    message: str = Field(examples=[f"k must be an integer between 1 and {MAX_K}, got 50"])
    unmatched: Unmatched | None = Field(None, description="POST /recommendations: the names nothing matched.")


class Artist(BaseModel):
    artist_id: str
    artist_name: str | None
    genres: list[str]


class ArtistSearch(BaseModel):
    query: str
    artists: list[Artist]


class SampleUsers(BaseModel):
    model_version: str | None
    users: list[str]


class Ping(BaseModel):
    status: str = Field(examples=["ok"])


class ReloadAnswer(BaseModel):
    reloaded: bool
    model_version: str | None
    previous_version: str | None
    seconds: float
    error: str | None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every operation, so no operation documents FastAPI's HTTPValidationError: the
# service answers every client error with ErrorBody. "4XX" covers the ones any request can
# get (404 unknown route, 405 method, 408 body too slow, 413 body too large, 414 URL too long).
CLIENT_ERRORS: dict[int | str, dict[str, Any]] = {
    422: _error("Invalid parameter"),
    "4XX": _error("Any other client error (JSON error body)"),
    "5XX": _error("Server error (JSON error body)"),
}


def _answer(status: int, body: bytes) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def _query(request: Request) -> str:
    return request.scope["query_string"].decode("latin-1")


def build_api(service: RecommendationService, metrics: Metrics) -> FastAPI:
    """The FastAPI application: every route, the OpenAPI schema, the docs and the error format."""
    api = FastAPIOffline(
        title="music_platform recommendations",
        version="1.0",
        summary="Per-user recommendations, similar tracks and cold start from the latest published model.",
        # Swagger UI and ReDoc assets come from the fastapi-offline package, served by this
        # service: the docs work without internet. No validator badge (it calls swagger.io).
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None, "displayOperationId": True},
    )

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        return _answer(422, error_json(422, problems or "invalid request"))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return Response(
            content=error_json(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            media_type="application/json",
            headers=exc.headers,
        )

    @api.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _answer(500, error_json(500, "internal error; the server log has the details"))

    health_responses: dict[int | str, dict[str, Any]] = {
        503: {"model": Health, "description": "Nothing to serve yet"},
        "4XX": CLIENT_ERRORS["4XX"],
        "5XX": CLIENT_ERRORS["5XX"],
    }

    @api.get("/health", response_model=Health, responses=health_responses, tags=["service"], operation_id="health")
    async def health() -> Response:
        """Liveness and what is loaded. 503 only when there is nothing at all to serve."""
        return _answer(*service.health())

    @api.head(
        "/health",
        response_class=Response,
        responses={200: {"description": "As GET /health, without the body"}, **health_responses},
        tags=["service"],
        operation_id="health_head",
    )
    async def health_head() -> Response:
        """The status code of ``GET /health`` without the body (for load balancers)."""
        status, body = service.health()
        return Response(status_code=status, media_type="application/json", headers={"content-length": str(len(body))})

    @api.get("/ping", response_model=Ping, responses=CLIENT_ERRORS, tags=["service"], operation_id="ping")
    async def ping() -> Response:
        """A constant answer: the ceiling of the load benchmark."""
        return _answer(200, PING_BODY)

    @api.get(
        USER_ROUTE,
        response_model=UserRecommendations,
        responses={**CLIENT_ERRORS, 503: _error("Nothing loaded yet")},
        tags=["recommendations"],
        operation_id="user_recommendations",
    )
    async def user_recommendations(
        request: Request,
        user_id: Annotated[
            str,
            Path(description=f"Last.fm user name. An unknown one must match {USER_ID_PATTERN} (else 422)."),
        ],
        k: KParam = 10,
    ) -> Response:
        """The user's top-k tracks; an unknown user gets the popularity list with ``fallback: true``."""
        return _answer(*service.user_recommendations(user_id, _query(request)))

    @api.get(
        SIMILAR_ROUTE,
        response_model=SimilarTracks,
        responses={**CLIENT_ERRORS, 404: _error("Unknown track")},
        tags=["recommendations"],
        operation_id="similar_tracks",
    )
    async def similar_tracks(
        request: Request,
        track_id: Annotated[
            str,
            Path(description=f"Track id (marts.dim_tracks). An unknown one must match {TRACK_ID_PATTERN} (else 422)."),
        ],
        k: KParam = 10,
    ) -> Response:
        """Tracks most like this one (item-item from the model's embeddings)."""
        return _answer(*service.similar_tracks(track_id, _query(request)))

    @api.post(
        "/recommendations",
        response_model=ColdStartRecommendations,
        responses={
            **CLIENT_ERRORS,
            400: _error("Malformed JSON"),
            413: _error(f"Body over {MAX_BODY_BYTES} bytes"),
            503: _error("Nothing loaded yet"),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ColdStartRequest.model_json_schema()}},
            }
        },
        tags=["recommendations"],
        operation_id="cold_start_recommendations",
    )
    async def cold_start(request: Request, k: KParam = 10) -> Response:
        """Recommendations for a new listener who names artists and/or tracks they like.

        Names match case- and accent-insensitively; entries nothing matches are listed under
        ``unmatched``. 422 when the body names nothing or nothing known.
        """
        body = await request.body()  # ServiceApp has read it already, within the size limit
        if len(body) > MAX_BODY_BYTES:
            return _answer(413, error_json(413, f"the body must be at most {MAX_BODY_BYTES} bytes"))
        # Scoring with the model takes milliseconds: off the event loop, like the reload.
        return _answer(*await run_in_threadpool(service.cold_start, body, _query(request)))

    @api.get(
        "/artists",
        response_model=ArtistSearch,
        responses=CLIENT_ERRORS,
        tags=["catalogue"],
        operation_id="search_artists",
    )
    async def search_artists(
        request: Request,
        q: Annotated[str, Query(max_length=100, description="Part of the name (case/accent-insensitive).")] = "",
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ) -> Response:
        """Artists whose name contains ``q``, for pickers such as the web page's."""
        return _answer(*service.search_artists(_query(request)))

    @api.get(
        "/users", response_model=SampleUsers, responses=CLIENT_ERRORS, tags=["catalogue"], operation_id="sample_users"
    )
    async def sample_users(request: Request, limit: Annotated[int, Query(ge=1, le=20)] = 5) -> Response:
        """A few user ids that have recommendations (for trying the API)."""
        return _answer(*service.sample_users(_query(request)))

    @api.post(
        "/admin/reload",
        response_model=ReloadAnswer,
        responses={
            **CLIENT_ERRORS,
            401: _error("Admin token missing or wrong"),
            503: {"model": ReloadAnswer, "description": "Reload failed"},
        },
        tags=["service"],
        operation_id="reload_model",
    )
    async def admin_reload(
        request: Request,
        force: Annotated[bool, Query(description="Reload even if the published version is unchanged.")] = False,
    ) -> Response:
        """Check for a newer published version now and swap it in (this worker; the others
        follow within MUSIC_PLATFORM_RELOAD_SECONDS). Needs ``Authorization: Bearer <token>``
        when MUSIC_PLATFORM_ADMIN_TOKEN is set."""
        token = service.config.admin_token
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Response(
                    content=error_json(401, "admin token missing or wrong"),
                    status_code=401,
                    media_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        outcome = await run_in_threadpool(service.reload, force)
        return _answer(503 if outcome.error else 200, orjson.dumps(outcome.as_dict()))

    @api.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **CLIENT_ERRORS},
        operation_id="metrics",
    )
    async def prometheus_metrics() -> Response:
        """Request counts and latency histogram in the Prometheus text format."""
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    index_html = resources.files("music_platform.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @api.get("/", include_in_schema=False)
    async def web_page() -> HTMLResponse:
        return HTMLResponse(index_html)

    return api


def _record_reload(metrics: Metrics, service: RecommendationService, outcome: ReloadOutcome) -> None:
    if outcome.error:
        metrics.reloads.labels("failed").inc()
        return
    metrics.record_reload(
        "loaded" if outcome.reloaded else "unchanged", outcome.model_version, service.snapshot.user_count
    )


async def _poll(service: RecommendationService) -> None:
    """Check ``ml.model_registry`` every few seconds; the load itself runs off the event loop."""
    while True:
        await asyncio.sleep(service.config.reload_seconds)
        try:
            await asyncio.to_thread(service.reload)
        except Exception:  # reload() reports its own failures; this guards the loop itself
            log.exception("reload poll failed")


async def _poll_recent(service: RecommendationService) -> None:
    """Re-read marts.recent_listens every few seconds, off the event loop (serving/recent.py)."""
    while True:
        try:
            await asyncio.to_thread(service.recent_refresher.refresh)
        except Exception:  # refresh() reports its own failures; this guards the loop itself
            log.exception("recent listens poll failed")
        await asyncio.sleep(service.config.recent_listens_seconds)


async def _housekeeping(metrics: Metrics, access_log: AccessLog | None, seconds: float = 1.0) -> None:
    """Once a second: write the buffered access log lines and this worker's request counts."""
    while True:
        await asyncio.sleep(seconds)
        try:
            if access_log is not None:
                access_log.flush()
            metrics.persist()
        except Exception:
            log.exception("housekeeping failed")


class _AsgiSource:
    """An ASGI scope's headers and client address, as ``Exchange`` reads them."""

    __slots__ = ("_scope",)

    def __init__(self, scope: dict) -> None:
        self._scope = scope

    @property
    def headers(self) -> _AsgiHeaders:
        return _AsgiHeaders(self._scope["headers"])

    @property
    def client(self) -> str:
        client = self._scope.get("client") or ("", 0)
        return f"{client[0]}:{client[1]}"


class _AsgiHeaders:
    """ASGI's header list as the mapping the middleware reads (lower-case names)."""

    __slots__ = ("_headers",)

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._headers.get(key, default)


async def call_asgi(app: Any, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run an ASGI app on one request whose body is already read; return its whole answer."""
    request_sent = False
    finished = asyncio.Event()
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    parts: list[bytes] = []

    async def receive() -> dict:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette re-raises after its error handler has answered (logged there): keep the answer.
        if not status:
            raise
    finally:
        finished.set()
    return status, headers, b"".join(parts)


class ServiceApp:
    """The application object: ``__rsgi__`` for Granian, ``__call__`` for ASGI servers."""

    def __init__(
        self,
        api: FastAPI,
        service: RecommendationService,
        metrics: Metrics,
        middleware: Sequence[Middleware] = (),
        access_log: AccessLog | None = None,
    ) -> None:
        self.api = api
        self.service = service
        self.metrics = metrics
        self.middleware = tuple(middleware)
        self.access_log = access_log
        self._before = tuple(m.before for m in self.middleware if has_before_hook(m))
        self._after = tuple(m.after for m in reversed(self.middleware))
        self._tasks: list[asyncio.Task] = []
        service.on_reload = lambda outcome: _record_reload(metrics, service, outcome)

    # -- lifecycle -------------------------------------------------------------------------
    def startup(self) -> None:
        """Load the snapshot (blocking). A failure leaves an empty state that /health reports."""
        self.metrics.forget_dead_processes()
        self.service.freeze_heap = True
        self.service.reload()

    def _start_background(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.service.config.reload_seconds > 0:
            self._tasks.append(loop.create_task(_poll(self.service)))
        if self.service.config.recent_listens_seconds > 0:
            self._tasks.append(loop.create_task(_poll_recent(self.service)))
        if self.access_log is not None or self.metrics.multiprocess_dir:
            self._tasks.append(loop.create_task(_housekeeping(self.metrics, self.access_log)))

    def _stop_background(self) -> list[asyncio.Task]:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if self.access_log is not None:
            self.access_log.flush()
        with contextlib.suppress(OSError):
            self.metrics.persist()
        self.service.freeze_heap = False
        gc.unfreeze()  # let the interpreter clean up normally at exit
        return tasks

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Granian calls this in each worker before it accepts connections: a worker serves
        # only once its snapshot is loaded.
        self.startup()
        self._start_background(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        tasks = self._stop_background()
        if tasks and not loop.is_running():
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        if self.access_log is not None:
            self.access_log.close()

    # -- routing ---------------------------------------------------------------------------
    def hot_get(self, path: str, query_string: str) -> tuple[str, int, bytes] | None:
        """(route, status, body) of a hot GET route, or None for any other path.

        Answers of known users and tracks come from the answer cache (``AnswerCache``) once
        computed: the same (path, query string) answers the same bytes until the snapshot or
        the recent-listens overlay is replaced."""
        cache = self.service.answer_cache()
        key = (path, query_string)
        cached = cache.answers.get(key)
        if cached is not None:
            return cached
        if path.startswith("/users/") and path.endswith("/recommendations"):
            user_id = path[7:-16]
            answer = (USER_ROUTE, *self.service.user_recommendations(user_id, query_string, cache))
            if answer[1] == 200 and cache.knows_user(user_id):
                cache.put(key, answer)
            return answer
        if path.startswith("/tracks/") and path.endswith("/similar"):
            track_id = path[8:-8]
            answer = (SIMILAR_ROUTE, *self.service.similar_tracks(track_id, query_string, cache))
            if answer[1] == 200 and cache.knows_track(track_id):
                cache.put(key, answer)
            return answer
        if path == "/ping":
            return "/ping", 200, PING_BODY
        if path == "/health":
            return ("/health", *self.service.health())
        return None

    def _answer_now(self, exchange: Exchange) -> bool:
        """Answer without awaiting anything: middleware answering early, a URL too long, or a
        hot route. False: the FastAPI routes answer."""
        path, query_string = exchange.path, exchange.query_string
        if (self._before or len(path) + len(query_string) > MAX_URL_BYTES) and self._early(exchange):
            return True
        method = exchange.method
        if method != "GET" and (method != "HEAD" or path != "/health"):
            return False
        hot = self.hot_get(path, query_string)
        if hot is None:
            return False
        exchange.route, exchange.status, exchange.body = hot
        return True

    def _early(self, exchange: Exchange) -> bool:
        """Middleware that answers before the routes (CORS preflight), and a URL too long."""
        for before in self._before:
            early = before(exchange)
            if early is not None:
                exchange.status, exchange.body = early
                return True
        if len(exchange.path) + len(exchange.query_string) > MAX_URL_BYTES:
            exchange.answer("other", 414, error_json(414, f"the URL must be at most {MAX_URL_BYTES} bytes"))
            return True
        return False

    @staticmethod
    def _label(exchange: Exchange) -> None:
        """The metrics and access-log route of a request the hot routes did not take."""
        path = exchange.path
        if path in KNOWN_PATHS:
            exchange.route = path
        elif path.startswith(DOCS_ASSETS + "/"):
            exchange.route = DOCS_ASSETS

    async def _cold(self, exchange: Exchange, scope: dict, body: bytes) -> None:
        status, headers, content = await call_asgi(self.api, scope, body)
        exchange.status, exchange.body = status, content
        exchange.response_headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() != b"content-length"
        ]

    def _refuse_body(self, exchange: Exchange, status: int, message: str) -> None:
        exchange.status, exchange.body = status, error_json(status, message)
        exchange.close = True  # the rest of the body is never read

    def _declared_length(self, exchange: Exchange) -> int | None | bool:
        """Content-Length (None if absent); False when the request was refused for it."""
        declared = exchange.headers.get("content-length")
        if declared is None:
            return None
        if not declared.strip().isdigit():
            self._refuse_body(exchange, 400, "Content-Length must be a number of bytes")
            return False
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._refuse_body(exchange, 413, f"the body must be at most {MAX_BODY_BYTES} bytes")
            return False
        return length

    async def _read_body(self, exchange: Exchange, chunks: Callable[[], Any]) -> bytes | None:
        """The request body within the size and time limits, or None when the request is
        answered already (400, 408, 413) or its client is gone (499)."""
        declared = self._declared_length(exchange)
        if declared is False:
            return None
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.service.config.body_timeout_seconds):
                async for chunk in chunks():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:  # chunked bodies have no Content-Length to check first
                        self._refuse_body(exchange, 413, f"the body must be at most {MAX_BODY_BYTES} bytes")
                        return None
                    parts.append(chunk)
        except TimeoutError:
            seconds = self.service.config.body_timeout_seconds
            self._refuse_body(exchange, 408, f"the request body did not arrive within {seconds:g} s")
            return None
        except _ClientGone:
            exchange.status = CLIENT_CLOSED_REQUEST
            return None
        if declared is not None and size < declared:
            exchange.status = CLIENT_CLOSED_REQUEST  # the client went away mid-body
            return None
        return b"".join(parts)

    def _finish(self, exchange: Exchange) -> None:
        exchange.finished = perf_counter()
        for after in self._after:
            try:
                after(exchange)
            except Exception:
                log.exception("middleware %r failed on %s %s", after, exchange.method, exchange.path[:200])

    def _server_error(self, exchange: Exchange) -> None:
        log.exception("unhandled error on %s %s", exchange.method, exchange.path[:200])
        exchange.status = 500
        exchange.body = error_json(500, "internal error; the server log has the details")
        exchange.response_headers = _JSON_HEADERS

    # -- RSGI (Granian) ----------------------------------------------------------------------
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        # The scope is the exchange's source of headers and client address, read only if a
        # hook asks (Granian builds a new headers object on every read).
        exchange = Exchange(scope.method, scope.path, scope.query_string, perf_counter(), scope)
        try:
            if not self._answer_now(exchange):
                self._label(exchange)
                body = b""
                if exchange.method in BODY_METHODS:
                    body = await self._read_body(exchange, lambda: _rsgi_chunks(proto))
                if body is not None:
                    await self._cold(exchange, _asgi_scope(exchange, scope), body)
        except Exception:
            self._server_error(exchange)
        self._finish(exchange)
        if exchange.status == CLIENT_CLOSED_REQUEST:
            proto.response_empty(400, _CLOSE)  # nobody reads it: the connection is gone
            return
        headers = exchange.response_headers
        if exchange.close:
            headers = [*headers, ("connection", "close")]
        proto.response_bytes(exchange.status, headers, exchange.body)

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1003})
            return
        exchange = Exchange(
            scope["method"], scope["path"], scope["query_string"].decode("latin-1"), perf_counter(), _AsgiSource(scope)
        )
        try:
            if not self._answer_now(exchange):
                self._label(exchange)
                body = b""
                if exchange.method in BODY_METHODS:
                    body = await self._read_body(exchange, lambda: _asgi_chunks(receive))
                if body is not None:
                    await self._cold(exchange, scope, body)
        except Exception:
            self._server_error(exchange)
        self._finish(exchange)
        if exchange.status == CLIENT_CLOSED_REQUEST:
            return
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in exchange.response_headers]
        headers.append((b"content-length", b"%d" % len(exchange.body)))
        if exchange.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exchange.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if exchange.method == "HEAD" else exchange.body})

    async def _lifespan(self, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.startup)
                    self._start_background(asyncio.get_running_loop())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                tasks = self._stop_background()
                await asyncio.gather(*tasks, return_exceptions=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


_JSON_HEADERS = [("content-type", "application/json")]
_CLOSE = [("connection", "close")]


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


async def _rsgi_chunks(proto: Any):
    # Granian ends the body stream early, without an error, when the client disconnects;
    # _read_body compares the bytes received with Content-Length to tell.
    async for chunk in proto:
        yield chunk


async def _asgi_chunks(receive: Callable[[], Awaitable[dict]]):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _asgi_scope(exchange: Exchange, scope: Any) -> dict:
    """The ASGI scope of an RSGI request, for the FastAPI routes."""
    client_host, _, client_port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": exchange.method,
        "scheme": scope.scheme,
        "path": exchange.path,
        "raw_path": exchange.path.encode("utf-8"),
        "query_string": exchange.query_string.encode("utf-8"),
        "root_path": "",
        "headers": [(name.encode("latin-1"), value.encode("utf-8")) for name, value in scope.headers.items()],
        "client": (client_host, int(client_port or 0)),
        "server": (server_host, int(server_port or 0)),
        "state": {},
    }


def default_middleware(config: ServingConfig, metrics: Metrics) -> tuple[list[Middleware], AccessLog | None]:
    """Metrics always; CORS when origins are configured; the access log unless turned off.

    Order: the access log sees the final answer (CORS headers included), metrics time it last."""
    middleware: list[Middleware] = [MetricsMiddleware(metrics)]
    access_log = None
    if config.access_log != ACCESS_LOG_OFF:
        access_log = AccessLog(config.access_log)
        middleware.append(AccessLogMiddleware(access_log))
    if config.cors_origins:
        middleware.append(CorsMiddleware(config.cors_origins))
    return middleware, access_log


def create_app(
    settings: Settings | None = None,
    config: ServingConfig | None = None,
    warehouse: Warehouse | None = None,
    cold_start_factory: Any = None,
    middleware: Sequence[Middleware] = (),
) -> ServiceApp:
    """The application (Granian calls it with no arguments, as a factory, in each worker).

    ``middleware`` is added after the defaults (metrics, access log, CORS): its ``before``
    hooks run last and its ``after`` hooks first."""
    config = config or ServingConfig.from_env()
    service = RecommendationService(
        settings or Settings.from_env(), config, warehouse=warehouse, cold_start_factory=cold_start_factory
    )
    metrics = Metrics()
    defaults, access_log = default_middleware(config, metrics)
    return ServiceApp(build_api(service, metrics), service, metrics, [*defaults, *middleware], access_log)
