"""The service's logic, free of any web framework: validate input, answer from the current
snapshot, reload when a newer model version is published.

Every handler returns ``(status, body)`` with the body already serialised, so the raw ASGI
fast path and the FastAPI routes share one implementation and answer byte for byte alike.
Client input never raises: it gets a 4xx JSON error with a message.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qsl

import orjson

from music_platform.config import ConfigError, Settings, environment
from music_platform.identity import name_key_or_blank, track_query_keys
from music_platform.serving.coldstart import ColdStart, load_cold_start
from music_platform.serving.limits import MAX_K
from music_platform.serving.recent import DEFAULT_REFRESH_SECONDS as DEFAULT_RECENT_SECONDS
from music_platform.serving.recent import RecentListensRefresher, RecentOverlay
from music_platform.serving.snapshot import (
    Snapshot,
    empty_snapshot,
    live_publication,
    load_snapshot,
)
from music_platform.warehouse import Warehouse, connect_warehouse

log = logging.getLogger(__name__)

DEFAULT_K = 10
DEFAULT_RELOAD_SECONDS = 5.0
# Up to this much memory per worker goes to answers serialised at load (100k users x 10
# items take about 250 MiB); beyond it answers are formatted per request.
DEFAULT_PRESERIALISE_MB = 512
# Up to this much memory per worker holds finished answers of known users and tracks, by path
# and query string (``AnswerCache``); 0 turns the cache off.
DEFAULT_ANSWER_CACHE_MB = 64
MAX_BODY_BYTES = 64 * 1024
# Path and query together; longer URLs get a JSON 414 (ids are at most 128 characters).
MAX_URL_BYTES = 8 * 1024
# A client that has not sent its whole request head (or body) by then is disconnected:
# slowloris connections cannot pile up. The head timeout also ends idle keep-alive connections.
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
ACCESS_LOG_OFF = "off"
ACCESS_LOG_STDOUT = "stdout"
MAX_NAMES = 50
MAX_NAME_LENGTH = 200
MAX_SEARCH_LENGTH = 100

# Ids are echoed in answers and logs: letters, digits and a few separators, nothing else.
USER_ID_PATTERN = r"^[\w.@+\-]{1,128}$"
TRACK_ID_PATTERN = r"^[\w.:\-]{1,128}$"
_USER_ID = re.compile(USER_ID_PATTERN)
_TRACK_ID = re.compile(TRACK_ID_PATTERN)

Answer = tuple[int, bytes]


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds, got {value:g}")
    return value


def _mebibytes(env: Mapping[str, str], name: str, default: int, what: str) -> int:
    raw = env.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number of MiB, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 (0 turns {what} off)")
    return value


@dataclass(frozen=True)
class ServingConfig:
    """Service settings beyond ``Settings`` (docs/serving.md lists the env vars)."""

    reload_seconds: float = DEFAULT_RELOAD_SECONDS  # 0 turns polling off
    admin_token: str | None = None
    preserialise_mb: int = DEFAULT_PRESERIALISE_MB  # 0 formats every answer per request
    answer_cache_mb: int = DEFAULT_ANSWER_CACHE_MB  # 0: no answer cache
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    access_log: str = ACCESS_LOG_STDOUT  # "stdout", "off" or a file to append JSON lines to
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all; "*" allows any origin
    # How often marts.recent_listens is re-read in the background (serving/recent.py); 0: never.
    # The environment's default is DEFAULT_RECENT_SECONDS; a config built in code asks for it.
    recent_listens_seconds: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        env = environment() if env is None else env
        reload_seconds = _seconds(env, "MUSIC_PLATFORM_RELOAD_SECONDS", DEFAULT_RELOAD_SECONDS, 0, 86400)
        recent_seconds = _seconds(env, "MUSIC_PLATFORM_RECENT_LISTENS_SECONDS", DEFAULT_RECENT_SECONDS, 0, 3600)
        # The HTTP server takes the head timeout in whole milliseconds, at most 60 s.
        header_timeout = _seconds(env, "MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT_SECONDS, 0.1, 60)
        body_timeout = _seconds(env, "MUSIC_PLATFORM_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS, 0.1, 3600)
        access_log = env.get("MUSIC_PLATFORM_ACCESS_LOG", "").strip() or ACCESS_LOG_STDOUT
        if access_log.lower() in ("off", "false", "0", "no", "none"):
            access_log = ACCESS_LOG_OFF
        elif access_log.lower() in ("stdout", "on", "true", "1", "yes"):
            access_log = ACCESS_LOG_STDOUT
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("MUSIC_PLATFORM_CORS_ORIGINS", "").split(",") if o.strip()
        )
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigError(
                    "MUSIC_PLATFORM_CORS_ORIGINS must be a comma-separated list of origins such as "
                    f"https://app.example.com (or *), got {origin!r}"
                )
        preserialise_mb = _mebibytes(
            env, "MUSIC_PLATFORM_PRESERIALISE_MB", DEFAULT_PRESERIALISE_MB, "pre-serialisation"
        )
        answer_cache_mb = _mebibytes(env, "MUSIC_PLATFORM_ANSWER_CACHE_MB", DEFAULT_ANSWER_CACHE_MB, "the answer cache")
        return cls(
            reload_seconds=reload_seconds,
            admin_token=env.get("MUSIC_PLATFORM_ADMIN_TOKEN") or None,
            preserialise_mb=preserialise_mb,
            answer_cache_mb=answer_cache_mb,
            header_timeout_seconds=header_timeout,
            body_timeout_seconds=body_timeout,
            access_log=access_log,
            cors_origins=origins,
            recent_listens_seconds=recent_seconds,
        )


@dataclass(frozen=True, eq=False)
class ServingState:
    """What one request reads: replaced as a whole, so never half old and half new."""

    snapshot: Snapshot
    cold_start: ColdStart


@dataclass(frozen=True)
class ReloadOutcome:
    reloaded: bool
    model_version: str | None
    previous_version: str | None
    seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "reloaded": self.reloaded,
            "model_version": self.model_version,
            "previous_version": self.previous_version,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


class AnswerCache:
    """Finished answers of the hot GET routes for known users and tracks, by (path, query string).

    An answer is a function of the snapshot, the recent-listens overlay, the path and the query
    string only, so a cache belongs to one (snapshot, overlay) pair: ``answer_cache()`` starts an
    empty one as soon as either is replaced, and a request never sees an answer of another
    pair. Only 200 answers of ids the snapshot (or the overlay) knows are kept: probing random
    ids cannot fill it. Its size is bounded by ``budget_bytes``; once full it starts again
    empty and the ids asked for refill it.
    """

    __slots__ = ("snapshot", "recent", "answers", "budget_bytes", "used_bytes")

    # Beyond the body: the key tuple, its two strings, the answer tuple and the dict slot.
    ENTRY_OVERHEAD_BYTES = 256

    def __init__(self, snapshot: Snapshot, recent: RecentOverlay | None, budget_bytes: int) -> None:
        self.snapshot = snapshot
        self.recent = recent
        self.answers: dict[tuple[str, str], tuple[str, int, bytes]] = {}
        self.budget_bytes = budget_bytes
        self.used_bytes = 0

    def knows_user(self, user_id: str) -> bool:
        if user_id in self.snapshot.user_index:
            return True
        return self.recent is not None and user_id in self.recent.listens.by_user

    def knows_track(self, track_id: str) -> bool:
        return track_id in self.snapshot.catalogue.track_index

    def put(self, key: tuple[str, str], answer: tuple[str, int, bytes]) -> None:
        size = len(answer[2]) + len(key[0]) + len(key[1]) + self.ENTRY_OVERHEAD_BYTES
        if self.used_bytes + size > self.budget_bytes:
            if size > self.budget_bytes:
                return
            self.answers = {}
            self.used_bytes = 0
        self.answers[key] = answer
        self.used_bytes += size


def error_json(status: int, message: str, **extra: object) -> bytes:
    return orjson.dumps({"error": HTTPStatus(status).phrase, "status": status, "message": message, **extra})


def _json(status: int, payload: object) -> Answer:
    return status, orjson.dumps(payload)


@functools.lru_cache(maxsize=1024)
def _query_params(query_string: str) -> dict[str, str] | str:
    """The query string (as sent, still percent-encoded) as a dict, or an error message (a
    parameter given twice, too many parameters, bytes that are not UTF-8)."""
    if not query_string:
        return {}
    try:
        pairs = parse_qsl(
            query_string, keep_blank_values=True, strict_parsing=False, max_num_fields=20, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        return "the query string is malformed"
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return f"query parameter {name!r} is given more than once"
        params[name] = value
    return params


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int, why: str = "") -> int | str:
    raw = params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.lstrip("+-").isdigit()) or len(text) > 6:
        return f"{name} must be an integer between {low} and {high}{why}, got {raw[:20]!r}"
    value = int(text)
    if not low <= value <= high:
        return f"{name} must be an integer between {low} and {high}{why}, got {value}"
    return value


K_LIMIT_REASON = f" (the service keeps the top {MAX_K} per user and per track)"


@functools.lru_cache(maxsize=1024)
def parse_k(query_string: str) -> int | str:
    """``k`` from the query string (default 10, at most ``MAX_K``), or an error message."""
    params = _query_params(query_string)
    if isinstance(params, str):
        return params
    return _int_param(params, "k", DEFAULT_K, 1, MAX_K, K_LIMIT_REASON)


def default_cold_start_factory(settings: Settings, model_version: str | None) -> ColdStart:
    """The trained model's cold start when its artifact exists, else the catalogue one."""
    return load_cold_start(settings, model_version)


class RecommendationService:
    """Holds the current ``ServingState`` and answers requests from it."""

    def __init__(
        self,
        settings: Settings,
        config: ServingConfig,
        warehouse: Warehouse | None = None,
        cold_start_factory: Callable[[Settings, str | None], ColdStart] | None = None,
    ):
        self.settings = settings
        self.config = config
        self._warehouse = warehouse
        self._cold_start_factory = cold_start_factory or default_cold_start_factory
        self.state = ServingState(empty_snapshot(), ColdStart())
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None
        self.last_check_at: datetime | None = None
        self.on_reload: Callable[[ReloadOutcome], None] | None = None
        # Set by the web app's lifespan (which unfreezes at shutdown): see _settle_heap.
        self.freeze_heap = False
        # Listens since the published snapshot (issue 19), refreshed in the background.
        self.recent: RecentOverlay | None = None
        self.recent_refresher = RecentListensRefresher(self)
        self._answers = self._new_answer_cache()

    @property
    def warehouse(self) -> Warehouse:
        # Connecting holds no connection (see Warehouse), so one object serves every reload.
        if self._warehouse is None:
            self._warehouse = connect_warehouse(self.settings)
        return self._warehouse

    @property
    def snapshot(self) -> Snapshot:
        return self.state.snapshot

    def answer_cache(self) -> AnswerCache:
        """The answer cache of the snapshot and recent-listens overlay served now."""
        cache = self._answers
        snapshot = self.state.snapshot
        recent = self.recent
        if cache.snapshot is not snapshot or cache.recent is not recent:
            cache = self._answers = AnswerCache(snapshot, recent, self.config.answer_cache_mb * 2**20)
        return cache

    def _new_answer_cache(self) -> AnswerCache:
        return AnswerCache(self.state.snapshot, self.recent, self.config.answer_cache_mb * 2**20)

    # -- reload --------------------------------------------------------------------------
    def reload(self, force: bool = False) -> ReloadOutcome:
        """Load the latest published version if it differs from the one served (or ``force``).

        The new state is built aside and swapped in with one assignment; on any failure the
        current state stays and the error is reported, never raised.
        """
        started = time.perf_counter()
        with self._reload_lock:
            current = self.state.snapshot
            previous_version, previous_empty = current.model_version, current.is_empty
            previous_publication = current.publication_id
            del current  # the old snapshot must be free to go once the new one is in
            try:
                publication = live_publication(self.warehouse)
                version = publication.model_version if publication else None
                self.last_check_at = datetime.now(UTC)
                pid = publication.publication_id if publication else None
                unchanged = pid == previous_publication and not previous_empty and not force
                snapshot = (
                    None
                    if unchanged
                    else load_snapshot(self.warehouse, publication, self.config.preserialise_mb * 2**20)
                )
                if snapshot is not None:
                    self.state = ServingState(snapshot, self._make_cold_start(version))
                    self._answers = self._new_answer_cache()  # the old answers must not keep the old snapshot alive
                    del snapshot
                    if self.freeze_heap:
                        _settle_heap()
                self.last_error = None
                outcome = ReloadOutcome(not unchanged, version, previous_version, time.perf_counter() - started)
            except Exception as exc:  # keep serving the current version whatever went wrong
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("reload failed, still serving version %s: %s", previous_version, self.last_error)
                outcome = ReloadOutcome(
                    False, previous_version, previous_version, time.perf_counter() - started, self.last_error
                )
        if self.on_reload is not None:
            self.on_reload(outcome)
        return outcome

    def _make_cold_start(self, version: str | None) -> ColdStart:
        try:
            return self._cold_start_factory(self.settings, version)
        except Exception as exc:
            log.warning("model cold start unavailable for version %s (%s): using the catalogue", version, exc)
            return ColdStart()

    # -- handlers ------------------------------------------------------------------------
    def user_recommendations(self, user_id: str, query_string: str, cache: AnswerCache | None = None) -> Answer:
        """The answer from the snapshot and overlay served now, or from those of ``cache``
        (whose answers must all come from its own pair)."""
        k = parse_k(query_string)
        if isinstance(k, str):
            return 422, error_json(422, k)
        if cache is None:
            snapshot, recent = self.state.snapshot, self.recent
        else:
            snapshot, recent = cache.snapshot, cache.recent
        # A known id is served whatever its characters; only unknown ones must look like ids.
        if user_id not in snapshot.user_index and not _USER_ID.fullmatch(user_id):
            return 422, error_json(422, "user_id must be 1-128 letters, digits or . _ - @ +")
        if snapshot.is_empty:
            return 503, error_json(503, "no recommendations available yet: run the pipeline")
        if recent is not None:
            body = recent.answer(snapshot, user_id, k)  # None: no recent listens
            if body is not None:
                return 200, body
        return 200, snapshot.user_recommendations_json(user_id, k)

    def similar_tracks(self, track_id: str, query_string: str, cache: AnswerCache | None = None) -> Answer:
        k = parse_k(query_string)
        if isinstance(k, str):
            return 422, error_json(422, k)
        snapshot = self.state.snapshot if cache is None else cache.snapshot
        if track_id not in snapshot.catalogue.track_index and not _TRACK_ID.fullmatch(track_id):
            return 422, error_json(422, "track_id must be 1-128 letters, digits or . _ - :")
        body = snapshot.similar_tracks_json(track_id, k)
        if body is None:
            return 404, error_json(404, f"track {track_id} is not in the catalogue")
        return 200, body

    def health(self) -> Answer:
        state = self.state
        snapshot = state.snapshot
        details = {
            **snapshot.health(),
            "cold_start": state.cold_start.strategy,
            "reload_seconds": self.config.reload_seconds,
            "last_check_at": self.last_check_at.isoformat() if self.last_check_at else None,
            "last_reload_error": self.last_error,
            "recent_listens": self.recent_refresher.health(),
            "worker_pid": os.getpid(),
        }
        if snapshot.is_empty:
            reason = self.last_error or snapshot.unavailable_reason or "nothing loaded yet: run the pipeline"
            return _json(503, {"status": "unavailable", "reason": reason, **details})
        if snapshot.model_version is None:
            reason = "no published model version: every user gets the popularity list"
            return _json(200, {"status": "degraded", "reason": reason, **details})
        return _json(200, {"status": "ok", **details})

    def sample_users(self, query_string: str) -> Answer:
        params = _query_params(query_string)
        if isinstance(params, str):
            return 422, error_json(422, params)
        limit = _int_param(params, "limit", 5, 1, 20)
        if isinstance(limit, str):
            return 422, error_json(422, limit)
        snapshot = self.state.snapshot
        return _json(200, {"model_version": snapshot.model_version, "users": list(snapshot.sample_users[:limit])})

    def search_artists(self, query_string: str) -> Answer:
        """Artists whose name contains ``q`` (prefix matches first, then most listened)."""
        params = _query_params(query_string)
        if isinstance(params, str):
            return 422, error_json(422, params)
        limit = _int_param(params, "limit", 10, 1, 50)
        if isinstance(limit, str):
            return 422, error_json(422, limit)
        query = params.get("q", "")
        if len(query) > MAX_SEARCH_LENGTH:
            return 422, error_json(422, f"q must be at most {MAX_SEARCH_LENGTH} characters")
        cat = self.state.snapshot.catalogue
        needle = name_key_or_blank(query)
        found = [
            (not key.startswith(needle), -int(cat.artist_listens[a]), key, a)
            for key, a in cat.artist_by_name.items()
            if needle in key
        ]
        found.sort()
        artists = [
            {"artist_id": cat.artist_ids[a], "artist_name": cat.artist_names[a], "genres": list(cat.artist_genres[a])}
            for *_, a in found[:limit]
        ]
        return _json(200, {"query": query, "artists": artists})

    def cold_start(self, body: bytes, query_string: str) -> Answer:
        """POST /recommendations: ``{"artists": [...], "tracks": [...]}`` for a new listener."""
        k = parse_k(query_string)
        if isinstance(k, str):
            return 422, error_json(422, k)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return 400, error_json(400, f"the body is not valid JSON: {exc}")
        if not isinstance(payload, dict):
            return 422, error_json(422, 'the body must be a JSON object like {"artists": [...], "tracks": [...]}')
        unknown_fields = sorted(set(payload) - {"artists", "tracks"})
        if unknown_fields:
            return 422, error_json(422, f"unknown field(s): {', '.join(unknown_fields)}; expected artists and tracks")
        names: dict[str, list[str]] = {}
        for field_name in ("artists", "tracks"):
            value = payload.get(field_name, [])
            if value is None:
                value = []
            problem = _check_name_list(field_name, value)
            if problem:
                return 422, error_json(422, problem)
            names[field_name] = value
        if not names["artists"] and not names["tracks"]:
            return 422, error_json(422, "name at least one artist or track")

        state = self.state
        snapshot = state.snapshot
        if snapshot.is_empty:
            return 503, error_json(503, "no catalogue available yet: run the pipeline")
        cat = snapshot.catalogue
        artists, unmatched_artists = _resolve(names["artists"], lambda n: _find_artist(snapshot, n))
        tracks, unmatched_tracks = _resolve(names["tracks"], lambda n: _find_track(snapshot, n))
        unmatched = {"artists": unmatched_artists, "tracks": unmatched_tracks}
        if not artists and not tracks:
            return 422, error_json(422, "none of the named artists or tracks is in the catalogue", unmatched=unmatched)

        artist_codes = [a for _, a in artists]
        track_codes = [t for _, t in tracks]
        answer = state.cold_start.recommend(snapshot, artist_codes, track_codes, k)
        suggestions, strategy, fallback = answer.suggestions, answer.strategy, answer.fallback
        items = [
            b'{"rank":%d,%s,"score":%.6g,"reason":%s}'
            % (rank, cat.track_fragments[s.track], s.score, orjson.dumps(s.reason))
            for rank, s in enumerate(suggestions, 1)
        ]
        head = orjson.dumps(
            {
                "model_version": snapshot.model_version,
                "strategy": strategy,
                "fallback": fallback,
                "k": k,
                "matched": {
                    "artists": [
                        {"query": q, "artist_id": cat.artist_ids[a], "artist_name": cat.artist_names[a]}
                        for q, a in artists
                    ],
                    "tracks": [{"query": q, **orjson.loads(cat.track_json(t))} for q, t in tracks],
                },
                "unmatched": unmatched,
            }
        )
        return 200, head[:-1] + b',"recommendations":[' + b",".join(items) + b"]}"


def _settle_heap() -> None:
    """After a swap: collect the old snapshot's leftovers, then freeze what is left (mostly
    the new snapshot) out of the garbage collector's sight. A full collection walks every
    container -- over 100 ms with a large snapshot -- and requests would pay for it again and
    again; frozen objects are still freed by reference counting when the next swap drops them."""
    gc.collect()
    gc.freeze()


def _check_name_list(field_name: str, value: object) -> str | None:
    if not isinstance(value, list):
        return f"{field_name} must be a list of names"
    if len(value) > MAX_NAMES:
        return f"{field_name} may name at most {MAX_NAMES} entries"
    for item in value:
        if not isinstance(item, str) or not item.strip():
            return f"every entry of {field_name} must be a non-empty string"
        if len(item) > MAX_NAME_LENGTH:
            return f"entries of {field_name} must be at most {MAX_NAME_LENGTH} characters"
    return None


def _resolve(names: Sequence[str], find: Callable[[str], int | None]) -> tuple[list[tuple[str, int]], list[str]]:
    """Matched (name, index) pairs without repeats, and the names nothing matched."""
    matched: list[tuple[str, int]] = []
    seen: set[int] = set()
    unmatched: list[str] = []
    for name in names:
        index = find(name)
        if index is None:
            unmatched.append(name)
        elif index not in seen:
            seen.add(index)
            matched.append((name, index))
    return matched, unmatched


def _find_artist(snapshot: Snapshot, name: str) -> int | None:
    cat = snapshot.catalogue
    found = cat.artist_by_name.get(name_key_or_blank(name))
    if found is None:
        found = cat.artist_index.get(name.strip())
    return found


def _find_track(snapshot: Snapshot, name: str) -> int | None:
    """A track id, "Artist - Title" or a title (the most listened track of that title)."""
    cat = snapshot.catalogue
    found = cat.track_index.get(name.strip())
    if found is None:
        found = next((cat.track_by_name[key] for key in track_query_keys(name) if key in cat.track_by_name), None)
    return found
