"""A restatement that finds the DuckDB file held by another process (the service refreshing its
recent listens, a load) retries instead of failing: DuckDB lets one process write a file and none
read it meanwhile, and the benchmark of issue 19 lost restatements to it."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg
import duckdb

from music_platform.config import Settings
from music_platform.defs.transform import dbt as dbt_module
from music_platform.defs.transform.dbt import dbt_assets_for, warehouse_was_locked
from music_platform.resources import build_resources

# A reader in another process, as the service's refresh of recent listens is while it reads.
HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
    "print('held', flush=True); time.sleep(600)"
)


def test_a_build_that_finds_the_warehouse_locked_is_retried(monkeypatch, tmp_path):
    monkeypatch.setattr(dbt_module, "WAREHOUSE_LOCK_RETRIES", 1)
    monkeypatch.setattr(dbt_module, "WAREHOUSE_LOCK_WAIT_S", 0.1)
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(data), "MUSIC_PLATFORM_TARGET": "duckdb"})
    path = str(settings.resolved_duckdb_path)
    duckdb.connect(path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        daily, _other = dbt_assets_for(settings)
        started = time.monotonic()
        result = dg.materialize(
            [daily], resources=build_resources(settings), partition_key=daily.partitions_def.get_last_partition_key(),
            raise_on_error=False,
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    kinds = [e.event_type_value for e in result.all_events]
    # Tried, retried once (the patched limit), then failed with the lock still held.
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and not result.success, kinds
    assert time.monotonic() - started < 300
    assert warehouse_was_locked('IO Error: Could not set lock on file "/x/warehouse.duckdb": Conflicting lock')
    assert not warehouse_was_locked("Database Error in model fct_listens: column not found")
