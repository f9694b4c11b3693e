"""The dbt project: where it is, which target it runs against, and a fresh manifest.

``dbt/profiles.yml`` reads the public settings (MUSIC_PLATFORM_TARGET, MUSIC_PLATFORM_DUCKDB_PATH,
MUSIC_PLATFORM_POSTGRES_URL, SNOWFLAKE_*) itself, so plain dbt works. Dagster and the tests also
pass the internal MUSIC_PLATFORM_DBT_* variables derived here from their typed ``Settings`` (an
absolute DuckDB path, the URL split and percent-decoded), which the profile prefers: dbt always
writes the same warehouse as the Python assets, whatever the working directory.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from music_platform.config import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent.parent / "dbt"
_SOURCES_OF_MANIFEST = ("models", "macros", "tests", "seeds", "dbt_project.yml", "profiles.yml")


def dbt_environment(settings: Settings) -> dict[str, str]:
    """Variables for dbt's profiles.yml, derived from the public settings."""
    env = {"MUSIC_PLATFORM_TARGET": settings.target}
    env["MUSIC_PLATFORM_DBT_DUCKDB_PATH"] = str(settings.resolved_duckdb_path.resolve())
    if settings.postgres_url:
        url = urlparse(settings.postgres_url)
        env.update(
            MUSIC_PLATFORM_DBT_PG_HOST=url.hostname or "127.0.0.1",
            MUSIC_PLATFORM_DBT_PG_PORT=str(url.port or 5432),
            MUSIC_PLATFORM_DBT_PG_USER=unquote(url.username or "postgres"),
            MUSIC_PLATFORM_DBT_PG_PASSWORD=unquote(url.password or ""),
            MUSIC_PLATFORM_DBT_PG_DBNAME=(url.path or "/postgres").lstrip("/") or "postgres",
        )
    return env


def apply_dbt_environment(settings: Settings) -> None:
    """dbt runs as a subprocess that inherits os.environ: publish the derived variables there."""
    os.environ.update(dbt_environment(settings))


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


@cache
def get_dbt_project(target: str):
    """The DbtProject for a target, with a manifest no older than the project's files."""
    from dagster_dbt import DbtProject

    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target=target)
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(DBT_PROJECT_DIR):
        # `dbt parse` needs no warehouse connection; a stale manifest would hide new models.
        _put_dbt_on_path()
        project.preparer.prepare(project)
    return project


def dbt_cli_resource(settings: Settings):
    apply_dbt_environment(settings)
    return _dbt_cli_resource_class()(
        project_dir=get_dbt_project(settings.target),
        profiles_dir=str(DBT_PROJECT_DIR),
        target=settings.target,
        dbt_executable=dbt_executable(),
    )


@cache
def _dbt_cli_resource_class():
    """``DbtCliResource`` without two costs it pays before every dbt invocation.

    Each dbt step used to spend ~7 s running ``dbt --version`` in a subprocess (to tell dbt Core
    from the Fusion engine) and ~3 s loading every dbt macro in-process for an adapter handle
    that only serves dagster-dbt's optional row-count and column-metadata fetches; this project
    reads its tables itself once dbt exits (defs/transform/dbt.py). A day's dbt run then costs
    the dbt process and its work. The version comes from the dbt-core installed beside this
    Python, which is the executable used (``dbt_executable``).
    """
    from functools import cached_property
    from importlib.metadata import version as installed_version

    from dagster_dbt import DbtCliResource
    from packaging.version import Version

    class MusicPlatformDbtCliResource(DbtCliResource):
        @cached_property
        def _cli_version(self) -> Version:
            if Path(self.dbt_executable).parent == Path(sys.executable).parent:
                return Version(installed_version("dbt-core"))
            return super()._cli_version

        def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - see the class docstring
            return None

    return MusicPlatformDbtCliResource


def _put_dbt_on_path() -> None:
    """dagster-dbt's manifest preparation calls plain `dbt`: make ours findable without an activated venv."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def dbt_executable() -> str:
    """The dbt installed beside this Python (works without an activated virtualenv)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"
