"""The root of the Dagster code location (``workspace.yaml`` points here).

``defs()`` reads the settings once (``Settings.from_env()``: the environment over ``.env``) and
hands them to ``build_defs``, which builds everything from that one ``Settings``: the modules
under ``music_platform/defs/`` (one folder per domain) are autoloaded, and those whose
definitions depend on the settings (the daily partitions, the dbt project and its assets) build
them in their ``@dg.definitions`` function from ``definitions_settings()`` through cached
factories (``music_platform.partitions.daily_partitions``,
``music_platform.transformation.project``). Nothing reads the environment at import, so the
definitions of several targets can be built in one process (test_definitions.py does).

This root adds what applies to everything: the resources for the configured target, a default
freshness policy for any asset that did not set one, and the executor. DuckDB allows one
writing process per file, so on DuckDB every step runs in one process, one at a time. Either
executor first recovers dead runs and leases the run it executes (``music_platform.runs``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from music_platform.config import Settings, building_definitions
from music_platform.policies import DEFAULT_FRESHNESS
from music_platform.resources import build_resources
from music_platform.runs.executor import with_run_recovery


def _quietly(build, *args):
    """``build(*args)`` without the preview warnings Dagster raises about its own module loading
    (``load_definitions_from_module(s)``; ``load_from_defs_folder`` silences them too)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Function `load_definitions_from_module")
        return build(*args)


def build_defs(settings: Settings) -> dg.Definitions:
    """The code location's definitions for ``settings``."""
    executor = (
        with_run_recovery(dg.in_process_executor)
        if settings.target == "duckdb"
        else with_run_recovery(dg.multiprocess_executor, dg.multiple_process_executor_requirements())
    )
    with building_definitions(settings):
        # The defs folder's definitions only (``ComponentTree.build_defs`` of the folder), not
        # ``load_from_defs_folder``'s: that one adds the catalogue of every installed component
        # library (UI metadata), importing dagster_snowflake's components and the Snowflake SDK
        # even on DuckDB: 4.3-4.8 CPU-seconds per load instead of 7.5-11.9 (alternating pairs, load
        # 6-8.5; test_loading_the_code_location_on_duckdb_imports_no_snowflake_library).
        tree = dg.ComponentTree.for_project(path_within_project=Path(__file__).parent)
        folder = _quietly(tree.build_defs, Path("."))
    merged = dg.Definitions.merge(folder, dg.Definitions(resources=build_resources(settings), executor=executor))
    return merged.permissive_map_resolved_asset_specs(
        func=lambda spec: spec if spec.freshness_policy else dg.apply_freshness_policy(spec, DEFAULT_FRESHNESS),
        selection=dg.AssetSelection.all().materializable(),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs(Settings.from_env())
