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

from pathlib import Path

import dagster as dg

from music_platform.config import Settings, building_definitions
from music_platform.policies import DEFAULT_FRESHNESS
from music_platform.resources import build_resources
from music_platform.runs.executor import with_run_recovery

DEFS_FOLDER = Path(__file__).parent / "defs"


def build_defs(settings: Settings, *, component_types: bool = True) -> dg.Definitions:
    """The code location's definitions for ``settings``.

    ``component_types=False`` leaves out what ``load_from_defs_folder`` adds beside the project's
    own definitions: metadata listing the component types that installed libraries offer, which
    the UI and ``dg`` show. Listing them imports each such library (here dagster_snowflake and the
    Snowflake connector, even on DuckDB: 2.5 of build_defs' 7.7 CPU-s, 15 s of wall time at load 7). Processes
    that only execute runs in-process (``music-platform demo``) have no use for it; the assets,
    checks, jobs, schedules and sensors are the same (test_definitions.py).
    """
    executor = (
        with_run_recovery(dg.in_process_executor)
        if settings.target == "duckdb"
        else with_run_recovery(dg.multiprocess_executor, dg.multiple_process_executor_requirements())
    )
    with building_definitions(settings):
        if component_types:
            folder = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        else:  # each domain folder of defs/, as load_from_defs_folder builds them, without the library listing
            tree = dg.ComponentTree.for_project(Path(__file__).parent)
            domains = sorted(p.name for p in DEFS_FOLDER.iterdir() if (p / "__init__.py").exists())
            folder = dg.Definitions.merge(*(tree.build_defs(Path(name)) for name in domains))
    merged = dg.Definitions.merge(folder, dg.Definitions(resources=build_resources(settings), executor=executor))
    return merged.permissive_map_resolved_asset_specs(
        func=lambda spec: spec if spec.freshness_policy else dg.apply_freshness_policy(spec, DEFAULT_FRESHNESS),
        selection=dg.AssetSelection.all().materializable(),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs(Settings.from_env())
