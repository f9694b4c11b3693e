"""Fresh PostgreSQL databases for tests and benchmarks: created on demand, dropped afterwards.

The server is the local one (127.0.0.1:5432, user postgres, trust auth) unless
``MUSIC_PLATFORM_TEST_POSTGRES_ADMIN_URL`` names another maintenance database URL. Each test
session (each xdist worker) gets its own database, so parallel runs never see each other.

Fixtures for conftest.py::

    from music_platform_tests.pg_utils import postgres_admin_url, postgres_url  # noqa: F401

- ``postgres_admin_url`` (session): URL of the maintenance database; skips the test when the
  server cannot be reached (fails instead when ``CI`` is set).
- ``postgres_url`` (session): URL of a database created for this session and dropped at its end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL_ENV = "MUSIC_PLATFORM_TEST_POSTGRES_ADMIN_URL"


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def database_url(base_url: str, database: str) -> str:
    """``base_url`` with its database name replaced."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def server_unavailable_reason(url: str | None = None) -> str | None:
    """None when the server answers, else a sentence saying why not (no password in it)."""
    url = url or admin_url()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        host = urlsplit(url).hostname or "localhost"
        port = urlsplit(url).port or 5432
        return f"PostgreSQL not reachable at {host}:{port} ({type(exc).__name__}): set {ADMIN_URL_ENV}"
    return None


def create_database(name: str, base_url: str | None = None) -> str:
    base_url = base_url or admin_url()
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return database_url(base_url, name)


def drop_database(name: str, base_url: str | None = None) -> None:
    base_url = base_url or admin_url()
    with psycopg.connect(base_url, autocommit=True) as conn:
        # FORCE ends connections a failed test may have left behind (PostgreSQL 13+).
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def fresh_database(prefix: str = "mp_test", base_url: str | None = None) -> Iterator[str]:
    """A new, empty database for the duration of the block; yields its URL, drops it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = create_database(name, base_url)
    try:
        yield url
    finally:
        drop_database(name, base_url)


def require_postgres() -> str:
    """The admin URL, or a skip (a failure in CI) naming why the server is unavailable."""
    reason = server_unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return admin_url()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return require_postgres()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    with fresh_database("mp_test", postgres_admin_url) as url:
        yield url
