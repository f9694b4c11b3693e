"""The root of the Dagster code location (``workspace.yaml`` points here).

Definitions are autoloaded from ``music_platform/defs/`` (one folder per domain); this root
adds what applies to everything: the resources for the configured target, a default
freshness policy for any asset that did not set one, and the executor. DuckDB allows one
writing process per file, so on DuckDB every step runs in one process, one at a time. Either
executor first recovers dead runs and leases the run it executes (``music_platform.runs``).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from music_platform.config import Settings
from music_platform.policies import DEFAULT_FRESHNESS
from music_platform.resources import build_resources
from music_platform.runs.executor import with_run_recovery


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    executor = (
        with_run_recovery(dg.in_process_executor)
        if settings.target == "duckdb"
        else with_run_recovery(dg.multiprocess_executor, dg.multiple_process_executor_requirements())
    )
    merged = dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=build_resources(settings), executor=executor),
    )
    return merged.permissive_map_resolved_asset_specs(
        func=lambda spec: spec if spec.freshness_policy else dg.apply_freshness_policy(spec, DEFAULT_FRESHNESS),
        selection=dg.AssetSelection.all().materializable(),
    )
