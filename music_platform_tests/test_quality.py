"""Completeness: SQL generation and verdicts, on a real DuckDB table."""

from pathlib import Path

import pandas as pd
import pytest

from music_platform.audio_features import AUDIO_UNIT_FEATURES
from music_platform.quality.completeness import (
    completeness_sql,
    evaluate_completeness,
    measure_completeness,
)
from music_platform.quality.contracts import raw_required_fields
from music_platform.sources.schemas import RAW_TABLES, UNIT_INTERVAL
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse


@pytest.fixture
def warehouse(tmp_path):
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


def _scrobbles(n: int, day: str, blank_tracks: int = 0) -> pd.DataFrame:
    played = pd.Timestamp(day) + pd.to_timedelta(range(n), unit="min")
    return pd.DataFrame(
        {
            "user_name": ["u1"] * n,
            "played_at_uts": [int(p.timestamp()) for p in played],
            "played_at": played,
            "scrobble_date": [pd.Timestamp(day).date()] * n,
            "track_name": [""] * blank_tracks + [f"t{i}" for i in range(n - blank_tracks)],
            "track_mbid": [None] * n,
            "artist_name": ["a"] * n,
            "artist_mbid": [None] * n,
            "album_name": [None] * n,
            "album_mbid": [None] * n,
            "track_url": [None] * n,
            "source": ["synthetic"] * n,
            "ingested_at": [pd.Timestamp("2025-01-05")] * n,
        }
    )


def test_sql_counts_each_rule_and_all_rules():
    sql = completeness_sql("raw.t", {"a": "(a is not null)", "b": "(b > 0)"}, where="d = 1", group_by="d")
    assert "valid__a" in sql and "valid__b" in sql
    assert "(a is not null) and (b > 0)" in sql
    assert sql.endswith("group by d")


def test_complete_table_passes(warehouse):
    warehouse.replace_table("raw", "lastfm_scrobbles", _scrobbles(100, "2025-01-01"))
    result = measure_completeness(warehouse, "raw", "lastfm_scrobbles", raw_required_fields("lastfm_scrobbles"))
    assert result.passed and result.share == 1.0 and result.total_rows == 100


def test_blank_values_fail_and_name_the_column(warehouse):
    warehouse.replace_table("raw", "lastfm_scrobbles", _scrobbles(100, "2025-01-01", blank_tracks=6))
    result = measure_completeness(warehouse, "raw", "lastfm_scrobbles", raw_required_fields("lastfm_scrobbles"))
    assert not result.passed
    assert result.share == pytest.approx(0.94)
    assert list(result.failing_columns) == ["track_name"]
    assert "track_name" in result.describe()


def test_one_bad_partition_fails_even_when_the_whole_table_passes(warehouse):
    frames = [_scrobbles(100, f"2025-01-0{d}") for d in range(1, 8)]
    frames[3] = _scrobbles(100, "2025-01-04", blank_tracks=10)
    warehouse.replace_table("raw", "lastfm_scrobbles", pd.concat(frames, ignore_index=True))
    result = measure_completeness(
        warehouse, "raw", "lastfm_scrobbles", raw_required_fields("lastfm_scrobbles"), group_by="scrobble_date"
    )
    assert result.share > 0.95  # diluted over the table...
    assert not result.passed  # ...but the partition is judged alone
    assert list(result.failing_partitions) == ["2025-01-04"]
    assert "track_name" in result.failing_columns


def test_future_timestamps_are_invalid(warehouse):
    frame = _scrobbles(20, "2025-01-01")
    frame.loc[:1, "played_at"] = pd.Timestamp("2200-01-01")
    warehouse.replace_table("raw", "lastfm_scrobbles", frame)
    result = measure_completeness(warehouse, "raw", "lastfm_scrobbles", raw_required_fields("lastfm_scrobbles"))
    assert result.failing_columns == {"played_at": pytest.approx(0.9)}


def test_empty_table_does_not_pass():
    counts = pd.DataFrame({"total_rows": [0], "valid_rows": [0], "valid__a": [0]})
    result = evaluate_completeness(counts, ["a"])
    assert not result.passed and result.describe() == "no rows to check"


def test_every_raw_table_has_required_fields():
    for name, table in RAW_TABLES.items():
        assert raw_required_fields(name), name
        assert set(table.key) <= set(table.column_names), name


# -- one place per rule: ranges inside one table are dbt tests, on the one audio-feature list -------


def _dbt_column_tests(model: str) -> dict[str, list]:
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "dbt/models/marts/_marts__models.yml").read_text())
    (found,) = [m for m in spec["models"] if m["name"] == model]
    return {c["name"]: c.get("data_tests", []) for c in found["columns"]}


def _ranges(tests: list) -> list[dict]:
    return [t["accepted_range"]["arguments"] for t in tests if isinstance(t, dict) and "accepted_range" in t]


def test_dim_tracks_ranges_are_dbt_tests_on_every_audio_feature():
    columns = _dbt_column_tests("dim_tracks")
    for feature in AUDIO_UNIT_FEATURES:
        assert _ranges(columns[feature]) == [{"min_value": 0, "max_value": 1}], feature
    assert _ranges(columns["tempo"]) == [{"min_value": 0, "inclusive": False}]
    assert _ranges(columns["popularity"]) == [{"min_value": 0, "max_value": 100}]


def test_no_python_check_repeats_a_dbt_range_test():
    from music_platform.defs.quality import marts

    assert not [name for name in vars(marts) if "range" in name.lower()]


def test_the_raw_contracts_check_every_audio_feature_in_the_unit_interval():
    for table in ("kaggle_tracks", "spotify_audio_features"):
        rules = {c.name: c.rule for c in RAW_TABLES[table].columns}
        assert {feature: rules.get(feature) for feature in AUDIO_UNIT_FEATURES} == dict.fromkeys(
            AUDIO_UNIT_FEATURES, UNIT_INTERVAL
        ), table
