"""What every request passes through, whichever route answers it: metrics, the access log, CORS.

The service's hot routes are answered without ASGI (see ``app.py``), so its middleware is not
ASGI middleware but two plain hooks around each ``Exchange`` -- the request and its answer --
in the style of Falcon's ``process_request``/``process_response``:

- ``before(exchange)`` may answer early (a CORS preflight) by returning ``(status, body)``;
- ``after(exchange)`` sees the final answer of every request (hot or not, errors, timeouts,
  413s, client disconnects) and may add response headers, count or log it.

Hooks are synchronous and cheap: at 1000 connections on two cores every microsecond per
request is latency for the others. ``create_app(middleware=...)`` adds more.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

import numpy as np
import orjson

from music_platform.serving.metrics import Metrics
from music_platform.serving.service import error_json

log = logging.getLogger(__name__)

JSON_HEADERS: list[tuple[str, str]] = [("content-type", "application/json")]
# Status recorded for a request whose client went away before it was answered (nginx's
# convention): nothing is sent, and it is neither a client error nor a server error.
CLIENT_CLOSED_REQUEST = 499


class Headers(Protocol):
    def get(self, key: str, default: str | None = None) -> str | None: ...


class RequestSource(Protocol):
    """Where an exchange reads the request's headers and client address, when a hook asks:
    an RSGI scope as it is, or ``AsgiSource`` for an ASGI one."""

    @property
    def headers(self) -> Headers: ...

    @property
    def client(self) -> str: ...


class Exchange:
    """One request and, once answered, its answer.

    ``headers`` and ``client`` are read from the server's request object the first time a hook
    asks for them: with the access log off and no CORS, a hot request never builds them."""

    __slots__ = (
        "method",
        "path",
        "query_string",
        "started",
        "finished",
        "route",
        "status",
        "body",
        "response_headers",
        "close",
        "cors_origin",
        "source",
        "_headers",
        "_client",
    )

    def __init__(self, method: str, path: str, query_string: str, started: float, source: RequestSource) -> None:
        self.method = method
        self.path = path  # percent-decoded
        self.query_string = query_string  # as sent
        self.started = started
        self.finished = started  # set when the answer is final, before the ``after`` hooks
        self.route = "other"  # a route template (ids never become metric labels)
        self.status = 500
        self.body = b""
        self.response_headers = JSON_HEADERS
        self.close = False  # ask the server to close the connection after the answer
        self.cors_origin: str | None = None
        self.source = source  # the server's request object, as it is (read through ``headers``/``client``)
        self._headers: Headers | None = None
        self._client: str | None = None

    @property
    def headers(self) -> Headers:
        """The request headers (lower-case names)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = self.source.headers
        return headers

    @property
    def client(self) -> str:
        """The client's address as ``host:port``."""
        client = self._client
        if client is None:
            client = self._client = self.source.client
        return client

    def answer(self, route: str, status: int, body: bytes) -> None:
        self.route, self.status, self.body = route, status, body

    def add_header(self, name: str, value: str) -> None:
        # The default list is shared by every request: copy before the first change.
        self.response_headers = [*self.response_headers, (name, value)]


class Middleware(Protocol):
    def before(self, exchange: Exchange) -> tuple[int, bytes] | None: ...

    def after(self, exchange: Exchange) -> None: ...


class BaseMiddleware:
    """Hooks that do nothing; a subclass that keeps this ``before`` is not called before requests."""

    def before(self, exchange: Exchange) -> tuple[int, bytes] | None:
        return None

    def after(self, exchange: Exchange) -> None:
        return None


def has_before_hook(middleware: Middleware) -> bool:
    return getattr(type(middleware), "before", None) is not BaseMiddleware.before


class MetricsMiddleware(BaseMiddleware):
    """Prometheus request counts and latency (``serving/metrics.py``) for every request."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._observe = metrics.observe  # bound once: this runs for every request

    def after(self, exchange: Exchange) -> None:
        self._observe(exchange.route, exchange.method, exchange.status, exchange.finished - exchange.started)


class CorsMiddleware(BaseMiddleware):
    """CORS for browser clients on other origins; installed only when origins are configured
    (MUSIC_PLATFORM_CORS_ORIGINS). Preflights of allowed origins get 204, of others 403."""

    ALLOW_METHODS = "GET, HEAD, POST"
    ALLOW_HEADERS = ("content-type", "authorization")
    MAX_AGE = "600"

    def __init__(self, origins: Sequence[str]) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def _allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def before(self, exchange: Exchange) -> tuple[int, bytes] | None:
        origin = exchange.headers.get("origin")
        if not origin:
            return None
        allowed = self._allowed(origin)
        if allowed:
            exchange.cors_origin = origin
        if exchange.method != "OPTIONS" or not exchange.headers.get("access-control-request-method"):
            return None
        exchange.route = "preflight"
        if not allowed:
            exchange.cors_origin = None
            return 403, error_json(403, f"origin {origin[:200]} is not allowed (MUSIC_PLATFORM_CORS_ORIGINS)")
        requested = exchange.headers.get("access-control-request-headers") or ""
        unknown = [h.strip() for h in requested.lower().split(",") if h.strip() and h.strip() not in self.ALLOW_HEADERS]
        if unknown:
            exchange.cors_origin = None
            return 403, error_json(403, f"request header(s) not allowed: {', '.join(unknown)[:200]}")
        exchange.add_header("access-control-allow-methods", self.ALLOW_METHODS)
        exchange.add_header("access-control-allow-headers", ", ".join(self.ALLOW_HEADERS))
        exchange.add_header("access-control-max-age", self.MAX_AGE)
        return 204, b""

    def after(self, exchange: Exchange) -> None:
        if exchange.cors_origin is not None:
            exchange.add_header("access-control-allow-origin", "*" if self.any_origin else exchange.cors_origin)
            if not self.any_origin:
                exchange.add_header("vary", "origin")


class AccessLog:
    """JSON lines, one per request, written in batches of whole lines.

    What waits to be written is buffered in memory (``pending``) and written at most every
    ``flush_seconds`` (or sooner, once ``MAX_PENDING_LINES`` wait), so a request never waits for
    a system call. ``render`` turns what waits into whole lines at the flush (by default it is
    lines already). Several worker processes share the target, so no write may ever split a
    line of one worker with a line of another:

    - into a pipe (stdout under a process manager) writes are at most ``PIPE_BUF`` bytes, which
      the kernel writes whole;
    - into a regular file (a file target, or stdout redirected to one) each ``write`` is placed
      whole (Linux locks the file position, or the inode with ``O_APPEND``, for the whole
      write), so writes take up to ``FILE_WRITE_BYTES``: a system call per ~250 lines, not ~16.

    A worker killed with SIGKILL loses at most the last ``flush_seconds`` of lines.
    """

    PIPE_WRITE_BYTES = 4096  # PIPE_BUF on Linux: pipe writes up to this size are atomic
    FILE_WRITE_BYTES = 64 * 1024
    MAX_PENDING_LINES = 1024

    def __init__(self, target: str, flush_seconds: float = 1.0) -> None:
        self.target = target
        self.flush_seconds = flush_seconds
        if target == "stdout":
            self.fd = 1
            self.owns_fd = False
        else:
            self.fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.owns_fd = True
        try:
            regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        except OSError:
            regular = False
        self.write_bytes = self.FILE_WRITE_BYTES if regular else self.PIPE_WRITE_BYTES
        # One list for the worker's life (flush empties it in place), so a writer may bind its
        # ``append``/``extend`` once.
        self.pending: list = []
        # Whole lines (each ending in a newline) of what waited; by default it waited as lines.
        self.render: Callable[[list], bytes] = b"".join
        self.failed = False

    def write(self, line: bytes) -> None:
        pending = self.pending
        pending.append(line)
        if len(pending) >= self.MAX_PENDING_LINES:
            self.flush()

    def flush(self) -> None:
        records = self.pending.copy()
        self.pending.clear()
        if not records:
            return
        try:
            data = self.render(records)
        except Exception:  # a bad record must not take the other lines (or requests) with it
            log.exception("access log: a batch of %d values could not be formatted and is dropped", len(records))
            return
        # Writes of whole lines, each as large as the target allows (a line longer than that
        # is written alone).
        limit, start, end = self.write_bytes, 0, len(data)
        view = memoryview(data)
        while end - start > limit:
            cut = data.rfind(b"\n", start, start + limit) + 1
            if cut <= start:
                cut = data.find(b"\n", start + limit) + 1 or end
            self._write(view[start:cut])
            start = cut
        if start < end:
            self._write(view[start:end])

    def _write(self, data: bytes | memoryview) -> None:
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError as exc:  # a closed stdout must not take requests down with it
            if not self.failed:
                log.error("access log: cannot write to %s (%s); lines are dropped", self.target, exc)
                self.failed = True

    def close(self) -> None:
        self.flush()
        if self.owns_fd:
            os.close(self.fd)


# The access log's fields, in the order of each line.
ACCESS_LOG_KEYS = (
    "ts",
    "client",
    "method",
    "path",
    "query",
    "route",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "pid",
)
MAX_LOGGED_URL_PART = 2048  # characters of a path or query string written to a line
MAX_LOGGED_USER_AGENT = 256


def _decimals(thousandths: int) -> str:
    """``.139``, ``.1``, ``.0``: the fraction of a number of thousandths as orjson (and Python's
    ``repr``) writes a float, the shortest text that reads back as the same value."""
    return "." + (f"{thousandths:03d}".rstrip("0") or "0")


# A line is fixed text (keys, quotes, commas) between its values, in ``ACCESS_LOG_KEYS``
# order. The fixed text after a timestamp's milliseconds and after a duration's fraction is
# joined to them ahead of time: 1,000 texts each, so a batch joins 19 pieces per line.
MILLIS_THEN_CLIENT = tuple(f'.{ms:03d}Z","client":"' for ms in range(1000))
DECIMALS_THEN_USER_AGENT = tuple(_decimals(n) + ',"user_agent":"' for n in range(1000))
LINE_START = '{"ts":"'
LINE_PIECES = 19


class AccessLogMiddleware(BaseMiddleware):
    """The structured access log: one JSON object per request (turn off with
    MUSIC_PLATFORM_ACCESS_LOG=off or ``music-platform serve --no-access-log``).

    A request only records its values: one ``extend`` of the buffer by ``RECORD`` values
    (no object per request outlives it, so the garbage collector is not woken by the log).
    The lines are made when the buffer is written (``AccessLog.flush``: once a second, or once
    ``MAX_PENDING_LINES`` requests wait), a batch at a time: timestamps and durations with
    numpy, one ``dict`` per line (keys ``ACCESS_LOG_KEYS``) and one ``orjson.dumps`` of the
    whole batch, so every string (path, query and user agent, which a client sends, too) is
    escaped by orjson. ``ts`` is the wall-clock time the answer was final: the exchange's
    ``finished`` (a ``perf_counter`` reading, shared with the metrics) plus the offset to the
    wall clock read at the flush; its text is made once per distinct millisecond of the batch.
    Why so: in the server, the log's Python work costs what its instructions predict, not what
    a hot loop in process shows (docs/serving.md, "What the access log costs")."""

    RECORD = 10  # values recorded per request (the order of ``after``)

    def __init__(self, log_file: AccessLog, clock: Callable[[], float] = time.time) -> None:
        self.log_file = log_file
        self.clock = clock
        self.pid = os.getpid()
        self._pending = log_file.pending
        self._extend = log_file.pending.extend
        self._max_pending = log_file.MAX_PENDING_LINES * self.RECORD
        self._second = -1
        self._second_stamp = ""
        # The fixed text of a batch's lines: ``render`` puts the values in the ``None`` places.
        self._line_end = f'","pid":{self.pid}}}\n'
        self._template: list[str | None] = [None, None, None]  # second, millisecond, client
        for fixed in ('","method":"', '","path":"', '","query":"', '","route":"', '","status":', ',"bytes":'):
            self._template += [fixed, None]
        self._template += [',"duration_ms":', None, None, None]  # whole ms, fraction, user agent
        # Texts made once: a second's (with the end of the line before it); integers' (statuses,
        # sizes and whole milliseconds repeat: a dict lookup is cheaper than ``str``).
        self._seconds = _Texts(self._second_text, limit=64)
        self._numbers = _Texts(str, limit=8192)
        log_file.render = self.render

    def after(self, exchange: Exchange) -> None:
        # Client and user agent straight from the server's request object: one read each, no
        # Python frame in between (the exchange's cached ``headers`` only helps a request whose
        # headers a CORS hook already read).
        source = exchange.source
        self._extend(
            (
                exchange.finished,
                exchange.started,
                source.client,
                exchange.method,
                exchange.path,
                exchange.query_string,
                exchange.route,
                exchange.status,
                len(exchange.body),
                source.headers.get("user-agent", ""),
            )
        )
        if len(self._pending) >= self._max_pending:
            self.log_file.flush()

    def _second_text(self, second: int) -> str:
        """The end of the line before, and the start of a line up to its timestamp's second."""
        return self._line_end + LINE_START + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))

    def render(self, values: list) -> bytes:
        """The JSON lines of the recorded requests, in their order."""
        step = self.RECORD
        finished = np.array(values[0::step], dtype=np.float64)
        started = np.array(values[1::step], dtype=np.float64)
        offset = self.clock() - perf_counter()  # re-read at every flush: the clock may be set or slewed
        millis = ((finished + offset) * 1000).astype(np.int64)  # the wall-clock time, in ms
        micros = ((finished - started) * 1e6).astype(np.int64)  # shown as ms, three decimals
        clients, methods, routes = values[2::step], values[3::step], values[6::step]
        paths = _truncated(values[4::step], MAX_LOGGED_URL_PART)
        queries = _truncated(values[5::step], MAX_LOGGED_URL_PART)
        agents = _truncated(values[9::step], MAX_LOGGED_USER_AGENT)
        try:
            # orjson writes a string as its UTF-8 bytes unless a character needs escaping, and
            # every escape has a backslash; it refuses what is not valid Unicode.
            plain = b"\\" not in orjson.dumps([clients, methods, paths, queries, routes, agents])
        except TypeError:  # orjson.JSONEncodeError
            plain = False
        if not plain:
            return self._render_objects(values, millis.tolist(), micros.tolist())
        # No string needs escaping: the lines are the fixed text around the values as they
        # are, joined once, all in C (no Python call per line).
        seconds, thousandths = np.divmod(millis, 1000)
        whole, fraction = np.divmod(micros, 1000)
        pieces = self._template * len(clients)
        first, last = int(seconds[0]), int(seconds[-1])
        if first == last:  # a batch within one second (it is written once a second, or sooner)
            pieces[0::LINE_PIECES] = [self._seconds[first]] * len(clients)
        else:
            pieces[0::LINE_PIECES] = map(self._seconds.__getitem__, seconds.tolist())
        pieces[1::LINE_PIECES] = map(MILLIS_THEN_CLIENT.__getitem__, thousandths.tolist())
        pieces[2::LINE_PIECES] = clients
        pieces[4::LINE_PIECES] = methods
        pieces[6::LINE_PIECES] = paths
        pieces[8::LINE_PIECES] = queries
        pieces[10::LINE_PIECES] = routes
        numbers = self._numbers.__getitem__
        pieces[12::LINE_PIECES] = map(numbers, values[7::step])  # status
        pieces[14::LINE_PIECES] = map(numbers, values[8::step])  # bytes
        pieces[16::LINE_PIECES] = map(numbers, whole.tolist())  # whole milliseconds
        pieces[17::LINE_PIECES] = map(DECIMALS_THEN_USER_AGENT.__getitem__, fraction.tolist())
        pieces[18::LINE_PIECES] = agents
        pieces[0] = pieces[0][len(self._line_end) :]  # no line before the first
        pieces.append(self._line_end)
        try:
            text = "".join(pieces)
        except TypeError:  # a value that is not a string (from another request source): orjson's way
            return self._render_objects(values, millis.tolist(), micros.tolist())
        return text.encode()

    def _timestamp(self, millis: int) -> str:
        """ISO 8601 in UTC with milliseconds of ``millis`` since the epoch."""
        seconds, rest = divmod(millis, 1000)
        if seconds != self._second:
            self._second = seconds
            self._second_stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{self._second_stamp}.{rest:03d}Z"

    def _render_objects(self, values: list, millis: list[int], micros: list[int]) -> bytes:
        """The lines of a batch with a string to escape (or one that is not valid Unicode):
        one dict per line and one ``orjson.dumps`` of the whole batch."""
        step = self.RECORD
        pid = self.pid
        lines = [
            {
                "ts": self._timestamp(ms),
                "client": client,
                "method": method,
                "path": path,
                "query": query,
                "route": route,
                "status": status,
                "bytes": size,
                "duration_ms": us / 1000,
                "user_agent": user_agent,
                "pid": pid,
            }
            for ms, client, method, path, query, route, status, size, us, user_agent in zip(
                millis,
                values[2::step],
                values[3::step],
                _truncated(values[4::step], MAX_LOGGED_URL_PART),
                _truncated(values[5::step], MAX_LOGGED_URL_PART),
                values[6::step],
                values[7::step],
                values[8::step],
                micros,
                _truncated(values[9::step], MAX_LOGGED_USER_AGENT),
                strict=True,
            )
        ]
        try:
            data = orjson.dumps(lines)
            # One JSON array of objects whose first key is "ts": between two objects, and
            # nowhere else, it reads '},{"ts":' (in a string every '"' is escaped, and a
            # string's closing '"' is never followed by 'ts"'), so the lines are cut there.
        except TypeError:  # orjson.JSONEncodeError: keep every line that can be written
            return _each_line(lines)
        return data[1:-1].replace(b'},{"ts":', b'}\n{"ts":') + b"\n"


class _Texts(dict):
    """A value's text in a line, made once by ``make`` and kept (at most ``limit`` of them)."""

    __slots__ = ("limit", "make")

    def __init__(self, make: Callable[[Any], str], limit: int = 1024) -> None:
        super().__init__()
        self.make = make
        self.limit = limit

    def __missing__(self, key: Any) -> str:
        text = self.make(key)
        if len(self) >= self.limit:
            self.clear()
        self[key] = text
        return text


def _truncated(texts: list[str], limit: int) -> list[str]:
    if max(map(len, texts), default=0) <= limit:
        return texts
    return [text[:limit] for text in texts]


def _each_line(lines: list[dict]) -> bytes:
    """The lines of a batch that one of them spoiled, each serialised alone."""
    kept: list[bytes] = []
    dropped: list[dict] = []
    for line in lines:
        try:
            kept.append(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        except TypeError:
            dropped.append(line)
    if dropped:
        log.warning(
            "access log: %d of %d lines could not be formatted and are dropped; the first: %r",
            len(dropped),
            len(lines),
            dropped[0],
        )
    return b"".join(kept)
