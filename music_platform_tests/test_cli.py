"""The command line tells the operator the truth in one line: help, version, configuration read from
``.env``, and operator errors (a bad setting, an unreachable warehouse, refused credentials) as
one line on stderr with exit code 1, the traceback only with ``--debug``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from music_platform.config import ConfigError, Settings, environment
from music_platform.operator_errors import operator_message
from music_platform.warehouse import WarehouseError

CLI = Path(sys.executable).with_name("music-platform")
CLOSED_PORT = 9  # discard: nothing listens on it here


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MUSIC_PLATFORM_", "SNOWFLAKE_", "LASTFM_"))}
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env={**clean, "DAGSTER_HOME": str(cwd / "dagster_home"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_and_version(tmp_path):
    short = _run(["-h"], tmp_path)
    assert short.returncode == 0 and "demo" in short.stdout and "serve" in short.stdout
    assert _run(["model", "-h"], tmp_path).returncode == 0
    version = _run(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("music-platform ")


def test_a_setting_in_dot_env_is_read_and_a_bad_one_is_one_line(tmp_path):
    (tmp_path / ".env").write_text("MUSIC_PLATFORM_TARGET=bogus\n", encoding="utf-8")
    result = _run(["demo", "--users", "5", "--days", "1"], tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MUSIC_PLATFORM_TARGET" in lines[0] and "bogus" in lines[0] and "Traceback" not in result.stderr


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``music-platform`` in this process (its entry point, ``main``): exit code and stderr."""
    from music_platform import cli

    monkeypatch.setattr(sys, "argv", ["music-platform", *args])
    monkeypatch.setattr(cli._Options, "debug", False)
    with pytest.raises(SystemExit) as ended:
        cli.main()
    return ended.value.code, capsys.readouterr().err


def test_an_unreachable_warehouse_is_one_line_with_the_fix_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    url = f"postgresql://postgres@127.0.0.1:{CLOSED_PORT}/music_platform_unreachable"
    env = {"MUSIC_PLATFORM_TARGET": "postgres", "MUSIC_PLATFORM_POSTGRES_URL": url}
    # The demo sets its synthetic-source variables in the environment: monkeypatch restores them.
    for name in ("MUSIC_PLATFORM_SOURCE", "MUSIC_PLATFORM_SYNTHETIC_USERS", "MUSIC_PLATFORM_SEED"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("MUSIC_PLATFORM_PARTITIONS_START", "2000-01-01")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    code, stderr = _main(["demo", "--users", "5", "--days", "1"], monkeypatch, capsys)
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1, stderr
    assert "cannot connect to PostgreSQL" in lines[0] and "MUSIC_PLATFORM_POSTGRES_URL" in lines[0]
    assert "Traceback" not in stderr
    with pytest.raises(WarehouseError):  # --debug: the error itself, with its traceback
        monkeypatch.setattr(sys, "argv", ["music-platform", "--debug", "demo", "--users", "5", "--days", "1"])
        from music_platform import cli

        cli.main()
    # The service stops before it starts its workers (a separate process: serve execs the server).
    result = _run(["serve", "--port", "0"], tmp_path, **env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "cannot connect to PostgreSQL" in lines[0] and "MUSIC_PLATFORM_POSTGRES_URL" in lines[0]


def test_the_environment_wins_over_dot_env(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MUSIC_PLATFORM_SEED=7\nMUSIC_PLATFORM_SYNTHETIC_USERS=11\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUSIC_PLATFORM_SEED", "9")
    monkeypatch.delenv("MUSIC_PLATFORM_SYNTHETIC_USERS", raising=False)
    assert environment()["MUSIC_PLATFORM_SYNTHETIC_USERS"] == "11"
    settings = Settings.from_env()
    assert (settings.synthetic_seed, settings.synthetic_users) == (9, 11)


def test_a_malformed_number_names_the_variable():
    with pytest.raises(ConfigError, match="SNOWFLAKE_PORT must be an integer"):
        Settings.from_env({"SNOWFLAKE_PORT": "abc"})


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (WarehouseError("cannot connect to PostgreSQL at x: FATAL: password authentication failed"), "password"),
        (WarehouseError("cannot connect to snowflake:u@acct/db: 250001: Could not connect"), "SNOWFLAKE_ACCOUNT"),
        (WarehouseError("cannot connect to snowflake:u@acct/db: Incorrect username or password"), "SNOWFLAKE_PASSWORD"),
        (ConfigError("MUSIC_PLATFORM_SOURCE must be one of auto, synthetic, real"), ".env"),
    ],
)
def test_operator_messages_name_the_likely_fix(error, fix):
    message = operator_message(error)
    assert message is not None and "\n" not in message and fix in message


def test_a_bug_is_not_dressed_up_as_an_operator_error():
    assert operator_message(KeyError("x")) is None
