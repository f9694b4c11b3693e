"""The warm dbt server (``music-platform-dbt-warm``, music_platform/transformation/dbt_server.py):
dbt run by it answers as plain dbt does -- output, exit codes, the environment and working
directory of the caller --, a killed client takes its dbt child with it, and the setting turns it
off. Each test has its own server (its own TMPDIR), stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from music_platform.config import Settings
from music_platform.transformation.project import dbt_cli_resource, dbt_executable

BIN = Path(sys.executable).parent
WARM = str(BIN / "music-platform-dbt-warm")
PLAIN = str(BIN / "music-platform-dbt")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the server forks: Linux only")

# A project of its own: names in several scripts, one model, a macro that runs a long query.
PROJECT = {
    "dbt_project.yml": "name: warm\nversion: '1.0'\nprofile: warm\nconfig-version: 2\n",
    "models/écoute_ключ_键.sql": "select '{{ env_var(\"WARM_TEST_VALUE\") }}' as value, 'ลูกทุ่ง' as genre\n",
    "macros/long_query.sql": (
        "{% macro long_query() %}{% do run_query('select count(*) from range(100000000000) a') %}{% endmacro %}\n"
    ),
}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "profiles.yml").write_text(
        json.dumps(
            {"warm": {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": str(tmp_path / "w.duckdb")}}}}
        )
    )
    return root


@pytest.fixture
def env(tmp_path):
    """The environment of a dbt invocation, with a TMPDIR of its own (so its own server)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "MUSIC_PLATFORM_"))}
    environment.update(TMPDIR=str(tmp), WARM_TEST_VALUE="Ω-ä-ש", DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    yield environment
    for pid_file in tmp.glob("music_platform-dbt-server-*/*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _dbt(executable: str, project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [executable, *args, "--profiles-dir", str(project)],
        cwd=project, env=env, capture_output=True, text=True, encoding="utf-8", timeout=600,
    )  # fmt: skip


def _server_children(env: dict) -> list[int]:
    pid_files = list(Path(env["TMPDIR"]).glob("music_platform-dbt-server-*/*.pid"))
    assert len(pid_files) == 1
    server = pid_files[0].read_text().strip()
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == server:
            children.append(int(stat.parent.name))
    return children


def test_dbt_run_by_the_server_answers_as_plain_dbt(project, env, tmp_path):
    for executable in (PLAIN, WARM, WARM):  # the second warm call finds the server started by the first
        listed = _dbt(executable, project, env, "ls", "--resource-type", "model", "--output", "name", "--quiet")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == ["écoute_ключ_键"]
        built = _dbt(executable, project, env, "--log-format", "json", "run")
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr
        events = [json.loads(line) for line in built.stdout.splitlines() if line.startswith("{")]
        assert any(e["info"]["name"] == "LogModelResult" and e["data"]["status"] == "OK" for e in events)
        assert "leaked" not in built.stderr  # a normal interpreter exit, no stray warnings
        assert "no dbt server" not in built.stderr + listed.stderr  # the server ran it
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        # the caller's environment (env_var) reached dbt in the server's child
        assert connection.execute('select value, genre from "écoute_ключ_键"').fetchall() == [("Ω-ä-ש", "ลูกทุ่ง")]
    assert list(Path(env["TMPDIR"]).glob("music_platform-dbt-server-*/*.sock"))


def test_exit_codes_are_dbts(project, env):
    for args in (["--no-such-flag"], ["run-operation", "no_such_macro"], ["ls", "--quiet"]):
        plain, warm = _dbt(PLAIN, project, env, *args), _dbt(WARM, project, env, *args)
        assert warm.returncode == plain.returncode, warm.stdout[-2000:] + warm.stderr
        assert "no dbt server" not in warm.stderr
    assert plain.returncode == 0


def test_clients_started_together_share_one_server(project, env):
    clients = [
        subprocess.Popen(
            [WARM, "ls", "--quiet", "--output", "name", "--profiles-dir", str(project)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )  # fmt: skip
        for _ in range(3)
    ]
    for client in clients:
        out, err = client.communicate(timeout=600)
        assert client.returncode == 0, err
        assert out.split() == ["écoute_ключ_键"] and "no dbt server" not in err
    # one of them started the server while the others waited for it, then each had a child of it
    assert len(list(Path(env["TMPDIR"]).glob("music_platform-dbt-server-*/*.pid"))) == 1


def test_a_killed_client_takes_its_dbt_child_with_it(project, env):
    assert _dbt(WARM, project, env, "ls", "--quiet").returncode == 0  # the server is up
    client = subprocess.Popen(
        [WARM, "run-operation", "long_query", "--profiles-dir", str(project)],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _server_children(env):
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.1)
    children = _server_children(env)
    time.sleep(1.0)  # dbt is in its query by now, holding the DuckDB file
    client.kill()
    client.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and _server_children(env):
        assert time.monotonic() < deadline, "the dbt child outlived its killed client"
        time.sleep(0.1)


def test_a_signal_to_the_client_reaches_dbt(project, env):
    assert _dbt(WARM, project, env, "ls", "--quiet").returncode == 0
    client = subprocess.Popen(
        [WARM, "run-operation", "long_query", "--profiles-dir", str(project)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _server_children(env):
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.1)
    time.sleep(1.0)
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=60)
    assert client.returncode == 128 + signal.SIGTERM  # what waitpid said of the child, as a shell reports it


def test_the_setting_chooses_the_executable(tmp_path):
    on = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path)})
    off = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path), "MUSIC_PLATFORM_DBT_SERVER": "false"})
    assert on.dbt_server and not off.dbt_server
    assert dbt_cli_resource(on).dbt_executable == WARM == dbt_executable(warm=True)
    assert dbt_cli_resource(off).dbt_executable == PLAIN == dbt_executable()
