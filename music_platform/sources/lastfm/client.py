"""The Last.fm API client (read-only methods, JSON format) on the shared HTTP layer.

Every method returns the decoded JSON payload exactly as Last.fm sent it (parse it with
``music_platform.sources.lastfm.parsing``), so raw payloads can be kept in the audit trail
and the synthetic source can stand in with the same method names.

Requests are form-encoded POSTs (as pylast does): Last.fm accepts POST for every method,
and the API key then travels in the body, never in a URL that urllib3 or an exception
could print. Errors are typed (``music_platform.sources.errors``):

- ``LastfmInvalidApiKeyError`` (10, 26, 4): fatal, fix ``LASTFM_API_KEY``;
- ``LastfmNotFoundError`` (6 "User not found") and ``LastfmPrivateDataError`` (17): ``skippable``,
  the other users go on;
- transient ones (8, 11, 16, 29, 5xx, timeouts, HTML pages) were retried until the policy's
  deadline before they reach the caller.

Recent tracks are read newest first, ``limit`` per page, in the window ``[time_from, time_to)``
(Last.fm's real semantics: ``from`` inclusive, ``to`` exclusive). ``to`` is pinned to
``min(time_to, now)`` when a walk starts, so scrobbles arriving during the walk fall outside
the window and cannot shift the pages. A back-dated scrobble landing *inside* the window
mid-walk changes the reported ``total``; the walk notices and raises
:class:`PaginationShiftedError` (transient) instead of returning a gap or a duplicate;
:meth:`LastfmClient.fetch_recent_tracks` restarts the window once by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import requests

from music_platform.config import DEFAULT_LASTFM_API_ROOT, Settings
from music_platform.sources.errors import ResponseFormatError, SourceError, TransientSourceError
from music_platform.sources.http import (
    AnsweredWindowLimiter,
    ApiKeyAuth,
    HttpClient,
    RateLimiter,
    ResponseInfo,
    RetryPolicy,
    Timeouts,
    classify_status,
    shared_answered_limiter,
)
from music_platform.sources.lastfm.errors import find_api_error, lastfm_error
from music_platform.sources.lastfm.parsing import parse_recent_tracks, recent_tracks_paging
from music_platform.sources.lastfm.protocol import (
    RecentTracksFetch,
    UserWindow,
    day_bounds,
    fetch_each_user,
)

#: Last.fm's terms: at most 5 requests per second per IP (averaged over 5 minutes).
LASTFM_RATE_LIMIT_PER_S = 5.0
#: Official maximum page size of user.getRecentTracks (the server accepts up to 1000).
RECENT_TRACKS_MAX_LIMIT = 200

DEFAULT_LASTFM_RETRY = RetryPolicy(
    max_attempts=6,
    deadline_s=120.0,
    initial_backoff_s=1.0,
    max_backoff_s=30.0,
    jitter_s=1.0,
    # Error 29 carries no Retry-After; back off for long (Last.fm averages over 5 minutes).
    rate_limited_backoff_s=20.0,
    retry_after_cap_s=60.0,
)


def classify_lastfm(info: ResponseInfo) -> SourceError | None:
    """Last.fm's error envelope first, whatever the HTTP status (errors come with 200 too)."""
    found = find_api_error(info.payload)
    if found is not None:
        code, message = found
        return lastfm_error(
            code,
            message,
            operation=info.operation,
            status=info.status,
            context=info.context,
            retry_after=info.retry_after,
        )
    return classify_status(info)


class PaginationShiftedError(TransientSourceError):
    """The window's scrobble count changed during the walk (a back-dated scrobble arrived)."""


@dataclass
class RecentTracksCursor:
    """Where a walk over one user's ``[time_from, time_to)`` window stands.

    JSON-serialisable (``to_dict``/``from_dict``), so a sensor or collector can store it and
    resume after a failure: ``next_page`` only advances once the consumer has taken a page,
    so a page whose processing failed is fetched again, and with ``time_to`` pinned the page
    boundaries stay where they were. ``total``/``total_pages`` are those of the first page.
    """

    user: str
    time_from: int
    time_to: int
    limit: int = RECENT_TRACKS_MAX_LIMIT
    next_page: int = 1
    total_pages: int | None = None
    total: int | None = None

    @property
    def done(self) -> bool:
        return self.total_pages is not None and self.next_page > max(self.total_pages, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecentTracksCursor:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class LastfmClient:
    """Read-only Last.fm client; thread-safe, rate-limited process-wide per API root.

    A :class:`~music_platform.sources.lastfm.protocol.LastfmSource`.
    """

    source_name = "lastfm"
    #: One walk per user covers this many days: far fewer requests than one per user-day, and a
    #: landing batch holds ~5 scrobbles per user-day in memory.
    days_per_batch = 14

    def __init__(
        self,
        api_key: str,
        api_root: str = DEFAULT_LASTFM_API_ROOT,
        *,
        rate_limit_per_s: float = LASTFM_RATE_LIMIT_PER_S,
        rate_limiter: RateLimiter | AnsweredWindowLimiter | None = None,
        retry: RetryPolicy = DEFAULT_LASTFM_RETRY,
        timeouts: Timeouts = Timeouts(connect_s=5.0, read_s=20.0),
        clock: Callable[[], float] = time.time,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("LASTFM_API_KEY is empty: the Last.fm client needs an API key")
        self.api_root = api_root
        self._clock = clock
        # Last.fm counts arrivals: the limiter bounds them, not only the starts (a token bucket's
        # starts 220 ms apart once arrived six within a second on a loaded machine).
        limiter = rate_limiter or shared_answered_limiter(f"lastfm:{urlsplit(api_root).netloc}", rate_limit_per_s)
        self.http = HttpClient(
            source="lastfm",
            label="Last.fm",
            base_url=api_root,
            classify=classify_lastfm,
            auth=ApiKeyAuth(api_key.strip(), param="api_key"),
            rate_limiter=limiter,
            retry=retry,
            timeouts=timeouts,
            session_factory=session_factory,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LastfmClient:
        if not settings.lastfm_api_key:
            raise ValueError("LASTFM_API_KEY is not set")
        return cls(settings.lastfm_api_key, settings.lastfm_api_root, **overrides)

    def __repr__(self) -> str:
        return f"LastfmClient(api_root={self.api_root!r}, api_key=***)"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LastfmClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        return self.http.request_count

    # -- generic call ----------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, Any] | None = None, **context: Any) -> dict[str, Any]:
        """Call any read method; ``context`` (user=, artist=, tag=) names the entity in errors."""
        form = {"method": method, "format": "json"}
        for name, value in (params or {}).items():
            if value is None:
                continue
            form[name] = str(int(value)) if isinstance(value, bool) else str(value)
        payload = self.http.request_json(
            "POST", data=form, operation=method, context={k: v for k, v in context.items() if v is not None}
        )
        if not isinstance(payload, dict):
            raise ResponseFormatError(
                f"Last.fm {method}: expected a JSON object, got {type(payload).__name__}",
                source="lastfm",
                operation=method,
            )
        return payload

    # -- user.getRecentTracks -----------------------------------------------------------------------
    def get_recent_tracks_page(
        self,
        user: str,
        page: int = 1,
        limit: int = RECENT_TRACKS_MAX_LIMIT,
        time_from: int | None = None,
        time_to: int | None = None,
    ) -> dict[str, Any]:
        """One page of ``[time_from, time_to)`` (bounds passed through as Last.fm reads them;
        None leaves a bound open). Same signature as the synthetic source."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be within 1..1000 (Last.fm's bounds), got {limit}")
        params = {"user": user, "page": int(page), "limit": int(limit)}
        if time_from is not None:
            params["from"] = int(time_from)
        if time_to is not None:
            params["to"] = int(time_to)
        return self.call("user.getRecentTracks", params, user=user)

    def recent_tracks_cursor(
        self, user: str, time_from: int, time_to: int, limit: int = RECENT_TRACKS_MAX_LIMIT
    ) -> RecentTracksCursor:
        """A fresh cursor with ``time_to`` pinned to ``min(time_to, now)``."""
        if time_to <= time_from:
            raise ValueError(f"empty window: time_from {time_from} must be before time_to {time_to}")
        pinned = min(int(time_to), int(self._clock()))
        return RecentTracksCursor(user=user, time_from=int(time_from), time_to=max(pinned, int(time_from)), limit=limit)

    def iter_recent_tracks(self, cursor: RecentTracksCursor) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(page_number, payload)`` from ``cursor.next_page`` on, advancing the cursor
        after each page is consumed. Raises :class:`PaginationShiftedError` if the window's
        total changes between pages."""
        if cursor.time_to <= cursor.time_from:
            # The pinned window is empty (it starts now or later): nothing can be in it yet.
            cursor.total, cursor.total_pages = 0, 0
            return
        while not cursor.done:
            page_number = cursor.next_page
            payload = self.get_recent_tracks_page(
                cursor.user, page=page_number, limit=cursor.limit, time_from=cursor.time_from, time_to=cursor.time_to
            )
            paging = recent_tracks_paging(payload)
            if cursor.total is None:
                cursor.total, cursor.total_pages = paging.total, paging.total_pages
            elif (paging.total, paging.total_pages) != (cursor.total, cursor.total_pages):
                raise PaginationShiftedError(
                    f"Last.fm user.getRecentTracks: the window [{cursor.time_from}, {cursor.time_to}) of user "
                    f"{cursor.user!r} changed from {cursor.total} to {paging.total} scrobbles during the walk "
                    "(a back-dated scrobble arrived); fetch the window again from page 1.",
                    source="lastfm",
                    operation="user.getRecentTracks",
                    context={"user": cursor.user},
                )
            yield page_number, payload
            cursor.next_page = page_number + 1

    def get_recent_tracks_pages(
        self, user: str, time_from: int, time_to: int, limit: int = RECENT_TRACKS_MAX_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every page of ``[time_from, time_to)``, newest first, ``to`` pinned (see module doc)."""
        cursor = self.recent_tracks_cursor(user, time_from, time_to, limit)
        for _page_number, payload in self.iter_recent_tracks(cursor):
            yield payload

    def fetch_recent_tracks(
        self,
        user: str,
        time_from: int,
        time_to: int,
        limit: int = RECENT_TRACKS_MAX_LIMIT,
        *,
        max_restarts: int = 2,
    ) -> RecentTracksFetch:
        """All of one user's window in memory, parsed; restarts the walk if the window shifts.

        Typed errors propagate (``skippable`` ones concern this user only). Rows outside
        ``[time_from, time_to)`` are rejected by the parser's window guard, never kept.
        """
        restarts = 0
        while True:
            cursor = self.recent_tracks_cursor(user, time_from, time_to, limit)
            fetch = RecentTracksFetch(user=user, time_from=cursor.time_from, time_to=cursor.time_to, restarts=restarts)
            try:
                for _page_number, payload in self.iter_recent_tracks(cursor):
                    fetch.pages.append(payload)
                    fetch.result.extend(parse_recent_tracks(payload, user, window=(cursor.time_from, cursor.time_to)))
            except PaginationShiftedError:
                if restarts >= max_restarts:
                    raise
                restarts += 1
                continue
            fetch.total_reported = cursor.total or 0
            return fetch

    def recent_tracks_for_days(self, users: Sequence[str], first: date, last: date) -> Iterator[UserWindow]:
        """Each user's ``[first, last]`` in one walk (see :class:`LastfmSource`)."""
        yield from fetch_each_user(self.fetch_recent_tracks, users, day_bounds(first)[0], day_bounds(last)[1])

    # -- other methods (payloads as Last.fm sends them) ------------------------------------------------
    def get_user_info(self, user: str) -> dict[str, Any]:
        return self.call("user.getInfo", {"user": user}, user=user)

    def get_user_top_artists(self, user: str, period: str = "overall", limit: int = 50, page: int = 1) -> dict:
        return self.call(
            "user.getTopArtists", {"user": user, "period": period, "limit": limit, "page": page}, user=user
        )

    def get_user_top_tracks(self, user: str, period: str = "overall", limit: int = 50, page: int = 1) -> dict:
        return self.call("user.getTopTracks", {"user": user, "period": period, "limit": limit, "page": page}, user=user)

    def get_chart_top_tracks(self, limit: int = 50, page: int = 1) -> dict[str, Any]:
        return self.call("chart.getTopTracks", {"limit": limit, "page": page})

    def get_chart_top_artists(self, limit: int = 50, page: int = 1) -> dict[str, Any]:
        return self.call("chart.getTopArtists", {"limit": limit, "page": page})

    def get_tag_top_tracks(self, tag: str, limit: int = 50, page: int = 1) -> dict[str, Any]:
        return self.call("tag.getTopTracks", {"tag": tag, "limit": limit, "page": page}, tag=tag)

    def get_tag_top_artists(self, tag: str, limit: int = 50, page: int = 1) -> dict[str, Any]:
        return self.call("tag.getTopArtists", {"tag": tag, "limit": limit, "page": page}, tag=tag)

    def get_artist_top_tags(self, artist: str, mbid: str | None = None, autocorrect: bool = False) -> dict[str, Any]:
        params = {"artist": artist, "mbid": mbid, "autocorrect": autocorrect}
        return self.call("artist.getTopTags", params, artist=artist)

    def get_track_info(
        self, artist: str, track: str, mbid: str | None = None, username: str | None = None
    ) -> dict[str, Any]:
        """track.getInfo; note its ``duration`` is in **milliseconds** (lists use seconds)."""
        params = {"artist": artist, "track": track, "mbid": mbid, "username": username}
        return self.call("track.getInfo", params, artist=artist, track=track)

    def get_artist_similar(self, artist: str, limit: int = 30, mbid: str | None = None) -> dict[str, Any]:
        return self.call("artist.getSimilar", {"artist": artist, "limit": limit, "mbid": mbid}, artist=artist)


def fetch_users_recent_tracks(
    client: LastfmClient, users: list[str] | tuple[str, ...], time_from: int, time_to: int
) -> dict[str, RecentTracksFetch | SourceError]:
    """Each user's window, or the typed error that made that user skippable.

    Fatal errors (invalid key) and transient ones that outlived the retries propagate: the
    caller fails the partition rather than writing it half-fetched.
    """
    return dict(fetch_each_user(client.fetch_recent_tracks, users, time_from, time_to))
