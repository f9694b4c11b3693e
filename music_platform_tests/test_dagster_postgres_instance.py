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
