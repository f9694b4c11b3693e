"""The ASGI application: a raw fast path in front of a FastAPI app.

FastAPI declares every route (so ``/docs`` and ``/openapi.json`` describe the whole API) and
answers the cold ones. The hot GET routes -- user recommendations, similar tracks, health and
``/ping`` -- are matched first by ``FastPathApp``, which calls the same ``RecommendationService``
handler and sends its pre-serialised bytes without routing, validation models or response
classes: that difference is most of the throughput at 1000 concurrent connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
from collections.abc import AsyncIterator
from importlib import resources
from time import perf_counter
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from music_platform.config import Settings
from music_platform.serving.metrics import Metrics
from music_platform.serving.service import (
    MAX_BODY_BYTES,
    MAX_K,
    TRACK_ID_PATTERN,
    USER_ID_PATTERN,
    RecommendationService,
    ReloadOutcome,
    ServingConfig,
    error_json,
)
from music_platform.warehouse import Warehouse

log = logging.getLogger(__name__)

JSON = b"application/json"
USER_ROUTE = "/users/{user_id}/recommendations"
SIMILAR_ROUTE = "/tracks/{track_id}/similar"
PING_BODY = b'{"status":"ok"}'
# Route labels of the cold paths (anything else is counted as "other", keeping label sets small).
KNOWN_PATHS = frozenset(
    {
        "/",
        "/docs",
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

KParam = Annotated[int, Query(ge=1, le=MAX_K, description="How many tracks to return (1-100).")]


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
    k: int
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
    error: str
    status: int
    message: str


class ReloadAnswer(BaseModel):
    reloaded: bool
    model_version: str | None
    previous_version: str | None
    seconds: float
    error: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Invalid parameter"},
    503: {"model": ErrorBody, "description": "Nothing loaded yet"},
}


def _answer(status: int, body: bytes) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def build_api(service: RecommendationService, metrics: Metrics) -> FastAPI:
    """The FastAPI application: every route, the OpenAPI schema and the error format."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load before the first request; a failure leaves an empty state that /health reports.
        service.freeze_heap = True
        await run_in_threadpool(service.reload)
        poller = asyncio.create_task(_poll(service)) if service.config.reload_seconds > 0 else None
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            service.freeze_heap = False
            gc.unfreeze()  # let the interpreter clean up normally at exit

    api = FastAPI(
        title="music_platform recommendations",
        version="1.0",
        summary="Per-user recommendations, similar tracks and cold start from the latest published model.",
        lifespan=lifespan,
    )
    service.on_reload = lambda outcome: _record_reload(metrics, service, outcome)

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

    @api.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    async def health() -> Response:
        """Liveness and what is loaded. 503 only when there is nothing at all to serve."""
        return _answer(*service.health())

    @api.get(
        "/ping", tags=["service"], responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}}
    )
    async def ping() -> Response:
        """A constant answer: the ceiling of the load benchmark."""
        return _answer(200, PING_BODY)

    @api.get(USER_ROUTE, response_model=UserRecommendations, responses=ERRORS, tags=["recommendations"])
    async def user_recommendations(
        request: Request,
        user_id: Annotated[
            str,
            Path(description=f"Last.fm user name. An unknown one must match {USER_ID_PATTERN} (else 422)."),
        ],
        k: KParam = 10,
    ) -> Response:
        """The user's top-k tracks; an unknown user gets the popularity list with ``fallback: true``."""
        return _answer(*service.user_recommendations(user_id, request.scope["query_string"]))

    @api.get(
        SIMILAR_ROUTE,
        response_model=SimilarTracks,
        responses={**ERRORS, 404: {"model": ErrorBody, "description": "Unknown track"}},
        tags=["recommendations"],
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
        return _answer(*service.similar_tracks(track_id, request.scope["query_string"]))

    @api.post(
        "/recommendations",
        response_model=ColdStartRecommendations,
        responses={
            **ERRORS,
            400: {"model": ErrorBody, "description": "Malformed JSON"},
            413: {"model": ErrorBody, "description": "Body too large"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ColdStartRequest.model_json_schema()}},
            }
        },
        tags=["recommendations"],
    )
    async def cold_start(request: Request, k: KParam = 10) -> Response:
        """Recommendations for a new listener who names artists and/or tracks they like.

        Names match case- and accent-insensitively; entries nothing matches are listed under
        ``unmatched``. 422 when the body names nothing or nothing known.
        """
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return _answer(413, error_json(413, f"the body must be at most {MAX_BODY_BYTES} bytes"))
        # Scoring with the model takes milliseconds: off the event loop, like the reload.
        return _answer(*await run_in_threadpool(service.cold_start, bytes(body), request.scope["query_string"]))

    @api.get("/artists", tags=["catalogue"])
    async def search_artists(
        request: Request,
        q: Annotated[str, Query(max_length=100, description="Part of the name (case/accent-insensitive).")] = "",
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ) -> Response:
        """Artists whose name contains ``q``, for pickers such as the web page's."""
        return _answer(*service.search_artists(request.scope["query_string"]))

    @api.get("/users", tags=["catalogue"])
    async def sample_users(request: Request, limit: Annotated[int, Query(ge=1, le=20)] = 5) -> Response:
        """A few user ids that have recommendations (for trying the API)."""
        return _answer(*service.sample_users(request.scope["query_string"]))

    @api.post(
        "/admin/reload",
        response_model=ReloadAnswer,
        responses={401: {"model": ErrorBody}, 503: {"model": ReloadAnswer, "description": "Reload failed"}},
        tags=["service"],
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

    @api.get("/metrics", tags=["service"], response_class=Response)
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


class FastPathApp:
    """ASGI entry point: hot GET routes straight to the service, the rest to FastAPI."""

    def __init__(self, api: FastAPI, service: RecommendationService, metrics: Metrics):
        self.api = api
        self.service = service
        self.metrics = metrics

    def hot_get(self, path: str, query_string: bytes) -> tuple[str, int, bytes] | None:
        """(route, status, body) of a hot GET route, or None for any other path.

        Called by the ASGI entry point below and, in served workers, straight from the HTTP
        parser (``serving/protocol.py``)."""
        if path.startswith("/users/") and path.endswith("/recommendations"):
            return (USER_ROUTE, *self.service.user_recommendations(path[7:-16], query_string))
        if path.startswith("/tracks/") and path.endswith("/similar"):
            return (SIMILAR_ROUTE, *self.service.similar_tracks(path[8:-8], query_string))
        if path == "/ping":
            return "/ping", 200, PING_BODY
        if path == "/health":
            return ("/health", *self.service.health())
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        started = perf_counter()
        if scope["method"] == "GET":
            hot = self.hot_get(scope["path"], scope["query_string"])
            if hot is not None:
                route, status, body = hot
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", JSON), (b"content-length", b"%d" % len(body))],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                self.metrics.observe(route, "GET", status, perf_counter() - started)
                return
        status_seen = 500

        async def send_and_note_status(message: dict) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        try:
            await self.api(scope, receive, send_and_note_status)
        finally:
            path = scope["path"]
            route = path if path in KNOWN_PATHS else "other"
            self.metrics.observe(route, scope["method"], status_seen, perf_counter() - started)


def create_app(
    settings: Settings | None = None,
    config: ServingConfig | None = None,
    warehouse: Warehouse | None = None,
    cold_start_factory: Any = None,
) -> FastPathApp:
    """The ASGI app (uvicorn calls it with no arguments, as a factory)."""
    service = RecommendationService(
        settings or Settings.from_env(),
        config or ServingConfig.from_env(),
        warehouse=warehouse,
        cold_start_factory=cold_start_factory,
    )
    metrics = Metrics()
    return FastPathApp(build_api(service, metrics), service, metrics)
