"""The Spotify Web API client (client-credentials flow) on the shared HTTP layer.

What it does, and what it does when Spotify says no:

- **Token**: ``POST {SPOTIFY_ACCOUNTS_ROOT}/api/token`` with HTTP Basic credentials; the
  token is cached until 60 s before it expires, and renewed once when the API answers 401
  (then the request is retried once; ``BearerTokenAuth`` + ``HttpClient`` do this). A bad id
  or secret (``invalid_client``) raises ``InvalidCredentialsError``: fatal, fix the settings.
- **Batches**: 50 ids per ``GET /tracks`` and ``GET /artists``, 100 per ``GET /audio-features``.
  Ids that are not Spotify ids (22 base62 characters) are never sent (one would fail the
  whole batch with 400) and are listed in the report. ``null`` entries (unknown ids) come
  back as ``None`` and are listed as not found.
- **Withdrawn endpoints** (403, development-mode apps: audio features since Nov 2024, batch
  tracks/artists since Feb–Mar 2026): recorded in :class:`SpotifyReport` ``unavailable``
  (capability -> why), never retried, never raised. Tracks and artists then fall back to the
  single-id endpoints for at most ``max_single_lookups`` ids per call; audio features have
  no fallback (use the Kaggle file's features).
- **429**: ``Retry-After`` is honoured up to ``retry_after_cap_s`` (default 60 s) by the HTTP
  layer. Past the cap, or when retries run out on any transient failure, the client stops
  asking: ``report.stopped_reason`` says why, and later calls return what they can without
  a request. Ids that were not asked for are counted in ``report.skipped``.
- **Search** (``limit`` ≤ 10, the development-mode maximum since 2026) resolves an
  (artist, track) pair that has no Spotify id.

Results are the JSON objects as Spotify sent them; ``music_platform.sources.spotify.parsing``
turns them into raw-table rows. Nothing here logs or raises a secret.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from music_platform.config import DEFAULT_SPOTIFY_ACCOUNTS_ROOT, DEFAULT_SPOTIFY_API_ROOT, ConfigError, Settings
from music_platform.sources.errors import (
    CapabilityUnavailableError,
    InvalidCredentialsError,
    NotFoundError,
    ResponseFormatError,
    SourceError,
)
from music_platform.sources.http import (
    BearerTokenAuth,
    HttpClient,
    PreparedCall,
    RateLimiter,
    ResponseInfo,
    RetryPolicy,
    Timeouts,
    classify_status,
    shared_rate_limiter,
)

TRACKS_BATCH_SIZE = 50
ARTISTS_BATCH_SIZE = 50
AUDIO_FEATURES_BATCH_SIZE = 100
#: Development-mode apps may not ask for more since Feb 2026 (``400 Invalid limit``).
SEARCH_LIMIT_MAX = 10
#: Spotify publishes no rate; it counts requests over a rolling 30 s window. Stay modest.
SPOTIFY_RATE_LIMIT_PER_S = 5.0

#: What a Spotify app may or may not be allowed to call (the keys of ``report.unavailable``).
CAPABILITIES: dict[str, str] = {
    "tracks_batch": "GET /tracks?ids= (several tracks)",
    "tracks_single": "GET /tracks/{id}",
    "artists_batch": "GET /artists?ids= (several artists)",
    "artists_single": "GET /artists/{id}",
    "audio_features": "GET /audio-features?ids=",
    "search": "GET /search",
}

DEFAULT_SPOTIFY_RETRY = RetryPolicy(
    max_attempts=5,
    deadline_s=180.0,
    initial_backoff_s=1.0,
    max_backoff_s=30.0,
    jitter_s=1.0,
    rate_limited_backoff_s=10.0,
    retry_after_cap_s=60.0,
)

_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
T = TypeVar("T")


def is_spotify_id(value: str) -> bool:
    return bool(_SPOTIFY_ID.match(value or ""))


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# -- classification --------------------------------------------------------------------------


def _api_message(payload: Any) -> str | None:
    """The message of a Web API error body ``{"error": {"status": N, "message": "..."}}``."""
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        message = payload["error"].get("message")
        return str(message) if message else None
    return None


def classify_spotify(info: ResponseInfo) -> SourceError | None:
    """Spotify's 403 means "not for this app": capability unavailable (or a lapsed Premium owner)."""
    common = {"source": "spotify", "status": info.status, "operation": info.operation, "context": info.context}
    if info.status == 403:
        message = _api_message(info.payload)
        if message and "premium" in message.lower():
            return InvalidCredentialsError(
                f"Spotify {info.operation}: HTTP 403, the app owner's account is blocked ({message}): "
                "development-mode apps need an owner with Spotify Premium",
                **common,
            )
        return CapabilityUnavailableError(
            f"Spotify {info.operation}: HTTP 403, endpoint not available to this app "
            f"({message or 'no message'}; withdrawn for development-mode apps)",
            **common,
        )
    error = classify_status(info)
    if error is None and not isinstance(info.payload, Mapping):
        return ResponseFormatError(
            f"Spotify {info.operation}: the answer is not a JSON object: {info.snippet!r}", **common
        )
    return error


def classify_token(info: ResponseInfo) -> SourceError | None:
    """The accounts service speaks OAuth: ``{"error": "invalid_client", "error_description": ...}``."""
    common = {"source": "spotify", "status": info.status, "operation": info.operation, "context": info.context}
    payload = info.payload if isinstance(info.payload, Mapping) else {}
    if info.status in (400, 401) and payload.get("error") in ("invalid_client", "unauthorized_client"):
        description = payload.get("error_description") or payload["error"]
        return InvalidCredentialsError(
            f"Spotify rejected the client credentials ({description}): "
            "check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET",
            **common,
        )
    error = classify_status(info)
    if error is None and not (isinstance(payload.get("access_token"), str) and payload.get("expires_in") is not None):
        return ResponseFormatError(f"Spotify token endpoint: no access_token/expires_in in {info.snippet!r}", **common)
    return error


class _ClientCredentials:
    """HTTP Basic credentials for the token endpoint (an ``Auth`` for ``HttpClient``)."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._secret = client_secret
        self._basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def apply(self, call: PreparedCall) -> None:
        call.headers["Authorization"] = f"Basic {self._basic}"

    def refresh(self) -> bool:
        return False

    def secrets(self) -> tuple[str, ...]:
        return (self._secret, self._basic)

    def __repr__(self) -> str:
        return "ClientCredentials(***)"


# -- the report ------------------------------------------------------------------------------


@dataclass
class SpotifyReport:
    """What the client could not do, for asset metadata and WARN checks.

    ``unavailable``: capability -> why (HTTP 403 on a withdrawn endpoint);
    ``stopped_reason``: why the client stopped asking (rate limit past the cap, retries
    exhausted, bad credentials), None while it works; ``not_found``: kind -> ids Spotify
    answered ``null``/404 for; ``invalid_ids``: values that are not Spotify ids;
    ``skipped``: kind -> ids not asked for because of the above; ``single_lookups``: ids
    fetched one by one because the batch endpoint is withdrawn.
    """

    unavailable: dict[str, str] = field(default_factory=dict)
    stopped_reason: str | None = None
    not_found: dict[str, list[str]] = field(default_factory=dict)
    invalid_ids: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    single_lookups: int = 0

    @property
    def complete(self) -> bool:
        """Every id asked for was answered (found or not found)."""
        return self.stopped_reason is None and not any(self.skipped.values())

    def as_metadata(self) -> dict[str, Any]:
        return {
            "unavailable_capabilities": dict(self.unavailable),
            "stopped_reason": self.stopped_reason,
            "not_found": {kind: len(ids) for kind, ids in self.not_found.items()},
            "invalid_ids": len(self.invalid_ids),
            "skipped": dict(self.skipped),
            "single_lookups": self.single_lookups,
            "complete": self.complete,
        }

    def record_not_found(self, kind: str, object_id: str) -> None:
        self.not_found.setdefault(kind, []).append(object_id)

    def record_skipped(self, kind: str, count: int) -> None:
        if count:
            self.skipped[kind] = self.skipped.get(kind, 0) + count


class _Unavailable(Exception):
    """The capability is withdrawn for this app (already recorded)."""


class _Stopped(Exception):
    """The client stopped asking (already recorded)."""


# -- the client ------------------------------------------------------------------------------


class SpotifyClient:
    """Read-only Spotify client. ``report`` accumulates over every call of this instance."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        api_root: str = DEFAULT_SPOTIFY_API_ROOT,
        accounts_root: str = DEFAULT_SPOTIFY_ACCOUNTS_ROOT,
        retry_after_cap_s: float = 60.0,
        retry: RetryPolicy = DEFAULT_SPOTIFY_RETRY,
        rate_limit_per_s: float = SPOTIFY_RATE_LIMIT_PER_S,
        rate_limiter: RateLimiter | None = None,
        timeouts: Timeouts = Timeouts(connect_s=5.0, read_s=20.0),
        max_single_lookups: int = 200,
        token_refresh_margin_s: float = 60.0,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        if not (client_id and client_id.strip() and client_secret and client_secret.strip()):
            raise ConfigError("SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET must both be set for the Spotify client")
        self.api_root = api_root
        self.accounts_root = accounts_root
        self.max_single_lookups = max_single_lookups
        self.report = SpotifyReport()
        policy = replace(retry, retry_after_cap_s=retry_after_cap_s)
        self._accounts = HttpClient(
            source="spotify",
            base_url=accounts_root,
            classify=classify_token,
            auth=_ClientCredentials(client_id.strip(), client_secret.strip()),
            retry=policy,
            timeouts=timeouts,
            session_factory=session_factory,
        )
        self.auth = BearerTokenAuth(
            self._fetch_token,
            refresh_margin_s=token_refresh_margin_s,
            extra_secrets=(client_secret.strip(),),
        )
        limiter = rate_limiter or shared_rate_limiter(f"spotify:{urlsplit(api_root).netloc}", rate_limit_per_s)
        self.http = HttpClient(
            source="spotify",
            base_url=api_root,
            classify=classify_spotify,
            auth=self.auth,
            rate_limiter=limiter,
            retry=policy,
            timeouts=timeouts,
            session_factory=session_factory,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SpotifyClient:
        if not settings.spotify_configured:
            raise ConfigError("SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET are not set")
        return cls(
            settings.spotify_client_id or "",
            settings.spotify_client_secret or "",
            api_root=settings.spotify_api_root,
            accounts_root=settings.spotify_accounts_root,
            **overrides,
        )

    def __repr__(self) -> str:
        return f"SpotifyClient(api_root={self.api_root!r}, client_secret=***)"

    def close(self) -> None:
        self.http.close()
        self._accounts.close()

    def __enter__(self) -> SpotifyClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        """Requests sent (attempts), token requests included."""
        return self.http.request_count + self._accounts.request_count

    @property
    def token_fetches(self) -> int:
        return self.auth.fetch_count

    # -- plumbing ---------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float]:
        payload = self._accounts.request_json(
            "POST", "api/token", data={"grant_type": "client_credentials"}, operation="POST /api/token"
        )
        return payload["access_token"], float(payload["expires_in"])

    def _get(self, capability: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """One GET; withdrawn capabilities and a stopped client raise internal markers, recorded."""
        if self.report.stopped_reason is not None:
            raise _Stopped
        if capability in self.report.unavailable:
            raise _Unavailable
        operation = f"GET /{path.split('/')[0]}" + ("/{id}" if "/" in path else "")
        try:
            return self.http.request_json("GET", path, params=params, operation=operation)
        except CapabilityUnavailableError as error:
            self.report.unavailable[capability] = str(error)
            raise _Unavailable from None
        except SourceError as error:
            if error.fatal or error.retryable:
                # Rate limit past the cap, retries exhausted, or bad credentials: stop asking.
                self.report.stopped_reason = str(error)
            if error.fatal:
                raise
            if error.retryable:
                raise _Stopped from None
            raise

    def _valid_ids(self, ids: Iterable[str]) -> list[str]:
        unique: list[str] = []
        seen: set[str] = set()
        for raw in ids:
            value = (raw or "").strip()
            if value in seen:
                continue
            seen.add(value)
            if is_spotify_id(value):
                unique.append(value)
            elif raw not in self.report.invalid_ids:
                self.report.invalid_ids.append(raw)
        return unique

    def _batched(
        self, kind: str, capability: str, path: str, list_key: str, ids: Sequence[str], size: int
    ) -> tuple[dict[str, dict[str, Any] | None], bool]:
        """Ask for ``ids`` in batches; returns (answers, batch endpoint withdrawn?)."""
        answers: dict[str, dict[str, Any] | None] = {}
        for batch in chunks(ids, size):
            try:
                payload = self._get(capability, path, {"ids": ",".join(batch)})
            except _Unavailable:
                return answers, True
            except _Stopped:
                break
            entries = payload.get(list_key)
            if not isinstance(entries, list) or len(entries) != len(batch):
                raise ResponseFormatError(
                    f"Spotify GET /{path}: expected a '{list_key}' list of {len(batch)} entries, "
                    f"got {type(entries).__name__} of {len(entries) if isinstance(entries, list) else 'no'} entries",
                    source="spotify",
                    operation=f"GET /{path}",
                )
            # Spotify answers in the order asked, with null for an unknown id.
            for object_id, entry in zip(batch, entries, strict=True):
                answers[object_id] = entry if isinstance(entry, Mapping) else None
                if answers[object_id] is None:
                    self.report.record_not_found(kind, object_id)
        return answers, False

    def _one_by_one(
        self, kind: str, capability: str, path: str, ids: Sequence[str], answers: dict[str, dict[str, Any] | None]
    ) -> None:
        budget = self.max_single_lookups
        for object_id in ids:
            if budget <= 0:
                break
            try:
                answers[object_id] = self._get(capability, f"{path}/{object_id}")
            except NotFoundError:
                answers[object_id] = None
                self.report.record_not_found(kind, object_id)
            except (_Unavailable, _Stopped):
                break
            budget -= 1
            self.report.single_lookups += 1

    def _fetch(
        self, kind: str, ids: Iterable[str], *, path: str, list_key: str, size: int, single: bool
    ) -> dict[str, dict[str, Any] | None]:
        wanted = self._valid_ids(ids)
        answers, withdrawn = self._batched(kind, f"{kind}_batch" if single else kind, path, list_key, wanted, size)
        if withdrawn and single:
            missing = [i for i in wanted if i not in answers]
            self._one_by_one(kind, f"{kind}_single", path, missing, answers)
        self.report.record_skipped(kind, sum(1 for i in wanted if i not in answers))
        return answers

    # -- public API -------------------------------------------------------------------------
    def get_tracks(self, track_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Track objects by id (``None``: Spotify does not know the id).

        Ids Spotify was not asked about (withdrawn endpoint, stopped client, invalid id) are
        absent; ``report`` says why.
        """
        return self._fetch("tracks", track_ids, path="tracks", list_key="tracks", size=TRACKS_BATCH_SIZE, single=True)

    def get_artists(self, artist_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Artist objects by id, as :meth:`get_tracks`."""
        return self._fetch(
            "artists", artist_ids, path="artists", list_key="artists", size=ARTISTS_BATCH_SIZE, single=True
        )

    def get_audio_features(self, track_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Audio-features objects by track id; empty with ``report.unavailable['audio_features']`` when withdrawn."""
        return self._fetch(
            "audio_features",
            track_ids,
            path="audio-features",
            list_key="audio_features",
            size=AUDIO_FEATURES_BATCH_SIZE,
            single=False,
        )

    def search(
        self, query: str, *, types: Sequence[str] = ("track",), limit: int = SEARCH_LIMIT_MAX, offset: int = 0
    ) -> dict[str, Any] | None:
        """One page of ``GET /search``; None when search is unavailable or the client stopped."""
        if not 1 <= limit <= SEARCH_LIMIT_MAX:
            raise ValueError(
                f"search limit must be between 1 and {SEARCH_LIMIT_MAX} (Spotify's development-mode maximum)"
            )
        params = {"q": query, "type": ",".join(types), "limit": limit, "offset": offset}
        try:
            return self._get("search", "search", params)
        except (_Unavailable, _Stopped):
            return None

    def search_track(self, artist: str, track: str, *, limit: int = 5) -> dict[str, Any] | None:
        """The Spotify track best matching an (artist, track) pair that has no Spotify id, or None.

        Prefers an exact (case-insensitive) match of both names among the first ``limit``
        results, then the first result with the exact title, then the first result.
        """
        query = f'track:"{_clean(track)}" artist:"{_clean(artist)}"'
        page = self.search(query, types=("track",), limit=limit)
        items = [i for i in ((page or {}).get("tracks") or {}).get("items") or [] if isinstance(i, Mapping)]
        if not items:
            return None
        title, name = track.strip().casefold(), artist.strip().casefold()

        def exact_title(item: Mapping[str, Any]) -> bool:
            return str(item.get("name", "")).casefold() == title

        def exact_artist(item: Mapping[str, Any]) -> bool:
            return any(str(a.get("name", "")).casefold() == name for a in item.get("artists") or [])

        for candidates in (
            [i for i in items if exact_title(i) and exact_artist(i)],
            [i for i in items if exact_title(i)],
            items,
        ):
            if candidates:
                return dict(candidates[0])
        return None

    def resolve_track_ids(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """(artist, track) -> Spotify track id, or None when search finds nothing; stops with the client."""
        resolved: dict[tuple[str, str], str | None] = {}
        for pair in dict.fromkeys(pairs):
            if self.report.stopped_reason is not None or "search" in self.report.unavailable:
                self.report.record_skipped("search", 1)
                continue
            found = self.search_track(*pair)
            resolved[pair] = str(found["id"]) if found and found.get("id") else None
        return resolved

    def probe_capabilities(self, track_id: str, artist_id: str) -> dict[str, bool]:
        """Try each capability once with known ids: capability -> available (for check-apis)."""
        probes: dict[str, Callable[[], Any]] = {
            "search": lambda: self._get("search", "search", {"q": "a", "type": "track", "limit": 1}),
            "tracks_batch": lambda: self._get("tracks_batch", "tracks", {"ids": track_id}),
            "tracks_single": lambda: self._get("tracks_single", f"tracks/{track_id}"),
            "artists_batch": lambda: self._get("artists_batch", "artists", {"ids": artist_id}),
            "artists_single": lambda: self._get("artists_single", f"artists/{artist_id}"),
            "audio_features": lambda: self._get("audio_features", "audio-features", {"ids": track_id}),
        }
        available: dict[str, bool] = {}
        for capability, probe in probes.items():
            try:
                probe()
                available[capability] = True
            except _Unavailable:
                available[capability] = False
            except NotFoundError:
                available[capability] = True  # the endpoint answered; the probe id is just unknown
            except _Stopped:
                break
        return available


def _clean(text: str) -> str:
    """Search field values are quoted; a quote inside would end the phrase early."""
    return " ".join(text.replace('"', " ").split())
