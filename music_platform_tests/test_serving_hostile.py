"""Hostile clients against the real server (``music-platform serve``, Granian) (issue 14).

Slowloris connections are closed within the head timeout while other clients are served,
every refused request gets a JSON 4xx, and nothing a client does is a 5xx in /metrics or an
error in the log. The 1,000-connection version is ``benchmarks/serve_slowloris.py``.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import pytest

from music_platform.config import Settings
from music_platform.serving.sample_data import write_sample_warehouse
from music_platform.serving.service import MAX_BODY_BYTES, MAX_URL_BYTES
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.serve_utils import ServeProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
SLOW_CONNECTIONS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-hostile")
    settings = Settings(target="duckdb", data_dir=root, duckdb_path=root / "warehouse.duckdb")
    write_sample_warehouse(DuckDBWarehouse(settings.resolved_duckdb_path), users=50, artists=60, tracks=400)
    with ServeProcess(
        settings,
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        access_log=str(root / "access.log"),
    ) as running:
        yield running


def raw_answer(port: int, payload: bytes, *, timeout: float = 10) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send raw bytes, read one answer (status, headers, body) until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may answer and close before reading everything
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines if b": " in line)
    return int(status_line.split()[1]), headers, body


def assert_json_error(status: int, headers: dict[bytes, bytes], body: bytes, expected: int) -> dict:
    assert status == expected, (status, body[:200])
    assert headers[b"content-type"] == b"application/json"
    error = orjson.loads(body)
    assert error["status"] == expected and error["message"]
    return error


def seconds_until_closed(sock: socket.socket, trickle: bytes | None, deadline: float) -> float | None:
    """Keep sending ``trickle`` every 0.2 s until the server closes; None if it never does."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_slowloris_connections_are_closed_within_the_head_timeout_while_others_are_served(server):
    closed: list[float | None] = [None] * SLOW_CONNECTIONS * 2
    health_latencies: list[float] = []
    stop = threading.Event()

    def slow(index: int, trickle: bytes | None) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            if trickle:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
            closed[index] = seconds_until_closed(sock, trickle, time.monotonic() + HEADER_TIMEOUT + 5)

    def closed_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while not stop.is_set():
                started = time.perf_counter()
                assert http.get("/health").status_code == 200
                health_latencies.append(time.perf_counter() - started)

    # Half trickle header bytes (classic slowloris), half connect and never send anything.
    threads = [threading.Thread(target=slow, args=(i, b"X-a: b\r\n")) for i in range(SLOW_CONNECTIONS)]
    threads += [threading.Thread(target=slow, args=(SLOW_CONNECTIONS + i, None)) for i in range(SLOW_CONNECTIONS)]
    load = threading.Thread(target=closed_loop)
    load.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    stop.set()
    load.join(timeout=30)
    assert all(seconds is not None for seconds in closed), closed
    assert max(closed) <= HEADER_TIMEOUT + 1.0, max(closed)
    assert len(health_latencies) > 20
    assert sorted(health_latencies)[int(len(health_latencies) * 0.99)] < 0.5


def test_over_long_url_is_a_json_414(server):
    path = "/users/" + "a" * (MAX_URL_BYTES + 100) + "/recommendations"
    assert_json_error(*raw_answer(server.port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()), 414)


def test_url_beyond_the_http_parser_limit_is_refused_without_a_5xx(server):
    # Above 64 KiB the URI never reaches the app: Granian's HTTP parser (hyper) answers 414
    # itself, without a body (docs/serving.md).
    status, _, _ = raw_answer(server.port, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 414


def test_oversized_bodies_are_json_413_declared_or_chunked(server):
    declared = b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
    assert_json_error(*raw_answer(server.port, declared + b"{"), 413)
    chunk = b"%x\r\n%s\r\n" % (4096, b"a" * 4096)
    chunked = b"POST /recommendations HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 20
    status, headers, body = raw_answer(server.port, chunked)
    assert_json_error(status, headers, body, 413)
    assert headers[b"connection"] == b"close"


def test_a_body_that_does_not_arrive_in_time_is_a_json_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert time.monotonic() - started < BODY_TIMEOUT + 2
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and orjson.loads(body)["status"] == 408


def test_a_client_gone_mid_body_is_neither_an_error_nor_a_5xx(server):
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"{" * 10)
            time.sleep(0.1)
    time.sleep(0.5)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'route="/recommendations",status="499"' in metrics
    lines = [ln for ln in metrics.splitlines() if ln.startswith("music_platform_http_requests_total{")]
    assert not [ln for ln in lines if 'status="5' in ln], lines
    assert "unhandled" not in server.log() and "Traceback" not in server.log()


def test_every_refusal_reaches_the_access_log(server):
    time.sleep(1.5)  # lines are written once a second
    log_path = server.log_path.parent / "access.log"
    statuses = {orjson.loads(line)["status"] for line in log_path.read_bytes().splitlines()}
    assert {200, 408, 413, 414, 499} <= statuses
