"""The dbt project as the platform runs it: its profile, its manifest and the dbt resource, built
from ``Settings`` through cached factories, without touching ``os.environ`` or ``PATH``.

- Profile: ``dbt/profiles.yml`` reads the public variables (MUSIC_PLATFORM_TARGET,
  MUSIC_PLATFORM_DUCKDB_PATH, MUSIC_PLATFORM_POSTGRES_URL, SNOWFLAKE_*) for plain ``dbt``. Dagster
  and the tests instead give dbt a profile written from their typed ``Settings``
  (``profiles_dir``): the same connection, whether a value came from the environment, ``.env`` or
  a test, with an absolute DuckDB path and the PostgreSQL URL split and percent-decoded. It lives
  in a private directory (0700; the file 0600, as ``~/.dbt/profiles.yml`` would), one per
  distinct connection, so its path and content stay the same from run to run.
- Manifest: parsed (``dbt parse``, no warehouse connection) into ``dbt/target/<target>/`` when
  older than the project's files, through the public ``DbtCliResource``.
- Partial parsing: dbt re-parses the whole project when the profile's connection or the
  ``--vars`` change. The profile is stable (above), the day window of a partitioned run is passed
  as dbt's ``--event-time-start/--event-time-end`` (not vars), and each invocation starts from
  the partial-parse state the previous one on the same connection left
  (``invocation_target_path`` and ``keep_partial_parse``): a run parses only what changed since
  the last one.
- Executable: ``music-platform-dbt-warm`` (``dbt_server.py``): dbt's own command line, run by a
  per-user server that has imported dbt and built its schemas once (``MUSIC_PLATFORM_DBT_SERVER``,
  on by default on Linux); else ``music-platform-dbt`` (``dbt_launcher.py``), dbt in a new process.
  Both answer ``--version`` fast (dagster-dbt asks it once per resource).
- Resource: ``PlatformDbtCliResource`` (``dbt_resource.py``), the public resource without the
  in-process adapter handle dagster-dbt builds before each call and this project never uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from music_platform.config import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent.parent / "dbt"
PROFILE_NAME = "music_platform"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
_SOURCES_OF_MANIFEST = ("models", "macros", "tests", "seeds", "dbt_project.yml")


def dbt_profile(settings: Settings) -> dict:
    """The dbt profile (one output, named after the target) for ``settings``."""
    if settings.target == "duckdb":
        output = {
            "type": "duckdb",
            "path": str(settings.resolved_duckdb_path.resolve()),
            "threads": 1,
            # DuckDB takes 80% of RAM by default; bounded, it spills joins and aggregates to disk
            # (docs/scaling.md: 10M scrobbles stay under 4 GiB for the whole process tree).
            "settings": {"memory_limit": "2GB"},
        }
    elif settings.target == "postgres":
        url = urlparse(settings.postgres_url or "postgresql://")
        output = {
            "type": "postgres",
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 5432,
            "user": unquote(url.username or "postgres"),
            "password": unquote(url.password or ""),
            "dbname": unquote((url.path or "").lstrip("/")) or "music_platform",
            "schema": "public",
            "threads": 2,
        }
    else:
        output = {
            "type": "snowflake",
            "account": settings.snowflake_account or "unset",
            "user": settings.snowflake_user or "unset",
            "password": settings.snowflake_password or "",
            "database": settings.snowflake_database or "MUSIC_PLATFORM",
            "schema": settings.snowflake_schema or "PUBLIC",
            "threads": 2,
        }
        optional = {
            "warehouse": settings.snowflake_warehouse,
            "role": settings.snowflake_role,
            "host": settings.snowflake_host,
            "port": settings.snowflake_port,
            "protocol": settings.snowflake_protocol,
        }
        output.update({key: value for key, value in optional.items() if value})
    return {PROFILE_NAME: {"target": settings.target, "outputs": {settings.target: output}}}


def profiles_dir(settings: Settings) -> Path:
    """A directory holding ``profiles.yml`` for ``settings`` (written once per connection)."""
    # JSON is YAML: no YAML writer needed, and the text is the same for the same settings.
    text = json.dumps(dbt_profile(settings), sort_keys=True, indent=2) + "\n"
    return _write_profiles_dir(text)


@cache
def _write_profiles_dir(text: str) -> Path:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"music_platform-dbt-profiles-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077:
        raise PermissionError(f"{root} must be a private directory of this user (it holds warehouse credentials)")
    directory = root / digest
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "profiles.yml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = directory / f".profiles.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)  # concurrent writers write the same text: the last one wins
    return directory


def dbt_executable(warm: bool = False) -> str:
    """``music-platform-dbt-warm`` (dbt run by a server that imported it once, ``dbt_server.py``)
    when ``warm`` and on Linux, else ``music-platform-dbt`` (dbt with a fast --version), beside
    this Python; else dbt beside it, else ``dbt``."""
    bin_dir = Path(sys.executable).parent
    names = ("music-platform-dbt-warm",) if warm and sys.platform == "linux" else ()
    for name in (*names, "music-platform-dbt", "dbt"):
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    return "dbt"


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in _SOURCES_OF_MANIFEST:
        path = project_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for file in path.rglob("*"):
                if file.is_file():
                    newest = max(newest, file.stat().st_mtime)
    return newest


def get_dbt_project(settings: Settings):
    """The ``DbtProject`` for ``settings``, with a manifest no older than the project's files."""
    return _dbt_project(settings.target, profiles_dir(settings), settings.dbt_server)


@cache
def _dbt_project(target: str, profiles: Path, warm: bool = False):
    from dagster_dbt import DbtProject

    from music_platform.transformation.dbt_resource import PlatformDbtCliResource

    base = state_dir(DBT_PROJECT_DIR, target)
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR, profiles_dir=profiles, target=target, target_path=base.relative_to(DBT_PROJECT_DIR)
    )
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(DBT_PROJECT_DIR):
        # `dbt parse` needs no warehouse connection; a stale manifest would hide new models. It
        # parses into a directory of its own, then the files move into place, so a concurrent
        # reader never sees half a manifest.
        staging = base.parent / f".{target}-parse-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            resource = PlatformDbtCliResource(project_dir=project, dbt_executable=dbt_executable(warm))
            resource.cli(["parse", "--quiet"], target_path=staging).wait()
            base.mkdir(parents=True, exist_ok=True)
            for name in (PARTIAL_PARSE_FILE, "manifest.json"):  # the manifest last: it marks completion
                if (staging / name).exists():
                    os.replace(staging / name, base / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return project


# dbt's global flags on every invocation Dagster makes (``DbtCliResource.global_config_flags``).
# ``--no-write-json``: dbt writes no manifest.json (twice: after parsing and again at the end),
# semantic_manifest.json or run_results.json into the invocation's directory. Nothing reads them:
# Dagster's manifest is the one ``dbt parse`` writes (``_dbt_project``, without this flag), the
# events reach Dagster on dbt's stdout, and the partial-parse state is written regardless. The
# JSON cost 0.8 of dbt's 4.8 CPU-s in a profile of an invocation that built nothing, more when it
# builds (run_results.json grows with the nodes). dbt.log stays, for a failed invocation.
# Usage statistics are off already (``send_anonymous_usage_stats: false`` in dbt_project.yml, and
# dagster-dbt sets DBT_SEND_ANONYMOUS_USAGE_STATS=false), so no invocation waits on the network.
RUN_FLAGS = ("--no-write-json",)


def dbt_cli_resource(settings: Settings):
    """The dbt resource for ``settings``: ``DbtCliResource``'s public options (``RUN_FLAGS`` as its
    global flags), without its in-process adapter handle (``dbt_resource.py``, the one
    contract-tested adapter)."""
    from music_platform.transformation.dbt_resource import PlatformDbtCliResource

    return PlatformDbtCliResource(
        project_dir=get_dbt_project(settings),
        dbt_executable=dbt_executable(settings.dbt_server),
        global_config_flags=list(RUN_FLAGS),
    )


def state_dir(project_dir: str | Path, target: str | None) -> Path:
    """Where the manifest and the partial-parse state of a target live (``dbt/target/<target>``)."""
    return Path(project_dir) / "target" / (target or "default")


def _state_file(project_dir: str | Path, target: str | None, profiles: str | Path | None) -> Path:
    """The partial-parse state of one connection: dbt re-parses everything when the profile's
    connection changes, so each connection (profiles directory) keeps its own state, and runs
    against two data dirs never undo each other's."""
    key = Path(profiles).name if profiles else "default"
    return state_dir(project_dir, target) / "partial_parse" / f"{key}.msgpack"


def invocation_target_path(
    project_dir: str | Path, target: str | None, name: str, profiles: str | Path | None = None
) -> Path:
    """A fresh target directory for one dbt invocation (dbt writes its artifacts there), seeded
    with the partial-parse state of its connection (else the one ``dbt parse`` left), so that
    dbt parses only what changed."""
    base = state_dir(project_dir, target)
    path = base / "runs" / f"{name}-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    for state in (_state_file(project_dir, target, profiles), base / PARTIAL_PARSE_FILE):
        if state.exists():
            shutil.copyfile(state, path / PARTIAL_PARSE_FILE)
            break
    return path


def keep_partial_parse(
    project_dir: str | Path,
    target: str | None,
    target_path: Path,
    profiles: str | Path | None = None,
    remove: bool = True,
) -> None:
    """Keep the partial-parse state an invocation left as the start of the next one on the same
    connection (atomically), and drop the invocation's directory when asked (its events were
    streamed already)."""
    produced = Path(target_path) / PARTIAL_PARSE_FILE
    if produced.exists():
        state = _state_file(project_dir, target, profiles)
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.parent / f".{state.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        shutil.copyfile(produced, tmp)
        os.replace(tmp, state)
    if remove:
        shutil.rmtree(target_path, ignore_errors=True)
