"""``raw/kaggle_tracks`` and ``kaggle_drop_folder_sensor`` driven through Dagster.

The sensor is evaluated against a real drop folder (a new file -> a run request; the same
files again -> a skip; changed content -> a new run request). The asset is materialised from
the real Kaggle sample plus a file of deliberately broken rows, and every row is accounted for:
in the metadata, in ``raw.kaggle_tracks`` (one row per distinct valid track id with all its
genres) and in ``raw.kaggle_tracks_rejected`` (every broken row, with its reason).
"""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

from music_platform.defs.ingestion.kaggle import KAGGLE_KEY, kaggle_drop_folder_sensor, kaggle_tracks
from music_platform.resources import ArtifactStoreResource, KaggleResource, WarehouseResource
from music_platform.sources.kaggle.loader import EXPECTED_COLUMNS
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.conftest import require_shared_data

SAMPLE = "spotify-tracks-sample/spotify_tracks_sample.csv"
HEADER = ["", *EXPECTED_COLUMNS]


def _row(index: int, **values: str) -> list[str]:
    base = {
        "track_id": f"broken{index:016d}",
        "artists": "Broken Band",
        "album_name": "Broken Album",
        "track_name": f"Broken Song {index}",
        "popularity": "40",
        "duration_ms": "180000",
        "explicit": "False",
        "danceability": "0.5",
        "energy": "0.5",
        "key": "1",
        "loudness": "-8.0",
        "mode": "1",
        "speechiness": "0.05",
        "acousticness": "0.3",
        "instrumentalness": "0.0",
        "liveness": "0.1",
        "valence": "0.5",
        "tempo": "100.0",
        "time_signature": "4",
        "track_genre": "rock",
    }
    base.update(values)
    return [str(index), *(base[c] for c in EXPECTED_COLUMNS)]


# data-row number in broken.csv -> (row, the words its rejection reason must hold)
BROKEN_ROWS = {
    1: (_row(1, danceability="1.5"), "danceability not in [0, 1]"),
    2: (_row(2, track_name=""), "track_name is empty"),
    3: (_row(3, popularity="very"), "popularity is not a number"),
    4: (_row(4, tempo="-3"), "tempo not >= 0"),
    5: (_row(5)[:12], "expected 21 fields, found 12"),
    6: (_row(6, track_id="", artists=";"), "track_id is empty"),
    7: (_row(7, energy="nan", mode="2"), "energy is not a number"),
}


def _write(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


# -- the sensor ----------------------------------------------------------------------------------


def _evaluate(drop_dir: Path, cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor, resources={"kaggle": KaggleResource(drop_dir=str(drop_dir))})
    return kaggle_drop_folder_sensor(context)


def test_sensor_requests_a_run_for_new_and_changed_files_only(tmp_path):
    drop = tmp_path / "kaggle"
    drop.mkdir()
    assert isinstance(_evaluate(drop, None), dg.SkipReason)  # nothing dropped yet

    _write(drop / "dataset.csv", [_row(1)])
    (drop / ".dataset.csv.partial").write_text("a copy still in progress")  # hidden files are ignored
    first = _evaluate(drop, None)
    assert isinstance(first, dg.SensorResult)
    [request] = first.run_requests
    assert request.run_key.startswith("kaggle:dataset.csv@")
    assert request.tags["kaggle/files"] == "dataset.csv"

    again = _evaluate(drop, first.cursor)
    assert isinstance(again, dg.SkipReason)
    assert "no new or changed CSV" in again.skip_message

    _write(drop / "dataset.csv", [_row(1), _row(2)])  # same name, new content
    changed = _evaluate(drop, first.cursor)
    [changed_request] = changed.run_requests
    assert changed_request.run_key != request.run_key
    assert changed_request.tags["kaggle/files"] == "dataset.csv"

    _write(drop / "more.csv", [_row(3)])
    added = _evaluate(drop, changed.cursor)
    [added_request] = added.run_requests
    assert added_request.tags["kaggle/files"] == "more.csv"  # the unchanged file is not named again
    assert isinstance(_evaluate(drop, added.cursor), dg.SkipReason)


def test_sensor_targets_the_kaggle_asset():
    assert kaggle_drop_folder_sensor.job.selection.resolve([kaggle_tracks]) == {KAGGLE_KEY}


# -- the asset, from the real sample plus broken rows --------------------------------------------


def _sample_expectations(sample: Path) -> tuple[int, dict[str, set[str]]]:
    """Input rows of the sample and the genres of each track id, read with the csv module alone."""
    genres: dict[str, set[str]] = defaultdict(set)
    rows = 0
    with sample.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            rows += 1
            genres[record["track_id"]].add(record["track_genre"])
    return rows, genres


@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    sample = require_shared_data(SAMPLE)
    root = tmp_path_factory.mktemp("kaggle_asset")
    drop = root / "data" / "external" / "kaggle"
    drop.mkdir(parents=True)
    shutil.copy(sample, drop / "spotify_tracks_sample.csv")
    _write(drop / "broken.csv", [row for row, _ in BROKEN_ROWS.values()])
    result = dg.materialize(
        [kaggle_tracks],
        resources={
            "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(root / "warehouse.duckdb")),
            "kaggle": KaggleResource(drop_dir=str(drop), synthetic_allowed=False),
            "artifacts": ArtifactStoreResource(data_dir=str(root / "data")),
        },
        raise_on_error=False,  # broken.csv keeps none of its rows: the blocking rows_kept check fails
    )
    return result, DuckDBWarehouse(root / "warehouse.duckdb"), _sample_expectations(sample)


def test_every_input_row_is_accounted_for_in_the_metadata(materialised):
    result, _, (sample_rows, genres) = materialised
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["rows_input_rows"] == sample_rows + len(BROKEN_ROWS)
    assert metadata["rows_rejected"] == len(BROKEN_ROWS)
    assert metadata["rows_loaded"] == len(genres)
    assert metadata["rows_merged"] == sample_rows - len(genres)
    assert metadata["rows_loaded"] + metadata["rows_merged"] + metadata["rows_rejected"] == metadata["rows_input_rows"]
    assert metadata["data_source"] == "kaggle"
    assert set(metadata["files"]) == {"spotify_tracks_sample.csv", "broken.csv"}


def test_one_row_per_distinct_valid_track_with_all_its_genres(materialised):
    _, warehouse, (_, genres) = materialised
    tracks = warehouse.read_table("raw", "kaggle_tracks")
    assert tracks["track_id"].is_unique
    assert set(tracks["track_id"]) == set(genres)
    merged = {track_id: names for track_id, names in genres.items() if len(names) > 1}
    assert merged, "the real sample lists some tracks under several genres"
    stored = dict(zip(tracks["track_id"], tracks["genres"], strict=True))
    for track_id, names in merged.items():
        assert set(stored[track_id].split(";")) == names
    assert set(tracks["source"]) == {"kaggle"}


def test_every_broken_row_is_quarantined_with_its_reason(materialised):
    _, warehouse, _ = materialised
    rejected = warehouse.read_table("raw", "kaggle_tracks_rejected")
    assert (rejected["source_file"] == "broken.csv").all()
    by_row = dict(zip(rejected["row_number"], rejected["reason"], strict=True))
    assert set(by_row) == set(BROKEN_ROWS)
    for row_number, (_, reason) in BROKEN_ROWS.items():
        assert reason in by_row[row_number], (row_number, by_row[row_number])
    assert "mode not 0 or 1" in by_row[7]  # every failing rule is listed, not only the first


def test_the_asset_checks_pass_but_the_broken_file_fails_rows_kept(materialised):
    result, _, _ = materialised
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {"completeness", "key_unique", "rows_accounted_for", "files_accepted"} <= set(checks)
    failed = {n: c.description for n, c in checks.items() if not c.passed}
    assert list(failed) == ["rows_kept"], failed
    assert failed["rows_kept"].startswith(f"broken.csv: 0 of {len(BROKEN_ROWS)} rows kept")
    assert "spotify_tracks_sample.csv" not in failed["rows_kept"]  # the sample keeps every row
    assert checks["completeness"].metadata["completeness"].value == 1.0


# -- the drop folder whatever the source mode; bad files and bad rows quarantined (issue 14) ------


def _materialise(root: Path, drop: Path, **kaggle):
    resources = {
        "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(root / "warehouse.duckdb")),
        "kaggle": KaggleResource(drop_dir=str(drop), **kaggle),
        "artifacts": ArtifactStoreResource(data_dir=str(root / "data")),
    }
    result = dg.materialize([kaggle_tracks], resources=resources, raise_on_error=False)
    return result, DuckDBWarehouse(root / "warehouse.duckdb")


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_csv_dropped_with_the_synthetic_source_is_loaded_beside_the_synthetic_catalogue(tmp_path):
    """MUSIC_PLATFORM_SOURCE=synthetic (what the demo sets) and no API key: the drop folder still counts."""
    from music_platform.config import Settings
    from music_platform.resources import build_resources

    settings = Settings.from_env(
        {
            "MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data"),
            "MUSIC_PLATFORM_SOURCE": "synthetic",
            "MUSIC_PLATFORM_SYNTHETIC_USERS": "20",
        }
    )
    _write(settings.kaggle_drop_dir / "dataset.csv", [_row(1, track_name="Дождь"), _row(2, track_name="비")])
    kaggle = build_resources(settings)["kaggle"]
    files, labels = kaggle.resolve()
    assert [f.name for f in files][0] == "dataset.csv" and labels["dataset.csv"] == "kaggle"
    assert sorted(set(labels.values())) == ["kaggle", "synthetic"]

    result, warehouse = _materialise(
        tmp_path,
        settings.kaggle_drop_dir,
        synthetic_allowed=True,
        synthetic_users=20,
        synthetic_dir=str(tmp_path / "synthetic"),
    )
    assert result.success
    tracks = warehouse.read_table("raw", "kaggle_tracks")
    dropped = tracks[tracks["source"] == "kaggle"]
    assert set(dropped["track_id"]) == {"broken0000000000000001", "broken0000000000000002"}
    assert set(dropped["track_name"]) == {"Дождь", "비"} and set(dropped["source_file"]) == {"dataset.csv"}
    assert (tracks["source"] == "synthetic").sum() > 0
    checks = _checks(result)
    assert checks["files_accepted"].passed and checks["rows_kept"].passed


def test_unreadable_files_are_quarantined_and_the_others_still_load(tmp_path):
    drop = tmp_path / "kaggle"
    _write(drop / "good.csv", [_row(i) for i in range(1, 21)])
    (drop / "latin1.csv").write_bytes(",".join(HEADER).encode() + b"\n0,x,Caf\xe9,\n")
    (drop / "renamed.csv").write_text("id,artist,title\n1,a,b\n", encoding="utf-8")
    result, warehouse = _materialise(tmp_path, drop, synthetic_allowed=False)
    assert result.success  # the readable file's rows flow on; the check reports the rest
    assert warehouse.row_count("raw", "kaggle_tracks") == 20
    quarantined = warehouse.read_table("raw", "kaggle_files_rejected").set_index("source_file")
    assert set(quarantined.index) == {"latin1.csv", "renamed.csv"}
    assert "not UTF-8" in quarantined.loc["latin1.csv", "reason"]
    assert "missing column" in quarantined.loc["renamed.csv", "reason"]
    assert quarantined["sha256"].str.len().eq(64).all()
    files_check = _checks(result)["files_accepted"]
    assert not files_check.passed and files_check.severity == dg.AssetCheckSeverity.ERROR
    assert "latin1.csv" in files_check.description and "renamed.csv" in files_check.description
    copies = {p.name for p in (tmp_path / "data" / "external").rglob("rejected/*.csv")}
    assert copies == {"latin1.csv", "renamed.csv"}


def test_too_many_bad_rows_fail_the_blocking_rows_kept_check(tmp_path):
    drop = tmp_path / "kaggle"
    good = [_row(i) for i in range(1, 11)]
    bad = [_row(100 + i, danceability="2.0") for i in range(3)]
    _write(drop / "dataset.csv", good + bad)
    result, warehouse = _materialise(tmp_path, drop, synthetic_allowed=False)
    rows_check = _checks(result)["rows_kept"]
    assert not rows_check.passed and rows_check.severity == dg.AssetCheckSeverity.ERROR
    assert "dataset.csv: 10 of 13 rows kept" in rows_check.description
    assert rows_check.metadata["quarantined"].value == 3
    assert warehouse.row_count("raw", "kaggle_tracks_rejected") == 3
    spec = next(s for s in kaggle_tracks.check_specs if s.name == "rows_kept")
    assert spec.blocking


def test_a_broken_drop_file_is_not_hidden_by_the_synthetic_catalogue(tmp_path):
    """Every row of the dropped file is bad: the synthetic rows beside it must not make the ratio look fine."""
    drop = tmp_path / "kaggle"
    _write(drop / "broken.csv", [_row(i, track_id="") for i in range(1, 6)])
    result, warehouse = _materialise(
        tmp_path, drop, synthetic_allowed=True, synthetic_users=20, synthetic_dir=str(tmp_path / "synthetic")
    )
    assert warehouse.row_count("raw", "kaggle_tracks") > 0  # the synthetic catalogue loaded
    rows_check = _checks(result)["rows_kept"]
    assert not rows_check.passed and "broken.csv: 0 of 5 rows kept" in rows_check.description
    assert not result.success  # blocking: nothing downstream is built from it
