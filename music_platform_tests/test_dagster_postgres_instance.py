"""deploy/dagster.yaml: a Dagster instance whose runs, events and schedules live in PostgreSQL.

The yaml is used as shipped: its DAGSTER_PG_* variables point at a database created for this
test, two trivial assets are materialised through the instance, and their materialisations
are read back from PostgreSQL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
from dagster import DagsterInstance

from music_platform_tests.pg_utils import fresh_database

# Session fixtures: one PostgreSQL database per test session (conftest.py may load these too).
pytest_plugins = ["music_platform_tests.pg_utils"]

pytestmark = pytest.mark.postgres

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"


@pytest.fixture
def instance(postgres_admin_url, tmp_path, monkeypatch):
    with fresh_database("mp_dagster", postgres_admin_url) as url:
        parts = urlsplit(url)
        monkeypatch.setenv("DAGSTER_PG_HOST", parts.hostname or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_PORT", str(parts.port or 5432))
        monkeypatch.setenv("DAGSTER_PG_USER", parts.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", parts.path.lstrip("/"))
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        dagster_instance = DagsterInstance.from_config(str(home))
        try:
            yield dagster_instance, url
        finally:
            dagster_instance.dispose()


@dg.asset(pool="lastfm_api")
def fetched_scrobbles() -> int:
    return 3


@dg.asset(pool="warehouse")
def loaded_scrobbles(fetched_scrobbles: int) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": fetched_scrobbles})


def test_materialisations_are_stored_in_postgres_and_read_back(instance):
    dagster_instance, url = instance
    assert type(dagster_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(dagster_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(dagster_instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    result = dg.materialize([fetched_scrobbles, loaded_scrobbles], instance=dagster_instance)
    assert result.success

    event = dagster_instance.get_latest_materialization_event(dg.AssetKey("loaded_scrobbles"))
    assert event is not None and event.run_id == result.run_id
    assert event.asset_materialization.metadata["rows"].value == 3
    assert dagster_instance.get_latest_materialization_event(dg.AssetKey("fetched_scrobbles")) is not None
    assert dagster_instance.get_run_by_id(result.run_id).is_success

    # The rows really are in the PostgreSQL database, not in a local SQLite file.
    with psycopg.connect(url) as conn:
        runs = conn.execute("select count(*) from runs where run_id = %s", [result.run_id]).fetchone()[0]
    assert runs == 1


def test_pools_and_run_queue_limit_api_and_warehouse_steps(instance):
    dagster_instance, _ = instance
    config = dagster_instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert config.run_queue_config.max_concurrent_runs == 4
    assert type(dagster_instance.run_coordinator).__name__ == "QueuedRunCoordinator"

    dg.materialize([fetched_scrobbles, loaded_scrobbles], instance=dagster_instance)
    limits = {pool.name: pool.limit for pool in dagster_instance.event_log_storage.get_pool_limits()}
    assert limits == {"lastfm_api": 1, "warehouse": 1}
    assert not dagster_instance.telemetry_enabled


def test_run_monitoring_is_configured_to_release_dead_runs(instance):
    dagster_instance, _ = instance
    assert dagster_instance.run_monitoring_enabled
    settings = dagster_instance.run_monitoring_settings
    assert settings["free_slots_after_run_end_seconds"] == 30
    assert settings["start_timeout_seconds"] == 300 and settings["cancel_timeout_seconds"] == 300
    assert settings["max_runtime_seconds"] == 43200


def test_a_killed_run_is_recovered_on_postgres_storage(instance, tmp_path):
    """The lease path of run recovery on the deployed storage (no process-id inference there)."""
    import os
    import subprocess
    import sys
    import time

    from music_platform.runs import dagster_instance as di
    from music_platform.runs.recovery import recover_dead_runs

    dagster_instance, _ = instance
    assert not di.storage_is_single_host(dagster_instance)
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "music_platform_tests.run_workloads", "-j"]
    holder = subprocess.Popen([*command, "leased_holder"], cwd=root, env=dict(os.environ), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not [h for h in di.pool_holdings(dagster_instance) if h.claimed]:
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never claimed the pool"
            time.sleep(0.25)
        [held] = [h for h in di.pool_holdings(dagster_instance) if h.claimed]
    finally:
        holder.kill()
        holder.wait()
    recovery = recover_dead_runs(dagster_instance)
    assert recovery.failed_runs == [held.run_id]
    assert dagster_instance.get_run_by_id(held.run_id).status == dg.DagsterRunStatus.FAILURE
    assert di.pool_holdings(dagster_instance) == []
    user = subprocess.run([*command, "leased_user"], cwd=root, env=dict(os.environ), capture_output=True, timeout=240)
    assert user.returncode == 0, user.stdout.decode()[-2000:]
