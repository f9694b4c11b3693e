"""The hot path's shortcuts change nothing a client or an operator sees (issue 15, point 2).

- the answer cache answers byte for byte what the service computes, follows every reload and
  recent-listens refresh, keeps only known ids and stays within its budget;
- an RSGI request reads the scope's headers and client address only when a hook needs them,
  and the access log line is complete when it does;
- the access log writes whole lines (pipe-sized writes into a pipe, larger into a file);
- the request metrics add up across workers as before.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import threading
import time
import warnings

import orjson
import pytest

from music_platform.config import ConfigError
from music_platform.serving.app import SIMILAR_ROUTE, USER_ROUTE, create_app
from music_platform.serving.limits import MAX_K
from music_platform.serving.metrics import LATENCY_BUCKETS, RequestStats
from music_platform.serving.middleware import (
    ACCESS_LOG_KEYS,
    MAX_LOGGED_URL_PART,
    MAX_LOGGED_USER_AGENT,
    AccessLog,
    AccessLogMiddleware,
    Exchange,
    _decimals,
)
from music_platform.serving.sample_data import publish_version, write_sample_warehouse
from music_platform.serving.service import DEFAULT_ANSWER_CACHE_MB, AnswerCache, ServingConfig
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.test_serving import make_settings
from music_platform_tests.test_serving_recent import _write_recent

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:UserWarning")

USERS = 80


@pytest.fixture
def world(tmp_path):
    settings = make_settings(tmp_path)
    warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
    write_sample_warehouse(warehouse, users=USERS, artists=60, tracks=600, model_version="v1")
    return settings, warehouse


def _app(settings, **config):
    config.setdefault("access_log", "off")
    return create_app(settings, ServingConfig(reload_seconds=0, recent_listens_seconds=0, **config))


def _paths(app) -> list[str]:
    tracks = app.service.snapshot.catalogue.track_ids
    users = [f"/users/user_{n:07d}/recommendations" for n in (1, 2, 40, USERS)] + ["/users/nobody/recommendations"]
    similar = [f"/tracks/{tracks[i]}/similar" for i in (0, 7, 300)] + ["/tracks/no_such_track/similar"]
    queries = ["", "?k=1", "?k=3", "?k=10", f"?k={MAX_K}", f"?k={MAX_K + 1}", "?k=x", "?k=2&k=3"]
    return [path + query for path in users + similar for query in queries]


def test_cached_answers_are_the_computed_answers(world):
    settings, _ = world
    with TestClient(_app(settings)) as cached, TestClient(_app(settings, answer_cache_mb=0)) as uncached:
        for path in _paths(cached.app):
            first, again, computed = cached.get(path), cached.get(path), uncached.get(path)
            assert (first.status_code, first.content) == (computed.status_code, computed.content), path
            assert (again.status_code, again.content) == (computed.status_code, computed.content), path
        answers = cached.app.service.answer_cache().answers
        assert not uncached.app.service.answer_cache().answers  # 0 MiB: nothing kept
    # Only 200s of known ids are kept: not the unknown user's fallback, not the 404, not the 422s.
    assert answers and all(status == 200 for _, status, _ in answers.values())
    assert {route for route, _, _ in answers.values()} == {USER_ROUTE, SIMILAR_ROUTE}
    assert not any("nobody" in path or "no_such_track" in path for path, _ in answers)
    assert ("/users/user_0000001/recommendations", "k=3") in answers


def test_the_cache_follows_a_reload_to_a_new_publication(world):
    settings, warehouse = world
    path = "/users/user_0000005/recommendations?k=5"
    with TestClient(_app(settings)) as client:
        before = client.get(path).json()
        assert before["model_version"] == "v1" and client.get(path).json() == before  # now from the cache
        publish_version(warehouse, "v2", users=USERS, seed=5)
        assert client.app.service.reload().reloaded
        after = client.get(path).json()
    v2 = warehouse.query_df(
        "select track_id from ml.user_recommendations where user_id = 'user_0000005' and model_version = 'v2' "
        "order by rank limit 5"
    )
    assert after["model_version"] == "v2"
    assert [item["track_id"] for item in after["recommendations"]] == list(v2["track_id"])


def test_the_cache_follows_each_recent_listens_refresh(world):
    settings, warehouse = world
    user = "user_0000009"
    path = f"/users/{user}/recommendations?k={MAX_K}"
    with TestClient(_app(settings)) as client:
        service = client.app.service
        ids = [item["track_id"] for item in client.get(path).json()["recommendations"]]
        client.get(path)  # from the cache
        _write_recent(warehouse, {user: [ids[0]]})
        assert service.recent_refresher.refresh()
        after = [item["track_id"] for item in client.get(path).json()["recommendations"]]
        assert ids[0] not in after
        overlay, cache = service.recent, service.answer_cache()
        assert service.recent_refresher.refresh()  # the same listens: the overlay and its cache stay
        assert service.recent is overlay and service.answer_cache() is cache
        _write_recent(warehouse, {user: [ids[1]]})  # a later refresh: another track played
        assert service.recent_refresher.refresh()
        again = [item["track_id"] for item in client.get(path).json()["recommendations"]]
        assert ids[1] not in again and ids[0] in again


def test_the_cache_stays_within_its_budget(world):
    settings, _ = world
    with TestClient(_app(settings)) as client:
        snapshot = client.app.service.snapshot
    body = snapshot.user_recommendations_json("user_0000001", 10)
    entry = len(body) + AnswerCache.ENTRY_OVERHEAD_BYTES + 40
    cache = AnswerCache(snapshot, None, budget_bytes=3 * entry)
    for n in range(1, 8):
        user_path = f"/users/user_{n:07d}/recommendations"
        cache.put((user_path, "k=10"), (USER_ROUTE, 200, snapshot.user_recommendations_json(f"user_{n:07d}", 10)))
        assert cache.used_bytes <= cache.budget_bytes and 1 <= len(cache.answers) <= 3
    assert ("/users/user_0000007/recommendations", "k=10") in cache.answers  # the newest is always kept
    too_big = AnswerCache(snapshot, None, budget_bytes=10)
    too_big.put(("/users/user_0000001/recommendations", ""), (USER_ROUTE, 200, body))
    assert not too_big.answers and too_big.used_bytes == 0


def test_answer_cache_size_is_read_and_checked():
    assert ServingConfig.from_env({}).answer_cache_mb == DEFAULT_ANSWER_CACHE_MB
    assert ServingConfig.from_env({"MUSIC_PLATFORM_ANSWER_CACHE_MB": "0"}).answer_cache_mb == 0
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_ANSWER_CACHE_MB must be a whole number of MiB"):
        ServingConfig.from_env({"MUSIC_PLATFORM_ANSWER_CACHE_MB": "lots"})
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_ANSWER_CACHE_MB must be >= 0"):
        ServingConfig.from_env({"MUSIC_PLATFORM_ANSWER_CACHE_MB": "-1"})


class _Headers:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def items(self) -> list[tuple[str, str]]:
        return list(self.values.items())


class _Scope:
    """An RSGI HTTP scope as Granian hands it over, counting reads of headers and client."""

    def __init__(self, path: str, query_string: str = "", method: str = "GET", user_agent: str = "probe/1") -> None:
        self.method, self.path, self.query_string = method, path, query_string
        self.http_version, self.scheme, self.server = "1.1", "http", "127.0.0.1:8600"
        self._headers = _Headers({"host": "127.0.0.1:8600", "user-agent": user_agent})
        self.reads = {"headers": 0, "client": 0}

    @property
    def headers(self) -> _Headers:
        self.reads["headers"] += 1
        return self._headers

    @property
    def client(self) -> str:
        self.reads["client"] += 1
        return "10.1.2.3:4567"


class _Proto:
    def __init__(self) -> None:
        self.answers: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.answers.append((status, headers, b""))


def _rsgi(app, scope: _Scope) -> tuple[int, list[tuple[str, str]], bytes]:
    proto = _Proto()
    asyncio.run(app.__rsgi__(scope, proto))
    (answer,) = proto.answers
    return answer


def test_a_hot_request_reads_headers_and_client_only_for_the_access_log(world, tmp_path):
    settings, _ = world
    quiet = _app(settings)
    quiet.startup()
    scope = _Scope("/users/user_0000002/recommendations", "k=2")
    status, headers, body = _rsgi(quiet, scope)
    assert status == 200 and headers == [("content-type", "application/json")]
    assert body == quiet.service.user_recommendations("user_0000002", "k=2")[1]
    assert scope.reads == {"headers": 0, "client": 0}  # nothing asked for them

    log_path = tmp_path / "access.log"
    logged = _app(settings, access_log=str(log_path))
    logged.startup()
    scope = _Scope("/users/user_0000002/recommendations", "k=2", user_agent='odd "agent"\n')
    assert _rsgi(logged, scope)[2] == body
    assert scope.reads == {"headers": 1, "client": 1}  # read once each, for the log line
    missing = _Scope("/nowhere")
    assert _rsgi(logged, missing)[0] == 404
    logged.access_log.close()
    first, second = (orjson.loads(line) for line in log_path.read_bytes().splitlines())
    assert first["client"] == "10.1.2.3:4567" and first["user_agent"] == 'odd "agent"\n'
    assert (first["method"], first["path"], first["query"], first["route"]) == (
        "GET",
        "/users/user_0000002/recommendations",
        "k=2",
        "/users/{user_id}/recommendations",
    )
    assert (first["status"], first["bytes"], first["pid"]) == (200, len(body), os.getpid())
    assert first["ts"].endswith("Z") and first["duration_ms"] >= 0
    assert (second["route"], second["status"]) == ("other", 404)


def _lines(count: int) -> list[bytes]:
    return [orjson.dumps({"n": n, "pad": "x" * (200 + n % 50)}) + b"\n" for n in range(count)]


def test_the_access_log_writes_whole_lines_in_file_sized_writes(tmp_path, monkeypatch):
    target = tmp_path / "access.log"
    log = AccessLog(str(target))
    assert log.write_bytes == AccessLog.FILE_WRITE_BYTES
    writes: list[int] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(len(data)) or real_write(fd, data))
    lines = _lines(AccessLog.MAX_PENDING_LINES + 10)
    for line in lines:
        log.write(line)
    assert writes and len(log.pending) == 10  # a full buffer is written at once, the rest waits
    log.close()
    assert target.read_bytes() == b"".join(lines)
    assert max(writes) <= AccessLog.FILE_WRITE_BYTES and max(writes) > AccessLog.PIPE_WRITE_BYTES


def test_the_access_log_writes_at_most_pipe_buf_into_a_pipe(tmp_path, monkeypatch):
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = AccessLog(str(fifo))
        assert log.write_bytes == AccessLog.PIPE_WRITE_BYTES
        writes: list[bytes] = []
        real_write = os.write
        monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
        lines = _lines(100)
        for line in lines:
            log.write(line)
        log.close()
        received = b""
        while chunk := os.read(reader, 1 << 16):
            received += chunk
    finally:
        os.close(reader)
    assert received == b"".join(lines)
    assert all(len(data) <= AccessLog.PIPE_WRITE_BYTES and data.endswith(b"\n") for data in writes)


def test_request_stats_add_up_across_workers():
    one, two = RequestStats(), RequestStats()
    one.observe("/a", "GET", 200, 0.0002)
    one.observe("/a", "GET", 200, 0.003)
    one.observe("/a", "GET", 404, 0.2)
    two.observe("/a", "GET", 200, 5.0)  # beyond the last bucket: +Inf
    two.observe("/b", "POST", 413, 0.0)
    total = RequestStats()
    for stats in (one, two):
        total.add(orjson.loads(stats.as_json()))
    assert total.counts == {("/a", "GET", 200): 3, ("/a", "GET", 404): 1, ("/b", "POST", 413): 1}
    histogram = total.latency["/a"]
    assert len(histogram) == len(LATENCY_BUCKETS) + 2
    assert sum(histogram[:-1]) == 4 and histogram[-2] == 1  # four requests, one above every bucket
    assert histogram[LATENCY_BUCKETS.index(0.00025)] == 1 and histogram[LATENCY_BUCKETS.index(0.25)] == 1
    assert histogram[-1] == pytest.approx(0.0002 + 0.003 + 0.2 + 5.0)


def test_a_batch_that_cannot_be_formatted_is_reported_and_serving_goes_on(tmp_path, caplog):
    log = AccessLog(str(tmp_path / "access.log"))

    def broken(records: list) -> list[bytes]:
        raise ValueError("bad record")

    log.render = broken
    log.write(("a record",))
    log.flush()  # no exception: the batch is dropped and said so
    assert "could not be formatted" in caplog.text and not log.pending
    log.render = b"".join
    log.write(b"next\n")
    log.close()
    assert (tmp_path / "access.log").read_bytes() == b"next\n"


def _logged(middleware: AccessLogMiddleware, scope: _Scope, status: int = 200, body: bytes = b"{}") -> None:
    exchange = Exchange(scope.method, scope.path, scope.query_string, 100.0, scope)
    exchange.finished = 100.0 + 0.0012345
    exchange.answer("/users/{user_id}/recommendations", status, body)
    middleware.after(exchange)


def test_access_log_lines_are_json_objects_whatever_the_client_sends(tmp_path):
    """Lines are made a batch at a time (one orjson call, cut into lines): strings a client
    controls are escaped, even ones that look like the cut between two lines, and long ones
    are cut short."""
    log_path = tmp_path / "access.log"
    log = AccessLog(str(log_path))
    middleware = AccessLogMiddleware(log, clock=lambda: 1_765_000_000.5)
    hostile = [
        ("/users/a},{b/recommendations", 'k=2&x="},{"ts":"', 'agent "},{"ts":"1"} \\ \n\t'),
        ("/users/Bj\u00f6rk \u2603/recommendations", "", "\u00fcber/1.0"),
        ("/" + "p" * 3000, "q" * 3000, "u" * 300),
        ("/users/plain/recommendations", "k=10", ""),
    ]
    for path, query, user_agent in hostile:
        _logged(middleware, _Scope(path, query, user_agent=user_agent), body=b"x" * 17)
    assert len(log.pending) == len(hostile) * AccessLogMiddleware.RECORD  # recorded, not yet formatted
    assert log_path.read_bytes() == b""
    log.close()
    raw = log_path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == len(hostile)
    lines = [orjson.loads(line) for line in raw.splitlines()]
    assert [list(line) for line in lines] == [list(ACCESS_LOG_KEYS)] * len(hostile)  # same keys, same order
    for line, (path, query, user_agent) in zip(lines, hostile, strict=True):
        assert line["path"] == path[:MAX_LOGGED_URL_PART] and line["query"] == query[:MAX_LOGGED_URL_PART]
        assert line["user_agent"] == user_agent[:MAX_LOGGED_USER_AGENT]
        assert (line["client"], line["method"], line["status"], line["bytes"]) == ("10.1.2.3:4567", "GET", 200, 17)
        assert line["duration_ms"] == 1.234 and line["pid"] == os.getpid()
    # perf_counter readings become wall-clock times through the offset read at the flush.
    assert all(line["ts"].endswith("Z") and len(line["ts"]) == len("2025-12-06T05:46:40.500Z") for line in lines)


def test_a_line_that_cannot_be_serialised_is_dropped_alone(tmp_path, caplog):
    log_path = tmp_path / "access.log"
    log = AccessLog(str(log_path))
    middleware = AccessLogMiddleware(log)
    _logged(middleware, _Scope("/users/first/recommendations"))
    _logged(middleware, _Scope("/users/\ud800/recommendations"))  # a lone surrogate: not UTF-8
    _logged(middleware, _Scope("/users/third/recommendations"))
    log.close()
    paths = [orjson.loads(line)["path"] for line in log_path.read_bytes().splitlines()]
    assert paths == ["/users/first/recommendations", "/users/third/recommendations"]
    assert "1 of 3 lines could not be formatted" in caplog.text


# Names and user agents in every script, symbols, and strings that must be escaped.
SCRIPTS = [
    "\u0411\u0451\u0440\u043a",  # Cyrillic
    "\u7530\u4e2d\u3055\u3093",  # CJK
    "\ud55c\uad6d\uc5b4",  # Hangul
    "\u0639\u0631\u0628\u064a",  # Arabic
    "\u05e2\u05d1\u05e8\u05d9\u05ea",  # Hebrew
    "\u0e44\u0e17\u0e22",  # Thai
    "\u2605\u266b\u2020\u00a7",  # symbols only
    "\U0001f3b8\u200d\U0001f525",  # emoji with a zero-width joiner
    "plain-ascii_1.0",
    "",
]
ESCAPED = ['say "hi"', "back\\slash", "tab\tnew\nline", "bell\x07", "\x00nul", '},{"ts":"']


def _batch(middleware: AccessLogMiddleware, agents: list[str], paths: list[str]) -> list:
    """What ``after`` records for one request per (user agent, path), in order."""
    log_file = middleware.log_file
    for n, (agent, path) in enumerate(zip(agents, paths, strict=True)):
        scope = _Scope(f"/users/{path}/recommendations", f"k={n % 20 + 1}&q={path}", user_agent=agent)
        exchange = Exchange(scope.method, scope.path, scope.query_string, 100.0 + n / 7000, scope)
        exchange.finished = exchange.started + (n % 5) * 0.0001 + n * 1e-6
        exchange.answer("/users/{user_id}/recommendations", (200, 404, 422, 499)[n % 4], b"x" * (n * 37 % 2000))
        middleware.after(exchange)
    values = log_file.pending.copy()
    log_file.pending.clear()
    return values


@pytest.mark.parametrize("escaped", [False, True], ids=["plain", "escaped"])
def test_access_log_lines_are_what_orjson_writes_in_every_script(tmp_path, escaped):
    """Lines are joined from fixed text and the values as they are when no string needs escaping,
    and made by orjson otherwise: either way a line is byte for byte orjson's text of its object,
    whatever script the names and user agents are in."""
    log = AccessLog(str(tmp_path / "access.log"))
    middleware = AccessLogMiddleware(log, clock=lambda: 1_765_000_000.25)
    strings = SCRIPTS + (ESCAPED if escaped else [])
    agents = [strings[n % len(strings)] * (1 + n % 3) for n in range(300)]
    paths = [strings[(n * 7 + 3) % len(strings)] + str(n) for n in range(300)]
    agents[5] = "A" * 1000  # cut to MAX_LOGGED_USER_AGENT
    values = _batch(middleware, agents, paths)
    rendered = middleware.render(values)
    lines = rendered.splitlines(keepends=True)
    assert len(lines) == len(agents) and rendered.endswith(b"\n")
    for n, (raw, agent, path) in enumerate(zip(lines, agents, paths, strict=True)):
        line = orjson.loads(raw)
        assert list(line) == list(ACCESS_LOG_KEYS)
        assert raw == orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)  # orjson's own text
        assert line["user_agent"] == agent[:MAX_LOGGED_USER_AGENT]
        assert line["path"] == f"/users/{path}/recommendations" and line["query"] == f"k={n % 20 + 1}&q={path}"
        assert (line["status"], line["bytes"], line["pid"]) == ((200, 404, 422, 499)[n % 4], n * 37 % 2000, os.getpid())
        assert line["duration_ms"] == pytest.approx(((n % 5) * 100 + n) / 1000, abs=0.0011)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    # The same batch made the other way (one dict per line, one orjson.dumps) is the same bytes.
    stamps = [orjson.loads(line)["ts"] for line in lines]
    millis = [calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ts[20:23]) for ts in stamps]
    assert len(set(millis)) > 1  # several milliseconds in the batch
    step = AccessLogMiddleware.RECORD
    micros = [int((f - s) * 1e6) for f, s in zip(values[0::step], values[1::step], strict=True)]
    assert rendered == middleware._render_objects(values, millis, micros)


def test_access_log_writes_a_value_that_is_not_a_string_as_orjson_does(tmp_path):
    """A request source may give something else than a string (``None`` for a client address
    it does not know): the batch is made by orjson, and every line is written."""
    log = AccessLog(str(tmp_path / "access.log"))
    middleware = AccessLogMiddleware(log)
    values = _batch(middleware, ["probe/1"] * 3, ["a", "b", "c"])
    values[2] = None  # the first line's client
    lines = [orjson.loads(line) for line in middleware.render(values).splitlines()]
    assert [line["client"] for line in lines] == [None, "10.1.2.3:4567", "10.1.2.3:4567"]
    assert [line["path"] for line in lines] == [
        "/users/a/recommendations",
        "/users/b/recommendations",
        "/users/c/recommendations",
    ]


def test_a_duration_joined_from_whole_and_thousandths_is_orjsons_float_text():
    for whole in (0, 1, 9, 10, 123, 4567, 86_400_000):
        for thousandths in range(1000):
            micros = whole * 1000 + thousandths
            assert str(whole) + _decimals(thousandths) == orjson.dumps(micros / 1000).decode(), micros


def test_access_log_durations_and_sizes_are_written_as_orjson_writes_numbers(tmp_path):
    log = AccessLog(str(tmp_path / "access.log"))
    middleware = AccessLogMiddleware(log)
    for micros in (0, 1, 10, 100, 139, 1000, 1500, 12000, 999_999, 2_500_000):
        scope = _Scope("/ping")
        exchange = Exchange("GET", "/ping", "", 50.0, scope)
        exchange.finished = 50.0 + micros / 1e6 + 1e-9
        exchange.answer("/ping", 200, b"x" * micros)
        middleware.after(exchange)
    log.close()
    lines = (tmp_path / "access.log").read_bytes().splitlines(keepends=True)
    for raw, micros in zip(lines, (0, 1, 10, 100, 139, 1000, 1500, 12000, 999_999, 2_500_000), strict=True):
        line = orjson.loads(raw)
        assert raw == orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        assert (line["duration_ms"], line["bytes"]) == (micros / 1000, micros)


def _drain(fd: int, into: bytearray, idle_seconds: float = 2.0) -> None:
    """Read a non-blocking pipe until nothing has come for ``idle_seconds``."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_seconds:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if chunk:
            into += chunk
            quiet_since = time.monotonic()
        else:
            time.sleep(0.01)


def test_a_full_access_log_buffer_is_written_in_whole_lines_within_the_pipe_limit(tmp_path, monkeypatch):
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    try:
        log = AccessLog(str(fifo))
        middleware = AccessLogMiddleware(log)
        # The buffer is larger than the pipe (64 KiB): a reader thread keeps it flowing.
        received = bytearray()
        reading = threading.Thread(target=_drain, args=(reader, received))
        reading.start()
        for n in range(AccessLog.MAX_PENDING_LINES):  # the last one fills the buffer: written at once
            _logged(middleware, _Scope(f"/users/user_{n:07d}/recommendations", "k=10"))
        assert not log.pending and writes
        log.close()
        reading.join(timeout=30)
    finally:
        os.close(reader)
    assert all(len(data) <= AccessLog.PIPE_WRITE_BYTES and data.endswith(b"\n") for data in writes)
    lines = [orjson.loads(line) for line in bytes(received).splitlines()]
    assert [line["path"] for line in lines] == [
        f"/users/user_{n:07d}/recommendations" for n in range(AccessLog.MAX_PENDING_LINES)
    ]
