"""How DataFrame columns map to SQL kinds and load-ready values (shared by PostgreSQL and Snowflake)."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
import pytest

from music_platform.sources.schemas import RAW_TABLES
from music_platform.warehouse import frames
from music_platform.warehouse.base import WarehouseError


def kinds(df: pd.DataFrame) -> dict[str, str]:
    return {spec.name: spec.kind for spec in frames.column_specs(df)}


def test_column_kinds_follow_dtypes_and_object_values():
    df = pd.DataFrame(
        {
            "int64": np.array([1, 2], dtype="int64"),
            "nullable_int": pd.array([1, None], dtype="Int64"),
            "int32": np.array([1, 2], dtype="int32"),
            "uint64": np.array([1, 2], dtype="uint64"),
            "float": [1.5, None],
            "text": ["a", None],
            "string_dtype": pd.Series(["a", None], dtype="string"),
            "category": pd.Series(["a", "b"], dtype="category"),
            "all_null": [None, None],
            "bool": [True, False],
            "nullable_bool": pd.array([True, None], dtype="boolean"),
            "ts_utc": pd.to_datetime([dt.datetime(2025, 1, 1, tzinfo=dt.UTC)] * 2),
            "ts_naive": pd.to_datetime([dt.datetime(2025, 1, 1)] * 2),
            "date_objects": [dt.date(2025, 1, 1), None],
            "int_objects": [1, None],
            "decimal": [decimal.Decimal("1.25"), None],
            "bytes": [b"\x00", None],
            "nested": [{"a": 1}, [1, 2]],
            "mixed": [1, "x"],
        }
    )
    assert kinds(df) == {
        "int64": frames.BIGINT,
        "nullable_int": frames.BIGINT,
        "int32": frames.INTEGER,
        "uint64": frames.NUMERIC,
        "float": frames.DOUBLE,
        "text": frames.TEXT,
        "string_dtype": frames.TEXT,
        "category": frames.TEXT,
        "all_null": frames.TEXT,
        "bool": frames.BOOLEAN,
        "nullable_bool": frames.BOOLEAN,
        "ts_utc": frames.TIMESTAMP,
        "ts_naive": frames.TIMESTAMP,
        "date_objects": frames.DATE,
        "int_objects": frames.DOUBLE,  # pandas made it float64 with NaN
        "decimal": frames.NUMERIC,
        "bytes": frames.BINARY,
        "nested": frames.JSON,
        "mixed": frames.TEXT,
    }


def test_durations_and_bad_names_are_refused_with_a_clear_error():
    with pytest.raises(WarehouseError, match="seconds"):
        frames.column_specs(pd.DataFrame({"took": pd.to_timedelta([1, 2], unit="s")}))
    with pytest.raises(WarehouseError, match="differ only by case"):
        frames.column_specs(pd.DataFrame([[1, 2]], columns=["Rank", "rank"]))
    with pytest.raises(WarehouseError, match="invalid SQL identifier"):
        frames.column_specs(pd.DataFrame({"bad name": [1]}))


def test_prepare_batch_gives_utc_naive_timestamps_nullable_ints_and_json_text():
    df = pd.DataFrame(
        {
            "played_at": pd.to_datetime([dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))]),
            "aware_objects": pd.Series(
                [dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5)))], dtype=object
            ),
            "count": pd.Series([7], dtype=object),
            "payload": [{"tags": ["rock"]}],
        }
    )
    prepared = frames.prepare_batch(df, frames.column_specs(df))
    assert prepared["played_at"].tolist() == [pd.Timestamp("2025-01-01 10:00:00")]
    assert prepared["aware_objects"].tolist() == [pd.Timestamp("2025-01-01 17:00:00")]
    assert str(prepared["count"].dtype) == "Int64"
    assert prepared["payload"].tolist() == ['{"tags": ["rock"]}']
    table = frames.to_arrow(prepared)
    assert str(table.schema.field("played_at").type) == "timestamp[ns]"


def test_raw_scrobble_contract_maps_to_the_expected_kinds():
    columns = RAW_TABLES["lastfm_scrobbles"].column_names
    row = {
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
        "track_url": "https://www.last.fm/music/Band/_/Song",
        "source": "synthetic",
        "ingested_at": pd.Timestamp("2025-01-02", tz="UTC"),
    }
    df = pd.DataFrame([row], columns=columns)
    found = kinds(df)
    assert found["played_at_uts"] == frames.BIGINT
    assert found["played_at"] == found["ingested_at"] == frames.TIMESTAMP
    assert found["scrobble_date"] == frames.DATE
    assert {found[c] for c in ("user_name", "track_mbid", "artist_mbid", "source")} == {frames.TEXT}


def test_iter_batches_covers_every_row_once():
    df = pd.DataFrame({"x": range(10)})
    batches = list(frames.iter_batches(df, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert pd.concat(batches)["x"].tolist() == list(range(10))
    with pytest.raises(ValueError):
        list(frames.iter_batches(df, 0))
