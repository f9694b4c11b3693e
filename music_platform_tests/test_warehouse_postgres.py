"""PostgreSQL specifics: table types, concurrent readers, dependent views, no secret in errors."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest

from music_platform.config import Settings
from music_platform.sources.schemas import RAW_TABLES
from music_platform.warehouse import connect_warehouse
from music_platform.warehouse.base import WarehouseError
from music_platform.warehouse.postgres_warehouse import PostgresWarehouse

# Session fixtures: one PostgreSQL database per test session (conftest.py may load these too).
pytest_plugins = ["music_platform_tests.pg_utils"]

pytestmark = pytest.mark.postgres


@pytest.fixture
def warehouse(postgres_url) -> PostgresWarehouse:
    return PostgresWarehouse(postgres_url, batch_rows=1_000)


@pytest.fixture
def schema() -> str:
    return f"pgt_{uuid.uuid4().hex[:10]}"


def column_types(url: str, schema: str, table: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
            [schema, table],
        ).fetchall()
    return dict(rows)


def test_the_factory_builds_it_from_settings(postgres_url):
    warehouse = connect_warehouse(Settings(target="postgres", postgres_url=postgres_url))
    assert isinstance(warehouse, PostgresWarehouse)
    assert warehouse.query_df("select 1 as one")["one"].tolist() == [1]


def test_tables_are_created_with_types_from_the_frame(warehouse, postgres_url, schema):
    columns = RAW_TABLES["lastfm_scrobbles"].column_names
    frame = pd.DataFrame(
        [
            {
                "user_name": "ann",
                "played_at_uts": 1735732800,
                "played_at": pd.Timestamp("2025-01-01 12:00", tz="UTC"),
                "scrobble_date": dt.date(2025, 1, 1),
                "track_name": "Song",
                "track_mbid": None,
                "artist_name": "Band",
                "artist_mbid": "",
                "album_name": None,
                "album_mbid": None,
                "track_url": None,
                "source": "synthetic",
                "ingested_at": pd.Timestamp("2025-01-02", tz="UTC"),
            }
        ],
        columns=columns,
    )
    warehouse.replace_partition(schema, "lastfm_scrobbles", frame, "scrobble_date", [dt.date(2025, 1, 1)])
    types = column_types(postgres_url, schema, "lastfm_scrobbles")
    assert types["played_at_uts"] == "bigint"
    assert types["played_at"] == types["ingested_at"] == "timestamp without time zone"
    assert types["scrobble_date"] == "date"
    assert types["user_name"] == types["track_mbid"] == "text"
    # Stored as UTC wall time.
    stored = warehouse.query_df(f"select played_at::text as t from {schema}.lastfm_scrobbles")["t"].tolist()
    assert stored == ["2025-01-01 12:00:00"]


def test_json_binary_and_numeric_round_trip(warehouse, postgres_url, schema):
    frame = pd.DataFrame({"payload": [{"tags": ["rock", "pop"]}, None], "blob": [b"\x00\xff", None]})
    warehouse.replace_table(schema, "misc", frame)
    assert column_types(postgres_url, schema, "misc") == {"payload": "jsonb", "blob": "bytea"}
    result = warehouse.query_df(f"select payload, blob, 1.5::numeric as n, now() as t from {schema}.misc order by blob")
    assert result["payload"].iloc[0] == {"tags": ["rock", "pop"]}
    assert bytes(result["blob"].iloc[0]) == b"\x00\xff"
    assert result["n"].dtype == "float64"
    assert str(result["t"].dt.tz) == "UTC"


def test_readers_see_the_old_or_the_new_partition_never_half(warehouse, schema):
    day = dt.date(2025, 1, 1)

    def frame(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"scrobble_date": [day] * rows, "n": np.arange(rows), "label": ["x" * 20] * rows})

    warehouse.replace_partition(schema, "scrobbles", frame(20_000), "scrobble_date", [day])
    seen: set[int] = set()
    polls = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal polls
        while not done.is_set():
            seen.add(warehouse.row_count(schema, "scrobbles"))
            polls += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            warehouse.replace_partition(schema, "scrobbles", frame(30_000), "scrobble_date", [day])
            warehouse.replace_partition(schema, "scrobbles", frame(20_000), "scrobble_date", [day])
    finally:
        done.set()
        thread.join()
    assert polls > 0
    assert seen <= {20_000, 30_000}


def test_replace_table_keeps_dependent_views_and_refuses_to_break_them(warehouse, schema):
    warehouse.replace_table(schema, "tracks", pd.DataFrame({"track_id": ["a", "b"], "plays": [1, 2]}))
    warehouse.execute(f"create view {schema}.track_plays as select track_id, plays from {schema}.tracks")

    # Same columns: truncate + copy, the view keeps working.
    warehouse.replace_table(schema, "tracks", pd.DataFrame({"track_id": ["c"], "plays": [3]}))
    assert warehouse.read_table(schema, "track_plays").to_dict("records") == [{"track_id": "c", "plays": 3}]

    # New columns would need the table dropped: refused, and the data stays.
    with pytest.raises(WarehouseError, match="views depend"):
        warehouse.replace_table(schema, "tracks", pd.DataFrame({"track_id": ["d"], "genre": ["rock"]}))
    assert warehouse.read_table(schema, "tracks").to_dict("records") == [{"track_id": "c", "plays": 3}]


def test_a_failed_replace_table_keeps_the_old_rows(warehouse, schema):
    warehouse.replace_table(schema, "names", pd.DataFrame({"name": ["keep", "me"]}))
    with pytest.raises(WarehouseError, match="nothing changed"):
        # PostgreSQL text cannot hold NUL: the COPY fails after the truncate.
        warehouse.replace_table(schema, "names", pd.DataFrame({"name": ["ok", "bad\x00value"]}))
    assert sorted(warehouse.read_table(schema, "names")["name"]) == ["keep", "me"]


def test_execute_runs_a_script_and_query_df_of_a_statement_is_empty(warehouse, schema):
    warehouse.execute(
        f"create schema {schema}; create table {schema}.t (x int); insert into {schema}.t values (1), (2)"
    )
    assert warehouse.row_count(schema, "t") == 2
    assert warehouse.query_df(f"delete from {schema}.t where x = 1").empty
    assert warehouse.row_count(schema, "t") == 1


def test_errors_and_descriptions_never_show_the_password():
    secret = "s3cret-pw"
    warehouse = PostgresWarehouse(f"postgresql://music:{secret}@127.0.0.1:1/warehouse")
    assert secret not in warehouse.describe()
    with pytest.raises(WarehouseError) as caught:
        warehouse.query_df("select 1")
    assert secret not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_a_database_that_does_not_exist_is_created_on_first_use(postgres_admin_url):
    from music_platform_tests.pg_utils import database_url, drop_database

    name = f"mp_ondemand_{uuid.uuid4().hex[:8]}"
    url = database_url(postgres_admin_url, name)
    try:
        warehouse = PostgresWarehouse(url)
        assert not warehouse.table_exists("raw", "t")  # the first connection creates the database
        warehouse.replace_table("raw", "t", pd.DataFrame({"x": [1, 2]}))
        assert warehouse.row_count("raw", "t") == 2
        with psycopg.connect(url) as conn:
            assert conn.execute("select count(*) from pg_namespace where nspname = 'public'").fetchone()[0] == 1
        # An existing database is used as it is, not created again.
        assert PostgresWarehouse(url).row_count("raw", "t") == 2
    finally:
        drop_database(name, postgres_admin_url)


def test_an_unreachable_server_is_reported_not_created():
    warehouse = PostgresWarehouse("postgresql://postgres@127.0.0.1:1/never_created")
    with pytest.raises(WarehouseError, match="cannot connect to PostgreSQL at"):
        warehouse.query_df("select 1")
