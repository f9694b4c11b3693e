"""One behavioural suite, run against every warehouse target.

DuckDB runs on a temp file, PostgreSQL on a database created for the test session (dropped
afterwards), Snowflake on a local fakesnow server started for the session. Each test writes
into its own schema, so the targets' shared state never leaks between tests.
"""

from __future__ import annotations

import datetime as dt
import uuid

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from music_platform.sources.lastfm.parsing import to_raw_frame
from music_platform.sources.schemas import LASTFM_SCROBBLES
from music_platform.warehouse.base import Warehouse, WarehouseError
from music_platform.warehouse.duckdb_warehouse import ROW_GROUP_ROWS, DuckDBWarehouse
from music_platform.warehouse.postgres_warehouse import PostgresWarehouse
from music_platform.warehouse.snowflake_warehouse import SnowflakeWarehouse

# Session fixtures: a PostgreSQL database and a fakesnow server per test session
# (conftest.py may load these too).
pytest_plugins = ["music_platform_tests.pg_utils", "music_platform_tests.snowflake_utils"]

LOAD_ERRORS = (WarehouseError, duckdb.Error)


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        "snowflake",
    ]
)
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    if request.param == "postgres":
        # Small batches so every load streams through several COPY writes.
        return PostgresWarehouse(request.getfixturevalue("postgres_url"), batch_rows=3)
    # Batches of 1000 rows: the large-frame test uploads several files to the stage.
    return SnowflakeWarehouse.from_settings(request.getfixturevalue("snowflake_settings"), batch_rows=1000)


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def scrobbles(day: dt.date, users: list[str], start: int = 0) -> pd.DataFrame:
    """Rows shaped like raw.lastfm_scrobbles (a subset of its columns), one per user."""
    played = [
        dt.datetime.combine(day, dt.time(12, 0), tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(len(users))
    ]
    return pd.DataFrame(
        {
            "user_name": users,
            "played_at_uts": [int(p.timestamp()) for p in played],
            "played_at": pd.to_datetime(played, utc=True),
            "scrobble_date": [day] * len(users),
            "track_name": [f"Track {start + i}" for i in range(len(users))],
            "track_mbid": [None] * len(users),
            "source": ["synthetic"] * len(users),
        }
    )


DAY1, DAY2 = dt.date(2025, 1, 1), dt.date(2025, 1, 2)


def sorted_rows(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    return frame.sort_values(by).reset_index(drop=True)


def test_replace_partition_twice_leaves_the_count_unchanged(warehouse, schema):
    both_days = pd.concat([scrobbles(DAY1, ["ann", "bob", "cy"]), scrobbles(DAY2, ["ann", "dee"])], ignore_index=True)

    assert warehouse.replace_partition(schema, "scrobbles", both_days, "scrobble_date", [DAY1, DAY2]) == 5
    assert warehouse.replace_partition(schema, "scrobbles", both_days, "scrobble_date", [DAY1, DAY2]) == 5

    assert warehouse.row_count(schema, "scrobbles") == 5


def test_replace_partition_only_touches_its_partition(warehouse, schema):
    warehouse.replace_partition(schema, "scrobbles", scrobbles(DAY1, ["ann", "bob"]), "scrobble_date", [DAY1])
    warehouse.replace_partition(schema, "scrobbles", scrobbles(DAY2, ["ann", "bob", "cy"]), "scrobble_date", [DAY2])

    # Partition values may be given as ISO strings as well as dates.
    warehouse.replace_partition(
        schema, "scrobbles", scrobbles(DAY1, ["zed"], start=100), "scrobble_date", [DAY1.isoformat()]
    )

    counts = warehouse.query_df(
        f"select scrobble_date, count(*) as n from {schema}.scrobbles group by scrobble_date order by scrobble_date"
    )
    assert counts["n"].tolist() == [1, 3]
    day1 = warehouse.query_df(
        f"select user_name, track_name from {schema}.scrobbles where scrobble_date = '2025-01-01'"
    )
    assert day1.to_dict("records") == [{"user_name": "zed", "track_name": "Track 100"}]


def test_a_failed_load_leaves_the_previous_partition_intact(warehouse, schema):
    good = scrobbles(DAY1, ["ann", "bob", "cy"])
    warehouse.replace_partition(schema, "scrobbles", good, "scrobble_date", [DAY1])
    before = sorted_rows(warehouse.read_table(schema, "scrobbles"), "user_name")

    bad = scrobbles(DAY1, ["ann", "bob", "cy"], start=10)
    bad["played_at_uts"] = ["1735732800", "not-a-number", "1735732920"]  # bigint column gets text
    with pytest.raises(LOAD_ERRORS):
        warehouse.replace_partition(schema, "scrobbles", bad, "scrobble_date", [DAY1])

    after = sorted_rows(warehouse.read_table(schema, "scrobbles"), "user_name")
    pd.testing.assert_frame_equal(after, before)


def test_a_frame_with_an_unknown_column_changes_nothing(warehouse, schema):
    warehouse.replace_partition(schema, "scrobbles", scrobbles(DAY1, ["ann"]), "scrobble_date", [DAY1])
    extra = scrobbles(DAY1, ["bob"]).assign(unexpected_column=1)

    with pytest.raises(LOAD_ERRORS):
        warehouse.replace_partition(schema, "scrobbles", extra, "scrobble_date", [DAY1])

    assert warehouse.read_table(schema, "scrobbles", ["user_name"])["user_name"].tolist() == ["ann"]


def test_replace_table_replaces_rows_and_columns(warehouse, schema):
    warehouse.replace_table(schema, "chart", pd.DataFrame({"rank": [1, 2, 3], "track_name": ["a", "b", "c"]}))
    assert warehouse.row_count(schema, "chart") == 3

    assert warehouse.replace_table(schema, "chart", pd.DataFrame({"rank": [1, 2], "track_name": ["x", "y"]})) == 2
    assert sorted_rows(warehouse.read_table(schema, "chart"), "rank").to_dict("records") == [
        {"rank": 1, "track_name": "x"},
        {"rank": 2, "track_name": "y"},
    ]

    # A new shape replaces the old one.
    warehouse.replace_table(schema, "chart", pd.DataFrame({"rank": [7], "listeners": [1.5], "key": ["k"]}))
    assert warehouse.read_table(schema, "chart").to_dict("records") == [{"rank": 7, "listeners": 1.5, "key": "k"}]

    # An empty frame empties the table and keeps its columns.
    assert warehouse.replace_table(schema, "chart", pd.DataFrame({"rank": pd.Series([], dtype="int64")})) == 0
    assert warehouse.row_count(schema, "chart") == 0
    assert warehouse.table_exists(schema, "chart")


def test_append_adds_rows_and_creates_the_table(warehouse, schema):
    assert not warehouse.table_exists(schema, "events")
    assert warehouse.append(schema, "events", pd.DataFrame({"id": [1, 2], "kind": ["a", "b"]})) == 2
    assert warehouse.append(schema, "events", pd.DataFrame({"id": [3], "kind": ["c"]})) == 1
    assert warehouse.row_count(schema, "events") == 3
    # Columns are matched by name, not position.
    warehouse.append(schema, "events", pd.DataFrame({"kind": ["d"], "id": [4]}))
    assert warehouse.query_df(f"select id from {schema}.events where kind = 'd'")["id"].tolist() == [4]


def test_table_exists_and_row_count(warehouse, schema):
    assert not warehouse.table_exists(schema, "missing")
    assert warehouse.row_count(schema, "missing") == 0
    warehouse.append(schema, "present", pd.DataFrame({"x": np.arange(25)}))
    assert warehouse.table_exists(schema, "present")
    assert warehouse.row_count(schema, "present") == 25


def test_query_df_returns_typed_columns(warehouse, schema):
    frame = pd.DataFrame(
        {
            "user_name": ["ann", "bob", ""],
            "playcount": [10, 20, 30],
            "age": pd.array([31, None, 45], dtype="Int64"),
            "score": [0.25, None, 1e-9],
            "subscriber": [True, False, True],
            "registered_at": pd.to_datetime(
                [
                    dt.datetime(2020, 5, 1, 10, 11, 12, 123456, tzinfo=dt.UTC),
                    dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
                    dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                ]
            ),
            "listen_date": [dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)],
            "note": ['it\'s "quoted", with, commas', None, "line\nbreak"],
        }
    )
    warehouse.replace_table(schema, "users", frame)

    result = sorted_rows(warehouse.read_table(schema, "users"), "playcount")

    assert list(result.columns) == list(frame.columns)
    assert pd.api.types.is_integer_dtype(result["playcount"])
    assert result["playcount"].tolist() == [10, 20, 30]
    assert pd.api.types.is_integer_dtype(result["age"])
    assert result["age"].isna().tolist() == [False, True, False]
    assert result["age"].dropna().tolist() == [31, 45]
    assert pd.api.types.is_float_dtype(result["score"])
    assert result["score"].iloc[0] == 0.25 and np.isnan(result["score"].iloc[1]) and result["score"].iloc[2] == 1e-9
    assert pd.api.types.is_bool_dtype(result["subscriber"])
    assert pd.api.types.is_datetime64_any_dtype(result["registered_at"])
    registered = result["registered_at"]
    if registered.dt.tz is None:
        registered = registered.dt.tz_localize("UTC")
    assert registered.tolist() == frame["registered_at"].tolist()
    assert pd.to_datetime(result["listen_date"]).dt.date.tolist() == frame["listen_date"].tolist()
    assert result["user_name"].tolist() == ["ann", "bob", ""]  # empty string is not NULL
    assert result["note"].iloc[0] == frame["note"].iloc[0] and result["note"].iloc[2] == "line\nbreak"
    assert pd.isna(result["note"].iloc[1])


def test_lower_case_names_work_in_sql_of_any_case_and_reserved_words_are_columns(warehouse, schema):
    frame = pd.DataFrame({"rank": [1], "key": [3], "source": ["lastfm"], "mode": [1]})
    warehouse.replace_table(schema, "lastfm_chart", frame)

    assert warehouse.table_exists(schema, "lastfm_chart")
    # Unquoted identifiers: PostgreSQL folds to lower case, Snowflake to upper, DuckDB ignores case.
    counted = warehouse.query_df(f"SELECT COUNT(*) AS n, MAX(rank) AS top FROM {schema.upper()}.LASTFM_CHART")
    assert counted.to_dict("records") == [{"n": 1, "top": 1}]
    assert warehouse.read_table(schema, "lastfm_chart", ["key", "source"]).to_dict("records") == [
        {"key": 3, "source": "lastfm"}
    ]


def test_result_columns_are_lower_case_on_every_target(warehouse, schema):
    warehouse.replace_table(schema, "lastfm_chart", pd.DataFrame({"rank": [1, 2], "track_name": ["a", "b"]}))
    # DuckDB keeps an alias as written, Snowflake folds it to upper case: callers see lower case.
    frame = warehouse.query_df(
        f"select count(*) as N, max(RANK) as Top_Rank, min(track_name) from {schema}.lastfm_chart"
    )
    assert [c for c in frame.columns[:2]] == ["n", "top_rank"]
    assert all(c == c.lower() for c in frame.columns)
    assert frame[["n", "top_rank"]].to_dict("records") == [{"n": 2, "top_rank": 2}]


# Names in every script, and values that would break a hand-built SQL literal.
AWKWARD_NAMES = [
    "Мумий Тролль",
    "坂本龍一",
    "방탄소년단",
    "فيروز",
    "שלמה ארצי",
    "ธงไชย",
    "!!!",
    "O'Brien; drop table x --",
    "50% ? off",
]


def test_read_batches_binds_parameters_and_streams_typed_batches(warehouse, schema):
    frame = pd.DataFrame(
        {
            "artist_name": AWKWARD_NAMES,
            "plays": list(range(len(AWKWARD_NAMES))),
            "score": [0.5 * i for i in range(len(AWKWARD_NAMES))],
        }
    )
    warehouse.replace_table(schema, "artists", frame)

    for name in AWKWARD_NAMES:  # each value comes back only through its bound parameter
        batches = list(
            warehouse.read_batches(
                f"select artist_name as Artist_Name, plays from {schema}.artists where artist_name = ? and plays >= ?",
                [name, 0],
            )
        )
        table = pa.Table.from_batches(batches)
        assert table.column_names == ["artist_name", "plays"]
        assert table.to_pylist() == [{"artist_name": name, "plays": AWKWARD_NAMES.index(name)}]
        assert pa.types.is_string(table.schema.field("artist_name").type)
        assert pa.types.is_integer(table.schema.field("plays").type)

    # a '?' or '%' inside a string literal is text, not a placeholder
    literal = warehouse.read_arrow(f"select count(*) as n from {schema}.artists where artist_name = '50% ? off'")
    assert literal.to_pylist() == [{"n": 1}]

    streamed = list(warehouse.read_batches(f"select plays, score from {schema}.artists order by plays", (), 4))
    assert sum(b.num_rows for b in streamed) == len(AWKWARD_NAMES)
    assert len(streamed) >= 3 and all(b.num_rows <= 4 for b in streamed)
    assert pa.Table.from_batches(streamed).column("score").to_pylist() == frame["score"].tolist()


def test_read_batches_of_no_rows_still_names_the_columns(warehouse, schema):
    warehouse.replace_table(schema, "artists", pd.DataFrame({"artist_id": ["a1"], "plays": [3]}))
    empty = warehouse.read_arrow(f"select artist_id, plays from {schema}.artists where artist_id = ?", ["nobody"])
    assert empty.num_rows == 0 and empty.column_names == ["artist_id", "plays"]


def test_read_batches_is_read_only(warehouse, schema):
    warehouse.replace_table(schema, "artists", pd.DataFrame({"artist_id": ["a1", "a2"]}))
    with pytest.raises(WarehouseError):
        list(warehouse.read_batches(f"delete from {schema}.artists where artist_id = ?", ["a1"]))
    assert warehouse.row_count(schema, "artists") == 2


def test_read_batches_reports_a_bad_query_as_a_warehouse_error(warehouse, schema):
    with pytest.raises(WarehouseError):
        list(warehouse.read_batches(f"select * from {schema}.no_such_table where x = ?", [1]))


def test_large_frames_load_in_batches(warehouse, schema):
    rows = 2_500
    frame = pd.DataFrame(
        {
            "user_name": [f"user_{i % 37}" for i in range(rows)],
            "played_at_uts": np.arange(rows, dtype="int64") + 1_735_689_600,
            "scrobble_date": [DAY1] * rows,
        }
    )
    warehouse.replace_partition(schema, "scrobbles", frame, "scrobble_date", [DAY1])
    stats = warehouse.query_df(f"select count(*) as n, sum(played_at_uts) as total from {schema}.scrobbles")
    assert int(stats["n"].iloc[0]) == rows
    assert int(stats["total"].iloc[0]) == int(frame["played_at_uts"].sum())


def raw_scrobble_frame(day: dt.date, rows: int, *, start: int = 0) -> pd.DataFrame:
    """A ``raw.lastfm_scrobbles`` frame exactly as the raw asset builds it (Arrow-backed)."""
    base = dt.datetime.combine(day, dt.time())
    records = [
        {
            "user_name": f"user_{i % 7}",
            "played_at_uts": int(base.replace(tzinfo=dt.UTC).timestamp()) + i,
            "played_at": base + dt.timedelta(seconds=i),
            "scrobble_date": day,
            "track_name": f"Track {start + i}",
            "track_mbid": None if i % 3 else f"mbid-{i}",
            "artist_name": f"Artist {i % 11}",
            "artist_mbid": None,
            "album_name": None if i % 2 else "Album",
            "album_mbid": None,
            "track_url": None,
        }
        for i in range(rows)
    ]
    return to_raw_frame(records, LASTFM_SCROBBLES, source="lastfm", ingested_at=dt.datetime(2025, 2, 1))


def test_arrow_backed_raw_frames_round_trip_with_nulls(warehouse, schema):
    frame = raw_scrobble_frame(DAY1, 10)
    assert all(isinstance(t, pd.ArrowDtype) for t in frame.dtypes)

    warehouse.replace_partition(schema, "scrobbles", frame, "scrobble_date", [DAY1])
    warehouse.replace_partition(schema, "scrobbles", frame, "scrobble_date", [DAY1])

    back = warehouse.query_df(
        f"select played_at_uts, played_at, scrobble_date, track_mbid, album_name, source, ingested_at "
        f"from {schema}.scrobbles order by played_at_uts"
    )
    assert len(back) == 10
    assert back["track_mbid"].isna().sum() == frame["track_mbid"].isna().sum() == 6
    assert back["album_name"].isna().sum() == 5
    assert pd.Timestamp(back["played_at"].iloc[3]) == pd.Timestamp(dt.datetime.combine(DAY1, dt.time(0, 0, 3)))
    assert pd.Timestamp(back["scrobble_date"].iloc[0]).date() == DAY1
    assert set(back["source"]) == {"lastfm"}
    assert pd.Timestamp(back["ingested_at"].iloc[0]) == pd.Timestamp("2025-02-01")


def test_duckdb_stores_large_arrow_loads_in_small_row_groups_in_order(tmp_path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    rows = 3 * ROW_GROUP_ROWS + 1_000
    frame = raw_scrobble_frame(DAY1, rows)

    wh.replace_partition("raw", "scrobbles", frame, "scrobble_date", [DAY1])

    groups = wh.query_df("select count(distinct row_group_id) as n from pragma_storage_info('raw.scrobbles')")
    assert int(groups["n"].iloc[0]) == 4  # full row groups of ROW_GROUP_ROWS, written in parallel
    order = wh.query_df("select played_at_uts from raw.scrobbles order by rowid")["played_at_uts"]
    assert order.is_monotonic_increasing and len(order) == rows  # insertion order kept
    columns = dict(
        wh.query_df(
            "select column_name, data_type from information_schema.columns where table_name = 'scrobbles'"
        ).itertuples(index=False)
    )
    assert columns["played_at"] == "TIMESTAMP" and columns["scrobble_date"] == "DATE"


def test_duckdb_writes_while_this_process_has_the_file_open(tmp_path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    wh.replace_table("raw", "chart", pd.DataFrame({"chart_rank": [1]}))
    held = duckdb.connect(str(wh.path))  # e.g. a notebook or a test reading the file
    try:
        wh.append("raw", "chart", pd.DataFrame({"chart_rank": [2]}))
        assert held.execute("select count(*) from raw.chart").fetchone()[0] == 2
    finally:
        held.close()
    assert wh.row_count("raw", "chart") == 2


def test_duckdb_loads_a_frame_arrow_cannot_convert_through_the_pandas_reader(tmp_path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    mixed = pd.DataFrame(
        {
            "name": pd.array(["a", "b"], dtype=pd.ArrowDtype(pa.string())),
            "value": pd.Series([1, "two"], dtype=object),  # Arrow refuses mixed int/str objects
        }
    )
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        pa.Table.from_pandas(mixed)

    wh.replace_table("raw", "mixed", mixed)

    assert wh.query_df("select cast(value as varchar) as v from raw.mixed order by name")["v"].tolist() == ["1", "two"]


def test_duckdb_reads_read_only_while_this_process_has_the_file_open_for_writing(tmp_path):
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    warehouse.replace_table("raw", "t", pd.DataFrame({"a": [1, 2]}))
    writer = duckdb.connect(str(warehouse.path))  # DuckDB refuses a read-only connection beside it
    try:
        assert warehouse.read_arrow("select a from raw.t where a > ?", [1]).to_pylist() == [{"a": 2}]
        with pytest.raises(WarehouseError):
            list(warehouse.read_batches("insert into raw.t values (?)", [3]))
        assert warehouse.row_count("raw", "t") == 2
    finally:
        writer.close()


def test_duckdb_read_of_a_missing_file_is_a_clear_error_and_creates_nothing(tmp_path):
    warehouse = DuckDBWarehouse(tmp_path / "nothing_yet.duckdb")
    with pytest.raises(WarehouseError, match="does not exist yet"):
        list(warehouse.read_batches("select 1 as one"))
    assert not warehouse.path.exists()


def test_operations_in_a_session_behave_as_they_do_alone(warehouse, schema):
    with warehouse.session():
        warehouse.replace_partition(schema, "scrobbles", scrobbles(DAY1, ["u1", "u2"]), "scrobble_date", [DAY1])
        warehouse.replace_partition(schema, "scrobbles", scrobbles(DAY2, ["u3"]), "scrobble_date", [DAY2])
        assert warehouse.table_exists(schema, "scrobbles") and not warehouse.table_exists(schema, "nothing")
        assert warehouse.row_count(schema, "scrobbles") == 3
        frame = warehouse.query_df(f"select user_name from {schema}.scrobbles order by user_name")
        assert list(frame["user_name"]) == ["u1", "u2", "u3"]
        with pytest.raises(WarehouseError):  # a read-only read stays read-only inside a session
            list(warehouse.read_batches(f"delete from {schema}.scrobbles where user_name = ?", ["u1"]))
        with warehouse.session():  # nested: the outer session's connection serves it
            assert warehouse.row_count(schema, "scrobbles") == 3
    assert warehouse.row_count(schema, "scrobbles") == 3  # written for good, visible afterwards


def test_a_duckdb_session_opens_the_file_once_and_releases_it(tmp_path, schema, monkeypatch):
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    warehouse.replace_table(schema, "artists", pd.DataFrame({"artist_id": ["a1", "a2"]}))
    opened = []
    original = DuckDBWarehouse._open  # noqa: SLF001 - counting the file opens is the point
    monkeypatch.setattr(
        DuckDBWarehouse, "_open", lambda self, read_only: opened.append(read_only) or original(self, read_only)
    )
    with warehouse.session():
        for _ in range(5):
            assert warehouse.table_exists(schema, "artists")
            assert warehouse.row_count(schema, "artists") == 2
            warehouse.read_arrow(f"select * from {schema}.artists where artist_id = ?", ["a1"])
    assert len(opened) == 1
    # closed with the session: another process (here a read-only connection) can open the file
    with duckdb.connect(str(warehouse.path), read_only=True) as conn:
        assert conn.execute(f"select count(*) from {schema}.artists").fetchone()[0] == 2
