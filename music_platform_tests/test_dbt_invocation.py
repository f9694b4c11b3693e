"""What one dbt invocation made by Dagster carries and leaves behind (docs/operations.md, "dbt
fixed cost"): dbt's global flags from ``RUN_FLAGS``, no JSON artifacts, but the partial-parse
state, the debug log and the events Dagster turns into materialisations."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from music_platform.config import Settings
from music_platform.transformation.project import (
    PARTIAL_PARSE_FILE,
    RUN_FLAGS,
    dbt_cli_resource,
    get_dbt_project,
    invocation_target_path,
    keep_partial_parse,
)

SEED = "name_key_characters"  # the project's one seed: builds in a second on an empty DuckDB file


def test_the_run_resource_passes_the_global_flags_before_the_command(tmp_path):
    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})
    dbt = dbt_cli_resource(settings)
    assert "--no-write-json" in RUN_FLAGS
    assert list(dbt.global_config_flags) == list(RUN_FLAGS)
    # the manifest Dagster reads is still dbt's own (written by `dbt parse`, without the flags)
    assert Path(get_dbt_project(settings).manifest_path).is_file()


def test_an_invocation_writes_no_json_but_keeps_partial_parsing_the_log_and_the_events(tmp_path):
    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})
    (tmp_path / "data").mkdir()
    dbt = dbt_cli_resource(settings)
    project = get_dbt_project(settings)
    target_path = invocation_target_path(dbt.project_dir, dbt.target, "test_dbt_invocation", dbt.profiles_dir)
    try:
        invocation = dbt.cli(
            ["build", "--select", SEED], manifest=project.manifest_path, raise_on_error=False, target_path=target_path
        )
        events = list(invocation.stream())
        assert invocation.is_successful(), invocation.get_error()
        assert "--no-write-json" in invocation.dbt_command
        # the seed's materialisation reaches Dagster from dbt's stdout, not from run_results.json
        materialized = [e.asset_key for e in events if isinstance(e, dg.AssetMaterialization)]
        assert materialized == [dg.AssetKey(["reference", SEED])]
        checks = [e for e in events if isinstance(e, dg.AssetCheckEvaluation | dg.AssetCheckResult)]
        assert checks and all(c.passed for c in checks)  # the seed's data tests, as asset checks
        assert not (target_path / "run_results.json").exists()
        assert not (target_path / "manifest.json").exists()
        assert (target_path / PARTIAL_PARSE_FILE).is_file()  # the next invocation starts from it
        assert (target_path / "dbt.log").is_file()
    finally:
        keep_partial_parse(dbt.project_dir, dbt.target, target_path, dbt.profiles_dir)
    assert not target_path.exists()
