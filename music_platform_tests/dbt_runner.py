"""Run the project's dbt against a test warehouse (DuckDB file, PostgreSQL database, fakesnow).

Each test passes the ``Settings`` of its warehouse; dbt gets the profile the platform writes from
them (``music_platform.transformation.project.profiles_dir``, as Dagster does), and writes its
target/ and logs/ under the test's own directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from music_platform.config import Settings
from music_platform.transformation.project import DBT_PROJECT_DIR, profiles_dir

DBT = str(Path(sys.executable).parent / "dbt")

# Extra environment of dbt per Settings object (the fakesnow tests register theirs).
SNOWFLAKE_ENV: dict[int, dict[str, str]] = {}


def run_dbt(args: list[str], settings: Settings, work_dir: Path, *, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **SNOWFLAKE_ENV.get(id(settings), {})}
    command = [
        DBT, *args,
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(profiles_dir(settings)),
        "--target", settings.target,
        "--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return result


def compile_inline(sql: str, settings: Settings, work_dir: Path) -> str:
    """The SQL dbt compiles ``sql`` (Jinja with the project's macros and refs) to, for this target."""
    return run_dbt(["compile", "--quiet", "--inline", sql], settings, work_dir).stdout.strip()
