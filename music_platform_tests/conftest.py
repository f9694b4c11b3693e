"""Shared fixtures.

Tests that read the real data in ``../shared/data`` use ``shared_data_dir``: in CI
(``CI=true``) a missing folder is a failure, on a user's fresh clone it is a skip that names
the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


def require_shared_data(relative: str = "") -> Path:
    path = SHARED_DATA_DIR / relative if relative else SHARED_DATA_DIR
    if not path.exists():
        message = f"real data not found at {path} (the ../shared/data folder beside the clone)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data_dir() -> Path:
    return require_shared_data()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """An environment with no API keys and a private data dir, as on a fresh clone."""
    for name in list(os.environ):
        if name.startswith(("MUSIC_PLATFORM_", "LASTFM_", "SPOTIFY_", "SNOWFLAKE_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUSIC_PLATFORM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


# Fixtures for the server warehouses: a fresh PostgreSQL database per session, a fakesnow server.
pytest_plugins = ["music_platform_tests.pg_utils", "music_platform_tests.snowflake_utils"]
