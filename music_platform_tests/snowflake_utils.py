"""A local fakesnow server (Snowflake's HTTP API over DuckDB) for tests.

``fakesnow -s -p PORT`` runs in a subprocess for the whole test session; the Python connector
and dbt-snowflake reach it with ``protocol=http, host=localhost, port=PORT``. Where it cannot
start, tests that need it are skipped with the reason (and fail in CI, where it must work).

Fixtures for conftest.py::

    from music_platform_tests.snowflake_utils import fakesnow_server, snowflake_settings  # noqa: F401

- ``fakesnow_server`` (session): ``FakesnowServer(host, port, database)`` with the database created.
- ``snowflake_settings`` (session): ``Settings`` for ``MUSIC_PLATFORM_TARGET=snowflake`` pointing at it;
  ``fakesnow_env`` gives the same as environment variables (for dbt or a subprocess).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from music_platform.config import Settings

_START_TIMEOUT_SECONDS = 60.0
# fakesnow accepts any credentials; these only satisfy the connector's required arguments.
FAKESNOW_ACCOUNT = "fakesnow"
FAKESNOW_USER = "music_platform"
FAKESNOW_PASSWORD = "fakesnow-accepts-any-password"


@dataclass(frozen=True)
class FakesnowServer:
    host: str
    port: int
    database: str

    def env(self) -> dict[str, str]:
        return {
            "MUSIC_PLATFORM_TARGET": "snowflake",
            "SNOWFLAKE_ACCOUNT": FAKESNOW_ACCOUNT,
            "SNOWFLAKE_USER": FAKESNOW_USER,
            "SNOWFLAKE_PASSWORD": FAKESNOW_PASSWORD,
            "SNOWFLAKE_DATABASE": self.database,
            "SNOWFLAKE_SCHEMA": "PUBLIC",
            "SNOWFLAKE_WAREHOUSE": "COMPUTE_WH",
            "SNOWFLAKE_ROLE": "SYSADMIN",
            "SNOWFLAKE_HOST": self.host,
            "SNOWFLAKE_PORT": str(self.port),
            "SNOWFLAKE_PROTOCOL": "http",
        }

    def settings(self) -> Settings:
        return Settings.from_env(self.env())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fakesnow exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"fakesnow did not listen on port {port} within {_START_TIMEOUT_SECONDS:.0f}s")


def _create_database(server: FakesnowServer) -> None:
    import snowflake.connector

    with snowflake.connector.connect(
        account=FAKESNOW_ACCOUNT,
        user=FAKESNOW_USER,
        password=FAKESNOW_PASSWORD,
        host=server.host,
        port=server.port,
        protocol="http",
    ) as conn:
        conn.cursor().execute(f"create database if not exists {server.database}")
        conn.cursor().execute(f"create schema if not exists {server.database}.public")


class FakesnowUnavailable(RuntimeError):
    """fakesnow could not be started here; the message says why."""


@contextmanager
def running_fakesnow(log_dir: Path, database: str = "MUSIC_PLATFORM_TEST") -> Iterator[FakesnowServer]:
    """``fakesnow -s`` on a free port for the block, with ``database`` created; stopped afterwards."""
    port = free_port()
    log_path = Path(log_dir) / "fakesnow.log"
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise FakesnowUnavailable(f"cannot start fakesnow ({exc}); install the dev dependencies (uv sync)") from exc
        try:
            server = FakesnowServer(host="localhost", port=port, database=database)
            try:
                _wait_for_port(port, process, time.monotonic() + _START_TIMEOUT_SECONDS)
                _create_database(server)
            except Exception as exc:  # noqa: BLE001 - any start failure becomes one clear reason
                tail = log_path.read_text(errors="replace")[-2000:]
                raise FakesnowUnavailable(f"fakesnow server did not start: {exc}\n{tail}") from exc
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def fakesnow_server(tmp_path_factory) -> Iterator[FakesnowServer]:
    try:
        with running_fakesnow(tmp_path_factory.mktemp("fakesnow")) as server:
            yield server
    except FakesnowUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def snowflake_settings(fakesnow_server: FakesnowServer) -> Settings:
    return fakesnow_server.settings()


@pytest.fixture(scope="session")
def fakesnow_env(fakesnow_server: FakesnowServer) -> dict[str, str]:
    return fakesnow_server.env()
