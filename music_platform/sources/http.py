"""The HTTP layer every API client shares (Last.fm now, Spotify next).

One :class:`HttpClient` per API gives:

- **timeouts** on every request (:class:`Timeouts`: connect and read, seconds);
- a **rate limit** shared by every thread of the process (:class:`RateLimiter`, a GCRA token
  bucket; :func:`shared_rate_limiter` returns one instance per name and rate);
- **retries** with exponential backoff plus random jitter on retryable failures, bounded by a
  number of attempts *and* a total deadline (:class:`RetryPolicy`, driven by ``tenacity``);
  a server's ``Retry-After`` is honoured up to ``retry_after_cap_s`` and past the cap the
  call fails at once with :class:`RateLimitedError` so the caller can fail over;
- **typed errors** (``music_platform.sources.errors``) whose messages never contain a secret:
  every secret the auth knows is redacted from URLs, exception texts and body snippets, and
  a requests/urllib3 exception is never chained (its text holds the full URL).

Extension points (how the Spotify client plugs in):

``auth`` (:class:`Auth`)
    ``apply(call)`` adds credentials to a :class:`PreparedCall` (params, form data or
    headers); ``refresh()`` is called **once per request** after a 401
    (:class:`AuthenticationExpiredError`) and returns True if a retry makes sense;
    ``secrets()`` lists every string to redact. :class:`ApiKeyAuth` puts a key in the query
    or form body (Last.fm); :class:`BearerTokenAuth` holds an OAuth access token fetched by a
    callable, refreshes it ``refresh_margin_s`` before expiry and after a 401 (Spotify
    client-credentials).

``classify`` (``Callable[[ResponseInfo], SourceError | None]``)
    Looks at one response (status, headers, decoded JSON or None, redacted body snippet) and
    returns the error to raise, or None for success. The error's ``retryable`` flag decides
    whether the attempt is retried. :func:`classify_status` is the generic HTTP mapping
    (429 → RateLimitedError with ``Retry-After``, 5xx → transient, 401 → token expired,
    404 → not found, other 4xx → permanent, non-JSON body → retryable format error); an API
    classifier checks its own error envelope first (Last.fm: ``{"error": N}`` even on 200)
    and falls back to it. Spotify's should map 403 on a withdrawn endpoint to
    ``CapabilityUnavailableError`` (permanent, not retried).

``retry`` (:class:`RetryPolicy`) and ``rate_limiter`` (:class:`RateLimiter`)
    Per API: Last.fm uses 5 requests/s with burst 1; Spotify has no published rate, so use
    a modest limit and rely on ``Retry-After``.

``on_send`` (``Callable[[str], None]``)
    Called with the operation name when a request leaves, after its rate-limit slot
    (metrics, tests of the rate limit).

The layer knows nothing about Dagster; it logs through ``logging`` (logger
``music_platform.sources.http``) and only ever logs redacted text.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from music_platform.sources.errors import (
    AuthenticationExpiredError,
    InvalidRequestError,
    NotFoundError,
    PermanentSourceError,
    RateLimitedError,
    ResponseFormatError,
    SourceError,
    TransientSourceError,
)

logger = logging.getLogger(__name__)

USER_AGENT = "music_platform/0.1 (+https://github.com/music-platform; data platform reference implementation)"
_SNIPPET_CHARS = 160


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt timeouts in seconds (pylast uses 5 s connect, 20 s read)."""

    connect_s: float = 5.0
    read_s: float = 20.0

    def as_requests(self) -> tuple[float, float]:
        return (self.connect_s, self.read_s)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical request tries before giving up.

    Waits grow as ``initial_backoff_s * 2**n`` up to ``max_backoff_s`` plus a uniform random
    jitter of up to ``jitter_s`` (so parallel workers do not retry in lock-step). A
    rate-limit answer without ``Retry-After`` waits at least ``rate_limited_backoff_s``.
    The attempt count and the ``deadline_s`` (time since the first attempt, sleeps included)
    both bound the retries; a wait that would end past the deadline is not started.
    """

    max_attempts: int = 6
    deadline_s: float = 120.0
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    jitter_s: float = 1.0
    rate_limited_backoff_s: float = 10.0
    retry_after_cap_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")


NO_RETRY = RetryPolicy(max_attempts=1)


# -- rate limiting -----------------------------------------------------------------------------------


class RateLimiter:
    """Thread-safe token bucket in its GCRA form (a "theoretical arrival time" per slot).

    ``rate_per_s`` requests per second on average, at most ``burst`` back to back. With
    ``burst=1`` consecutive requests start at least ``1/rate_per_s + margin_s`` apart, so no
    one-second window holds more than ``rate_per_s`` request starts. ``margin_s`` absorbs the
    jitter between the moment we send and the moment the server counts (a few ms on a busy
    machine): without it six evenly spaced requests can land 0.998 s apart at the server.
    Each caller reserves its slot under the lock and sleeps outside it, so threads are served
    in arrival order without polling.

    With ``burst=1`` the limiter also keeps the *actual* starts apart (``space_actual_starts``):
    the plan puts slots ``interval_s`` apart, but a thread that wakes late from its wait (a busy
    machine) starts late while its successor's slot is still on the plan, so two starts could
    come closer than ``interval_s`` and six fall within one second. Each start is recorded and
    the next one held until ``interval_s`` has passed since it.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        *,
        margin_s: float = 0.0,
        space_actual_starts: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if margin_s < 0:
            raise ValueError("margin_s must not be negative")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.interval_s = 1.0 / rate_per_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._theoretical_arrival = float("-inf")
        self.space_actual_starts = burst == 1 if space_actual_starts is None else space_actual_starts
        self._last_start = float("-inf")

    def answered(self) -> None:
        """A request's answer is in: nothing to do for a bucket (it spaces starts only)."""

    def acquire(self) -> float:
        """Block until a request may start; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            arrival = max(self._theoretical_arrival, now)
            allowed_at = arrival - (self.burst - 1) * self.interval_s
            wait = max(0.0, allowed_at - now)
            self._theoretical_arrival = arrival + self.interval_s
        if wait > 0:
            self._sleep(wait)
        if not self.space_actual_starts:
            return wait
        while True:
            with self._lock:
                now = self._clock()
                late = self._last_start + self.interval_s - now
                if late <= 0:
                    self._last_start = now
                    return wait
            self._sleep(late)
            wait += late


class AnsweredWindowLimiter:
    """At most ``max_requests`` requests reach the server in any ``window_s``, whatever the delay
    between sending and arriving: each request starts only when fewer than ``max_requests``
    earlier ones are unanswered or were answered within the last ``window_s + margin_s``.

    A token bucket spaces the *starts*; a request that leaves late (a busy machine) or travels
    slowly then arrives close to the next one, and six requests spaced 220 ms apart once arrived
    within 0.99 s at the fake server. This limiter leans on causality instead: the server counts a
    request after it was sent and before it answers, so if request ``j`` starts more than
    ``window_s`` after the answer to request ``i`` (``i`` sent earlier), ``j`` arrives more than
    ``window_s`` after ``i`` did. Of any ``max_requests + 1`` arrivals, the one sent last started
    while the others were unanswered or answered within ``window_s`` — which the rule forbids.
    The price is the round trip: a sequential caller gets ``max_requests / (window_s + margin_s +
    round trip)`` requests per second (~4.8/s at 5 per second and a 20-ms answer). Starts are also
    kept ``min_interval_s`` apart, so the requests spread over the window instead of leaving in a
    burst. Callers must call :meth:`answered` once per :meth:`acquire`, when the answer (or the
    failure) is in; :class:`HttpClient` does.
    """

    def __init__(
        self,
        max_requests: int = 5,
        window_s: float = 1.0,
        *,
        min_interval_s: float = 0.2,
        margin_s: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1 or window_s <= 0 or min_interval_s < 0 or margin_s < 0:
            raise ValueError("max_requests >= 1, window_s > 0, min_interval_s >= 0 and margin_s >= 0")
        self.max_requests = max_requests
        self.window_s = window_s
        self.min_interval_s = min_interval_s
        self.margin_s = margin_s
        self._clock = clock
        self._condition = threading.Condition()
        self._in_flight = 0
        self._answered: list[float] = []  # answer times within the window, oldest first
        self._last_start = float("-inf")

    def acquire(self) -> float:
        """Block until a request may start; returns the seconds waited."""
        started = self._clock()
        with self._condition:
            while True:
                now = self._clock()
                horizon = now - self.window_s - self.margin_s
                while self._answered and self._answered[0] <= horizon:
                    self._answered.pop(0)
                busy = self._in_flight + len(self._answered)
                wait = self._last_start + self.min_interval_s - now
                if busy >= self.max_requests:
                    if self._answered and len(self._answered) > busy - self.max_requests:
                        oldest = self._answered[busy - self.max_requests]
                        wait = max(wait, oldest - horizon)
                    else:
                        wait = max(wait, 0.05)  # an unanswered request must finish first
                if wait <= 0:
                    self._in_flight += 1
                    self._last_start = now
                    return now - started
                self._condition.wait(timeout=wait)

    def answered(self) -> None:
        """The request started by the matching :meth:`acquire` has its answer (or failed)."""
        with self._condition:
            self._in_flight = max(0, self._in_flight - 1)
            self._answered.append(self._clock())
            self._condition.notify_all()


_SHARED_LIMITERS: dict[tuple[str, float, int, float], RateLimiter] = {}
_SHARED_LIMITERS_LOCK = threading.Lock()


def shared_rate_limiter(name: str, rate_per_s: float, burst: int = 1, margin_s: float = 0.0) -> RateLimiter:
    """The process-wide limiter for ``name`` (e.g. ``"lastfm"``) at this rate.

    Every client built with the same name and rate in one process shares it, whatever
    thread it runs in. Separate processes do not share it: run the assets of one API
    under a concurrency pool of 1, or give each process a fraction of the rate.
    """
    key = (name, float(rate_per_s), int(burst), float(margin_s))
    with _SHARED_LIMITERS_LOCK:
        limiter = _SHARED_LIMITERS.get(key)
        if limiter is None:
            limiter = _SHARED_LIMITERS[key] = RateLimiter(rate_per_s, burst, margin_s=margin_s)
        return limiter


_SHARED_ANSWERED: dict[tuple[str, float], AnsweredWindowLimiter] = {}


def shared_answered_limiter(name: str, rate_per_s: float) -> AnsweredWindowLimiter:
    """The process-wide :class:`AnsweredWindowLimiter` for ``name`` at ``rate_per_s``: at most
    ``floor(rate)`` arrivals in any ``floor(rate) / rate`` seconds, starts ``1 / rate`` apart.

    For APIs whose limit counts arrivals at the server (Last.fm's 5 per second): a token bucket
    only spaces the starts, and on a loaded machine six of its requests 220 ms apart arrived
    within one second at the fake server.
    """
    if not rate_per_s > 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    key = (name, float(rate_per_s))
    with _SHARED_LIMITERS_LOCK:
        limiter = _SHARED_ANSWERED.get(key)
        if limiter is None:
            most = max(1, int(rate_per_s))
            limiter = _SHARED_ANSWERED[key] = AnsweredWindowLimiter(
                most, most / rate_per_s, min_interval_s=1.0 / rate_per_s
            )
        return limiter


# -- secrets ------------------------------------------------------------------------------------------

_SECRET_PARAMS = re.compile(
    r"(?i)\b(api_key|apikey|key|token|access_token|refresh_token|client_secret|secret|password|sk)=([^&\s'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


class Redactor:
    """Removes known secret values and anything that looks like a credential parameter."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for secret in self._secrets:
            out = out.replace(secret, "***")
        out = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=***", out)
        return _BEARER.sub(lambda m: f"{m.group(1)} ***", out)


def url_without_query(url: str) -> str:
    """``scheme://host/path`` of a URL: the query (where keys live) is never printed."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


# -- auth ------------------------------------------------------------------------------------------------


@dataclass
class PreparedCall:
    """One request about to be sent; auth and callers may change any field."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Auth(Protocol):
    def apply(self, call: PreparedCall) -> None: ...

    def refresh(self) -> bool: ...

    def secrets(self) -> tuple[str, ...]: ...


class ApiKeyAuth:
    """An API key sent as a parameter: in the form body for POST (never in a URL), else the query."""

    def __init__(self, key: str, param: str = "api_key") -> None:
        self._key = key
        self._param = param

    def apply(self, call: PreparedCall) -> None:
        if call.data is not None:
            call.data[self._param] = self._key
        else:
            call.params[self._param] = self._key

    def refresh(self) -> bool:
        return False  # a key cannot be refreshed; a 401/403 is final

    def secrets(self) -> tuple[str, ...]:
        return (self._key,)

    def __repr__(self) -> str:
        return f"ApiKeyAuth(param={self._param!r}, key=***)"


class BearerTokenAuth:
    """An OAuth bearer token from ``fetch_token() -> (access_token, expires_in_s)``.

    The token is fetched lazily, renewed ``refresh_margin_s`` before it expires, and renewed
    once more when the API answers 401 (see ``HttpClient``). Thread-safe. ``extra_secrets``
    are the strings ``fetch_token`` uses (client id/secret) so they are redacted too.
    """

    def __init__(
        self,
        fetch_token: Callable[[], tuple[str, float]],
        *,
        refresh_margin_s: float = 60.0,
        extra_secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_token = fetch_token
        self._refresh_margin_s = refresh_margin_s
        self._extra_secrets = tuple(s for s in extra_secrets if s)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._issued_tokens: list[str] = []
        self.fetch_count = 0

    def _renew(self) -> str:
        token, expires_in = self._fetch_token()
        self.fetch_count += 1
        self._token = token
        self._issued_tokens.append(token)
        self._expires_at = self._clock() + float(expires_in)
        return token

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._refresh_margin_s:
                return self._renew()
            return self._token

    def apply(self, call: PreparedCall) -> None:
        call.headers["Authorization"] = f"Bearer {self.token()}"

    def refresh(self) -> bool:
        with self._lock:
            self._renew()
        return True

    def secrets(self) -> tuple[str, ...]:
        return (*self._extra_secrets, *self._issued_tokens[-5:])

    def __repr__(self) -> str:
        return "BearerTokenAuth(token=***)"


# -- classification --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseInfo:
    """What a classifier may look at: never the raw URL, only redacted text."""

    source: str
    operation: str
    status: int
    headers: Mapping[str, str]
    payload: Any  # decoded JSON, or None when the body is not JSON
    snippet: str  # first characters of the body, redacted
    content_type: str
    context: Mapping[str, object]
    retry_after: float | None
    label: str = ""  # how messages name the API ("Last.fm"); the source name when empty

    @property
    def is_json(self) -> bool:
        return self.payload is not None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_status(info: ResponseInfo) -> SourceError | None:
    """Generic HTTP classification; API classifiers fall back to it after their own envelope."""
    where = f"{info.label or info.source or 'API'} {info.operation}".strip()
    common = {"source": info.source, "status": info.status, "operation": info.operation, "context": info.context}
    status = info.status
    if status == 429:
        wait = f" (Retry-After: {info.retry_after:g} s)" if info.retry_after is not None else ""
        return RateLimitedError(f"{where}: HTTP 429 rate limited{wait}.", retry_after=info.retry_after, **common)
    if status >= 500:
        kind = "JSON" if info.is_json else f"non-JSON ({info.content_type or 'no content type'})"
        return TransientSourceError(f"{where}: HTTP {status} with a {kind} body: {info.snippet!r}", **common)
    if status == 401:
        return AuthenticationExpiredError(f"{where}: HTTP 401, credentials rejected: {info.snippet!r}", **common)
    if status == 404:
        return NotFoundError(f"{where}: HTTP 404 not found: {info.snippet!r}", **common)
    if status == 403:
        return PermanentSourceError(f"{where}: HTTP 403 forbidden: {info.snippet!r}", **common)
    if 400 <= status < 500:
        return InvalidRequestError(f"{where}: HTTP {status}: {info.snippet!r}", **common)
    if not info.is_json:
        # A 2xx that is not JSON is a proxy/error page (Google frontend); worth another try.
        return ResponseFormatError(
            f"{where}: HTTP {status} but the body is not JSON ({info.content_type or 'no content type'}): "
            f"{info.snippet!r}",
            retryable=True,
            **common,
        )
    return None


Classifier = Callable[[ResponseInfo], "SourceError | None"]


def _brief(exc: BaseException) -> str:
    """``Type: message`` of a requests exception, without the URL it usually quotes."""
    text = re.sub(r"https?://\S+", "<url>", str(exc))
    text = re.sub(r"with url: \S+", "with url: <url>", text)
    return f"{type(exc).__name__}: {text}"


# -- tenacity glue -------------------------------------------------------------------------------------------


class _BackoffWait(wait_base):
    """Exponential backoff with jitter; rate-limit answers wait for Retry-After (capped) or longer."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        p = self.policy
        exponent = max(retry_state.attempt_number - 1, 0)
        wait = min(p.max_backoff_s, p.initial_backoff_s * (2**exponent)) + self.rng.uniform(0, p.jitter_s)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimitedError):
            if error.retry_after is not None:
                wait = max(wait, min(error.retry_after, p.retry_after_cap_s))
            else:
                wait = max(wait, p.rate_limited_backoff_s)
        return wait


class _RetryAfterBeyondCap(stop_base):
    """Stop at once when the server asks for a longer wait than the cap allows."""

    def __init__(self, cap_s: float) -> None:
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return isinstance(error, RateLimitedError) and (error.retry_after or 0) > self.cap_s


# -- the client ---------------------------------------------------------------------------------------------


class HttpClient:
    """JSON-over-HTTP with rate limit, timeouts, retries and typed, redacted errors.

    ``request_json`` is the one entry point; see the module docstring for the extension
    points. Thread-safe: each thread gets its own ``requests.Session``.
    """

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        label: str | None = None,
        classify: Classifier = classify_status,
        auth: Auth | None = None,
        rate_limiter: RateLimiter | AnsweredWindowLimiter | None = None,
        retry: RetryPolicy = RetryPolicy(),
        timeouts: Timeouts = Timeouts(),
        user_agent: str = USER_AGENT,
        session_factory: Callable[[], requests.Session] = requests.Session,
        rng: random.Random | None = None,
        on_send: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.label = label or source
        self.base_url = base_url
        self.classify = classify
        self.auth = auth
        self.rate_limiter = rate_limiter
        self.retry = retry
        self.timeouts = timeouts
        self.user_agent = user_agent
        self._session_factory = session_factory
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._rng = rng or random.Random()
        self.request_count = 0  # requests actually sent (attempts), for reports and tests
        self._count_lock = threading.Lock()
        #: Called with the operation name each time a request leaves (after its rate-limit slot):
        #: a hook for metrics and for tests that check the rate limit on our side of the wire.
        self.on_send = on_send

    # -- plumbing ---------------------------------------------------------------------------------
    def redactor(self) -> Redactor:
        return Redactor(self.auth.secrets() if self.auth else ())

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            # Retries are ours (they must see the JSON body); urllib3 must not retry underneath.
            adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.user_agent
            session.headers["Accept"] = "application/json"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def url_for(self, path: str = "") -> str:
        if not path:
            return self.base_url
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        return urljoin(base, path.lstrip("/"))

    # -- one attempt ----------------------------------------------------------------------------------
    def _send(self, call: PreparedCall, operation: str, context: Mapping[str, object]) -> requests.Response:
        redact = self.redactor()
        where = f"{self.label} {operation}".strip()
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        common = {"source": self.source, "operation": operation, "context": context}
        target = url_without_query(call.url)
        try:  # from the slot on: whatever happens, the limiter hears that the request is over
            with self._count_lock:
                self.request_count += 1
            if self.on_send is not None:
                self.on_send(operation)
            return self._session().request(
                call.method,
                call.url,
                params=call.params or None,
                data=call.data,
                headers=call.headers or None,
                timeout=self.timeouts.as_requests(),
            )
        except requests.Timeout as exc:
            kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
            limit = self.timeouts.connect_s if kind == "connect" else self.timeouts.read_s
            error: SourceError = TransientSourceError(
                redact(f"{where}: no answer from {target} within the {kind} timeout ({limit:g} s)"), **common
            )
        except requests.ConnectionError as exc:
            error = TransientSourceError(redact(f"{where}: cannot reach {target}: {_brief(exc)}"), **common)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            error = TransientSourceError(
                redact(f"{where}: the answer from {target} was cut off: {_brief(exc)}"), **common
            )
        except requests.RequestException as exc:
            error = InvalidRequestError(redact(f"{where}: invalid request to {target}: {_brief(exc)}"), **common)
        finally:
            if self.rate_limiter is not None:
                self.rate_limiter.answered()  # the answer (or the failure) is in
        # Raised outside the except blocks on purpose: the requests exception (whose text holds
        # the full URL) must be neither the cause nor the context of ours.
        raise error

    def _inspect(self, response: requests.Response, operation: str, context: Mapping[str, object]) -> ResponseInfo:
        redact = self.redactor()
        text = response.text if response.content else ""
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        snippet = " ".join(text[:_SNIPPET_CHARS].split())
        return ResponseInfo(
            source=self.source,
            label=self.label,
            operation=operation,
            status=response.status_code,
            headers=dict(response.headers),
            payload=payload,
            snippet=redact(snippet),
            content_type=response.headers.get("Content-Type", ""),
            context=context,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _attempt(self, make_call: Callable[[], PreparedCall], operation: str, context: Mapping[str, object]) -> Any:
        refreshed = False
        while True:
            call = make_call()
            if self.auth is not None:
                self.auth.apply(call)
            response = self._send(call, operation, context)
            info = self._inspect(response, operation, context)
            error = self.classify(info)
            if error is None:
                return info.payload
            if isinstance(error, AuthenticationExpiredError) and self.auth is not None and not refreshed:
                refreshed = True
                if self.auth.refresh():
                    logger.info("%s %s: credentials rejected (HTTP 401); refreshed once", self.source, operation)
                    continue
            raise error

    # -- the entry point ----------------------------------------------------------------------------------
    def request_json(
        self,
        method: str,
        path: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        operation: str = "",
        context: Mapping[str, object] | None = None,
    ) -> Any:
        """Send one logical request (retried as the policy says); return the decoded JSON.

        ``operation`` names the call in logs and errors; ``context`` (e.g. ``{"user": ...}``)
        lets classifiers write messages that name the entity.
        """
        method = method.upper()
        url = self.url_for(path)
        context = dict(context or {})
        operation = operation or f"{method} {urlsplit(url).path}"

        def make_call() -> PreparedCall:
            return PreparedCall(
                method=method,
                url=url,
                params=dict(params or {}),
                data=dict(data) if data is not None else None,
                headers=dict(headers or {}),
            )

        policy = self.retry
        started = time.monotonic()

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "%s %s: attempt %d/%d failed (%s); retrying in %.2f s",
                self.source,
                operation,
                state.attempt_number,
                policy.max_attempts,
                error,
                state.upcoming_sleep,
            )

        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts)
            | stop_before_delay(policy.deadline_s)
            | _RetryAfterBeyondCap(policy.retry_after_cap_s),
            wait=_BackoffWait(policy, self._rng),
            retry=retry_if_exception(lambda exc: isinstance(exc, SourceError) and exc.retryable),
            before_sleep=log_retry,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._attempt(make_call, operation, context)
        except SourceError as error:
            if error.retryable:
                elapsed = time.monotonic() - started
                if isinstance(error, RateLimitedError) and (error.retry_after or 0) > policy.retry_after_cap_s:
                    reason = (
                        f"the server asked to wait {error.retry_after:g} s, more than the "
                        f"{policy.retry_after_cap_s:g} s cap; not waiting so the caller can fail over"
                    )
                else:
                    reason = f"gave up after {attempts} attempt(s) in {elapsed:.1f} s"
                error.message = f"{error.message} [{reason}]"
                error.args = (error.message,)
            error.attempts = attempts  # type: ignore[attr-defined]
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
