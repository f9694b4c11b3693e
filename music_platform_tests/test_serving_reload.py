"""Hot reload under traffic, on the real server (``music-platform serve``, Granian) (issue 7).

A request loop runs in a thread while a newer model version is published and swapped in:
no request may fail, every answer must be exactly one version's answer, and once the new
version shows up the old one never comes back.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import orjson
import pytest

from music_platform.config import Settings
from music_platform.serving.published import Publication
from music_platform.serving.sample_data import publish_version, write_sample_warehouse
from music_platform.serving.snapshot import load_snapshot
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.serve_utils import ServeProcess

USERS = 200
WATCHED_USERS = [f"user_{n:07d}" for n in (1, 2, 17, 99, 150, 200)] + ["not_a_known_user"]


@pytest.fixture
def world(tmp_path) -> tuple[Settings, DuckDBWarehouse]:
    settings = Settings(target="duckdb", data_dir=tmp_path, duckdb_path=tmp_path / "warehouse.duckdb")
    warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
    write_sample_warehouse(warehouse, users=USERS, artists=80, tracks=800, model_version="v1", seed=1)
    return settings, warehouse


def expected_answers(warehouse: DuckDBWarehouse, versions: list[str]) -> dict[tuple[str, str], bytes]:
    """(version, user) -> the exact body that version gives that user."""
    answers = {}
    for version in versions:
        # the sample data's publication id is its version name; v2 may not be published yet
        snapshot = load_snapshot(warehouse, Publication(version, version))
        for user in WATCHED_USERS:
            answers[(version, user)] = snapshot.user_recommendations_json(user, 10)
    return answers


class RequestLoop(threading.Thread):
    """GETs watched users' recommendations over one keep-alive connection until stopped."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()
        self.seen: list[tuple[str, int, bytes]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        rng = random.Random(5)
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                user = rng.choice(WATCHED_USERS)
                try:
                    answer = http.get(f"/users/{user}/recommendations?k=10")
                    self.seen.append((user, answer.status_code, answer.content))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def versions(self) -> list[str]:
        return [orjson.loads(body)["model_version"] for _, _, body in self.seen]


def assert_clean_swap(loop: RequestLoop, answers: dict[tuple[str, str], bytes]) -> None:
    assert loop.failures == []
    assert len(loop.seen) > 50
    assert {status for _, status, _ in loop.seen} == {200}
    for user, _, body in loop.seen:
        version = orjson.loads(body)["model_version"]
        # The whole body is one version's answer: nothing of the other version mixed in.
        assert body == answers[(version, user)], (user, version)
    versions = loop.versions()
    assert versions[0] == "v1" and versions[-1] == "v2"
    first_new = versions.index("v2")
    assert set(versions[first_new:]) == {"v2"}, "an old answer came back after the swap"


def test_admin_reload_under_traffic_swaps_atomically(world):
    settings, warehouse = world
    # v2's rows are written first but not published: the server must keep serving v1.
    publish_version(warehouse, "v2", users=USERS, seed=2)
    registry = warehouse.read_table("ml", "model_registry")
    warehouse.replace_table("ml", "model_registry", registry[registry["model_version"] == "v1"])
    answers = expected_answers(warehouse, ["v1", "v2"])
    assert answers[("v1", "user_0000001")] != answers[("v2", "user_0000001")]

    with ServeProcess(settings) as server:
        loop = RequestLoop(server.url)
        loop.start()
        time.sleep(0.5)
        assert httpx.post(server.url + "/admin/reload", timeout=30).json()["reloaded"] is False
        warehouse.replace_table("ml", "model_registry", registry)  # now v2 is published
        outcome = httpx.post(server.url + "/admin/reload", timeout=30).json()
        time.sleep(0.5)
        loop.stop.set()
        loop.join(timeout=30)
    assert outcome["reloaded"] is True
    assert (outcome["previous_version"], outcome["model_version"]) == ("v1", "v2")
    assert_clean_swap(loop, answers)


def publish_from_another_process(settings: Settings, version: str) -> None:
    """As the pipeline does: a separate process writes the rows, then the registry row."""
    code = (
        "import sys; from music_platform.serving.sample_data import publish_version; "
        "from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse; "
        f"publish_version(DuckDBWarehouse(sys.argv[1]), {version!r}, users={USERS}, seed=2)"
    )
    subprocess.run([sys.executable, "-c", code, str(settings.resolved_duckdb_path)], check=True, timeout=120)


def test_polling_picks_up_a_newly_published_version_under_traffic(world):
    settings, warehouse = world
    with ServeProcess(settings, reload_seconds=1.0) as server:
        loop = RequestLoop(server.url)
        loop.start()
        time.sleep(0.5)
        publish_from_another_process(settings, "v2")
        deadline = time.monotonic() + 20
        while httpx.get(server.url + "/health").json()["model_version"] != "v2":
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.1)
        time.sleep(0.5)
        loop.stop.set()
        loop.join(timeout=30)
        metrics = httpx.get(server.url + "/metrics").text
    assert_clean_swap(loop, expected_answers(warehouse, ["v1", "v2"]))
    assert 'music_platform_model_version_info{model_version="v2"} 1.0' in metrics
    assert 'music_platform_model_version_info{model_version="v1"} 0.0' in metrics
    assert 'music_platform_snapshot_reloads_total{outcome="loaded"}' in metrics


def test_real_server_answers_every_route(world):
    settings, _ = world
    with ServeProcess(settings) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/ping").json() == {"status": "ok"}
        user = http.get("/users/user_0000005/recommendations?k=4")
        assert user.status_code == 200 and len(user.json()["recommendations"]) == 4
        assert user.headers["content-length"] == str(len(user.content))
        track_id = user.json()["recommendations"][0]["track_id"]
        assert http.get(f"/tracks/{track_id}/similar?k=3").status_code == 200
        cold = http.post("/recommendations?k=5", json={"artists": ["daft punk", "MILES DAVIS"]})
        assert cold.status_code == 200 and len(cold.json()["recommendations"]) == 5
        assert http.get("/users/user_0000005/recommendations?k=1000").status_code == 422
        assert "music_platform_http_request_duration_seconds_bucket" in http.get("/metrics").text
        assert http.get("/docs").status_code == 200
        head = http.head("/health")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(http.get("/health").content)


def raw_exchange(port: int, payload: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send raw bytes on one connection, read until the server closes it, split the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in header_lines)
        length = int(headers[b"content-length"])
        answers.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


def test_real_server_keeps_http_semantics(world):
    """Hot routes and FastAPI routes share one connection: pipelined answers come back in
    order, HTTP/1.0 and ``Connection: close`` close, percent-escaped paths give the same
    answer, and every request is counted in /metrics."""
    settings, _ = world
    user = "/users/user_0000007/recommendations?k=3"
    body = orjson.dumps({"artists": ["Radiohead"]})
    with ServeProcess(settings) as server:
        expected_user = httpx.get(server.url + user).content
        answers = raw_exchange(
            server.port,
            b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % user.encode()
            + b"GET /users?limit=1 HTTP/1.1\r\nHost: t\r\n\r\n"  # ASGI route ...
            + b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"  # ... then a hot one queued behind it
            + b"POST /recommendations?k=2 HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n%s" % (len(body), body)
            + b"GET /users/user%5F0000007/recommendations?k=3 HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"GET /users/user_0000007/recommendations?k=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        assert [status for status, _, _ in answers] == [200, 200, 200, 200, 200, 200, 422]
        assert answers[0][2] == b'{"status":"ok"}' and answers[3][2] == b'{"status":"ok"}'
        assert answers[1][2] == expected_user and answers[5][2] == expected_user
        assert orjson.loads(answers[2][2])["users"] == ["user_0000001"]
        assert len(orjson.loads(answers[4][2])["recommendations"]) == 2
        assert "k must be an integer" in orjson.loads(answers[6][2])["message"]
        assert answers[6][1][b"connection"] == b"close"
        assert all(b"date" in headers and headers[b"content-type"] == b"application/json" for _, headers, _ in answers)

        # HTTP/1.0 without keep-alive: one answer, then the server closes the connection.
        # (raw_exchange returns only once the server has closed the connection.)
        [(status, _, body)] = raw_exchange(server.port, b"GET /ping HTTP/1.0\r\n\r\n")
        assert status == 200 and body == b'{"status":"ok"}'

        metrics = httpx.get(server.url + "/metrics").text
        counts = {
            line.split("{", 1)[1].rsplit("}", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("music_platform_http_requests_total{")
        }
        assert counts['method="GET",route="/ping",status="200"'] == 3
        assert counts['method="GET",route="/users/{user_id}/recommendations",status="200"'] == 3
        assert counts['method="GET",route="/users/{user_id}/recommendations",status="422"'] == 1


@pytest.mark.slow
def test_cli_serve_with_two_workers_reloads_both_and_sums_metrics(world):
    settings, _ = world
    server = ServeProcess(settings, workers=2, reload_seconds=0.5)
    base = server.url

    def worker_versions(wanted: str, timeout: float, ignore: frozenset[int] = frozenset()) -> dict[int, str]:
        """Poll /health over fresh connections until two workers report ``wanted``."""
        versions: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = httpx.get(base + "/health", timeout=2).json()
                if health["worker_pid"] not in ignore:
                    versions[health["worker_pid"]] = health["model_version"]
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if len(versions) == 2 and set(versions.values()) == {wanted}:
                return versions
            time.sleep(0.05)
        raise AssertionError(f"workers report {versions}, wanted {wanted}; log:\n{server.log()}")

    def user_requests_counted() -> float:
        metrics = httpx.get(base + "/metrics", timeout=5).text
        return sum(
            float(ln.rsplit(" ", 1)[1])
            for ln in metrics.splitlines()
            if ln.startswith('music_platform_http_requests_total{method="GET",route="/users/{user_id}/recommendations"')
        )

    with server:
        pids = set(worker_versions("v1", timeout=60))
        for _ in range(40):
            assert httpx.get(base + "/users/user_0000001/recommendations", timeout=5).status_code == 200
        publish_from_another_process(settings, "v2")
        assert set(worker_versions("v2", timeout=60)) == pids
        # Both workers' counts, summed (each writes its own within a second).
        deadline = time.monotonic() + 10
        while user_requests_counted() != 40:
            assert time.monotonic() < deadline, f"/metrics counts {user_requests_counted()} of 40 requests"
            time.sleep(0.2)
        # A worker that dies is replaced, and the new one serves the current version.
        killed = min(pids)
        os.kill(killed, signal.SIGKILL)
        replaced = set(worker_versions("v2", timeout=90, ignore=frozenset({killed})))
        assert killed not in replaced and len(replaced & pids) == 1
        assert user_requests_counted() == 40  # the dead worker's requests still count
    assert server.process.returncode is not None
