"""Snowflake specifics, against a local fakesnow server (see docs/warehouses.md for its limits)."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pandas as pd
import pytest
from dagster_snowflake import SnowflakeResource
from snowflake.connector.cursor import SnowflakeCursor

from music_platform.config import ConfigError, Settings
from music_platform.resources import WarehouseResource
from music_platform.warehouse import connect_warehouse
from music_platform.warehouse.base import WarehouseError
from music_platform.warehouse.snowflake_warehouse import SnowflakeWarehouse, connect_args_from_settings

# Session fixtures: one fakesnow server per test session (conftest.py may load these too).
pytest_plugins = ["music_platform_tests.snowflake_utils"]

DAY = dt.date(2025, 1, 1)


@pytest.fixture
def warehouse(snowflake_settings) -> SnowflakeWarehouse:
    return SnowflakeWarehouse.from_settings(snowflake_settings)


@pytest.fixture
def schema() -> str:
    return f"sf_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every SQL statement the connector runs, in order."""
    seen: list[str] = []
    original = SnowflakeCursor.execute

    def recording_execute(self, command, *args, **kwargs):
        seen.append(" ".join(str(command).split()).lower())
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(SnowflakeCursor, "execute", recording_execute)
    return seen


def day_rows(users: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"scrobble_date": [DAY] * len(users), "user_name": users})


def test_settings_name_every_missing_variable():
    with pytest.raises(ConfigError) as caught:
        SnowflakeWarehouse.from_settings(Settings(target="snowflake", snowflake_account="acme"))
    message = str(caught.value)
    assert "SNOWFLAKE_USER" in message and "SNOWFLAKE_PASSWORD" in message and "SNOWFLAKE_DATABASE" in message
    assert "SNOWFLAKE_ACCOUNT" not in message


def test_the_factory_builds_it_and_the_description_hides_the_password():
    settings = Settings.from_env(
        {
            "MUSIC_PLATFORM_TARGET": "snowflake",
            "SNOWFLAKE_ACCOUNT": "acme-xy12345",
            "SNOWFLAKE_USER": "loader",
            "SNOWFLAKE_PASSWORD": "very-secret",
            "SNOWFLAKE_DATABASE": "MUSIC",
            "SNOWFLAKE_WAREHOUSE": "COMPUTE_WH",
        }
    )
    warehouse = connect_warehouse(settings)
    assert isinstance(warehouse, SnowflakeWarehouse)
    assert warehouse.describe() == "snowflake:loader@acme-xy12345/MUSIC"
    assert "very-secret" not in warehouse.describe()


def test_a_failed_connection_says_where_without_the_password(snowflake_settings):
    settings = snowflake_settings.with_overrides(snowflake_port=1, snowflake_password="very-secret")
    warehouse = SnowflakeWarehouse(
        {**connect_args_from_settings(settings), "login_timeout": 3, "max_connection_pool": 1}
    )
    with pytest.raises(WarehouseError) as caught:
        warehouse.query_df("select 1")
    assert "very-secret" not in str(caught.value)
    assert "localhost:1" in str(caught.value)


def test_lower_case_names_land_as_upper_case_snowflake_identifiers(warehouse, schema):
    warehouse.replace_partition(schema, "lastfm_scrobbles", day_rows(["ann"]), "scrobble_date", [DAY])
    tables = warehouse.query_df(
        f"select table_name from information_schema.tables where table_schema = '{schema.upper()}'"
    )
    assert tables["table_name"].tolist() == ["LASTFM_SCROBBLES"]
    columns = warehouse.query_df(
        "select column_name from information_schema.columns "
        f"where table_schema = '{schema.upper()}' and table_name = 'LASTFM_SCROBBLES' order by ordinal_position"
    )
    assert columns["column_name"].tolist() == ["SCROBBLE_DATE", "USER_NAME"]
    assert warehouse.query_df(f"select user_name from {schema}.lastfm_scrobbles")["user_name"].tolist() == ["ann"]


def test_the_partition_transaction_holds_only_dml(warehouse, schema, statements):
    warehouse.replace_partition(schema, "scrobbles", day_rows(["ann", "bob"]), "scrobble_date", [DAY])
    statements.clear()

    warehouse.replace_partition(schema, "scrobbles", day_rows(["cy"]), "scrobble_date", [DAY])

    begin = statements.index("begin transaction")
    commit = statements.index("commit")
    inside = statements[begin + 1 : commit]
    # Snowflake commits an open transaction on any DDL, so stage, PUT and COPY must come first.
    assert [s.split()[0] for s in inside] == ["delete", "insert"]
    before = " ".join(statements[:begin])
    assert "create temporary stage" in before and "put " in before and "copy into" in before
    assert warehouse.read_table(schema, "scrobbles")["user_name"].tolist() == ["cy"]


def test_a_failure_inside_the_transaction_rolls_back_the_delete(warehouse, schema, monkeypatch):
    warehouse.replace_partition(schema, "scrobbles", day_rows(["ann", "bob"]), "scrobble_date", [DAY])
    original = SnowflakeCursor.execute

    def failing_insert(self, command, *args, **kwargs):
        if str(command).lstrip().lower().startswith("insert into"):
            raise RuntimeError("connection lost mid-load")
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(SnowflakeCursor, "execute", failing_insert)
    with pytest.raises(RuntimeError, match="mid-load"):
        warehouse.replace_partition(schema, "scrobbles", day_rows(["cy"]), "scrobble_date", [DAY])
    monkeypatch.setattr(SnowflakeCursor, "execute", original)

    assert sorted(warehouse.read_table(schema, "scrobbles")["user_name"]) == ["ann", "bob"]
    leftovers = warehouse.query_df(
        f"select table_name from information_schema.tables where table_schema = '{schema.upper()}'"
    )
    assert leftovers["table_name"].tolist() == ["SCROBBLES"]  # the incoming table was dropped


def test_execute_runs_a_script(warehouse, schema):
    warehouse.execute(
        f"create schema if not exists {schema}; create table {schema}.t (x int); "
        f"insert into {schema}.t values (1), (2);"
    )
    assert warehouse.row_count(schema, "t") == 2


def test_the_dagster_resource_connects_through_dagster_snowflake(snowflake_settings, schema, monkeypatch):
    """WarehouseResource configures Snowflake (the password as an EnvVar) and opens its
    connections with dagster-snowflake's SnowflakeResource; ``?`` parameters are bound."""
    opened: list[str] = []
    original = SnowflakeResource.get_connection

    def recording_get_connection(self, *args, **kwargs):
        opened.append(self.paramstyle)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SnowflakeResource, "get_connection", recording_get_connection)
    monkeypatch.setenv("MP_TEST_SNOWFLAKE_PASSWORD", snowflake_settings.snowflake_password)
    resource = WarehouseResource(
        target="snowflake",
        snowflake_account=snowflake_settings.snowflake_account,
        snowflake_user=snowflake_settings.snowflake_user,
        snowflake_password=dg.EnvVar("MP_TEST_SNOWFLAKE_PASSWORD"),
        snowflake_database=snowflake_settings.snowflake_database,
        snowflake_schema=snowflake_settings.snowflake_schema,
        snowflake_warehouse=snowflake_settings.snowflake_warehouse,
        snowflake_role=snowflake_settings.snowflake_role,
        snowflake_host=snowflake_settings.snowflake_host,
        snowflake_port=snowflake_settings.snowflake_port,
        snowflake_protocol=snowflake_settings.snowflake_protocol,
    )

    @dg.asset
    def written(warehouse: WarehouseResource) -> int:
        wh = warehouse.get_warehouse()
        wh.replace_table(schema, "artists", pd.DataFrame({"artist_name": ["Мумий Тролль", "坂本龍一"]}))
        return wh.read_arrow(f"select count(*) as n from {schema}.artists where artist_name = ?", ["坂本龍一"])["n"][
            0
        ].as_py()

    result = dg.materialize([written], resources={"warehouse": resource})
    assert result.success and result.output_for_node("written") == 1
    assert opened and set(opened) == {"qmark"}


def test_the_dagster_resource_names_every_missing_snowflake_setting():
    with pytest.raises(ConfigError) as caught:
        WarehouseResource(target="snowflake", snowflake_account="acme").get_warehouse()
    assert "SNOWFLAKE_USER" in str(caught.value) and "SNOWFLAKE_PASSWORD" in str(caught.value)
