"""Sensors under a running daemon: the Kaggle drop folder, and the alerts (issue 8).

``dagster dev`` (webserver + daemon) runs on a free port against ``workspace.yaml``. The operator
turns the Kaggle sensor on (it ships STOPPED) through the GraphQL ``startSensor`` mutation — the
UI's toggle — drops a Kaggle-format CSV into ``$MUSIC_PLATFORM_DATA_DIR/external/kaggle/``, and the
daemon's sensor tick launches a run that loads it into ``raw/kaggle_tracks``. Then a file whose
every row is invalid fails the blocking rows_kept check: the failure is visible with its
explanation, and the daemon's alert sensors record it and post it to the webhook.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from music_platform.quality.alerts import read_alerts
from music_platform_tests.test_alerts import WebhookReceiver
from music_platform_tests.ui_utils import DagsterStack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SENSOR = "kaggle_drop_folder_sensor"
KAGGLE_HEADER = [
    "",
    "track_id",
    "artists",
    "album_name",
    "track_name",
    "popularity",
    "duration_ms",
    "explicit",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
    "track_genre",
]


def write_kaggle_csv(path: Path, *, blank_track_ids: bool = False) -> int:
    """A small file in the Kaggle Spotify Tracks format, with its real quirks: artists joined with
    ';', quoted fields holding commas and quotes, non-ASCII names, one track listed under two
    genres. Returns the number of distinct track ids. ``blank_track_ids`` breaks every row."""
    genres = ["acoustic", "jazz", "metal", "pop", "k-pop", "ambient"]
    rows = []
    for i in range(18):
        rows.append(
            [
                i,
                f"TRACK{i:018d}AB",
                "Ingrid Michaelson;ZAYN" if i % 5 == 0 else f"Artíst {i % 7}",
                f'Album "{i}", Deluxe' if i % 4 == 0 else f"Album {i}",
                f"Song {i}",
                20 + i,
                180_000 + i * 1000,
                "False",
                0.5,
                0.6,
                i % 12,
                -7.5,
                1,
                0.05,
                0.3,
                0.0,
                0.1,
                0.4,
                95.0 + i,
                4,
                genres[i % len(genres)],
            ]
        )
    rows.append([18, rows[1][1], *rows[1][2:-1], "indie"])  # track 1 under a second genre
    if blank_track_ids:
        for row in rows:
            row[1] = ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(KAGGLE_HEADER)
        writer.writerows(rows)
    return 18


@pytest.fixture(scope="module")
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def dagster_daemon(tmp_path_factory, webhook):
    stack = DagsterStack(
        tmp_path_factory.mktemp("dagster_daemon"),
        MUSIC_PLATFORM_SYNTHETIC_USERS="60",
        MUSIC_PLATFORM_ALERT_WEBHOOK=webhook.url,
    )
    stack.start(timeout=600)
    try:
        yield stack
    finally:
        stack.stop()


def test_dropping_a_kaggle_file_launches_a_successful_run_once_the_sensor_is_on(dagster_daemon):
    stack = dagster_daemon
    sensor = stack.sensor(SENSOR)
    assert sensor["defaultStatus"] == "STOPPED" and sensor["sensorState"]["status"] == "STOPPED"

    distinct_tracks = write_kaggle_csv(stack.data_dir / "external" / "kaggle" / "spotify_tracks_drop.csv")
    assert stack.start_sensor(SENSOR)["sensorState"]["status"] == "RUNNING"

    def sensor_run():
        runs = stack.runs(tags={"dagster/sensor_name": SENSOR})
        return runs[0] if runs else None

    run = wait_for(sensor_run, timeout=300, interval=2, what=f"{SENSOR} to launch a run")
    assert run["jobName"] == "kaggle_ingestion_job"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["kaggle/files"] == "spotify_tracks_drop.csv"
    assert tags["dagster/run_key"].startswith("kaggle:spotify_tracks_drop.csv@")

    finished = stack.wait_for_run(run["runId"], timeout=600)
    assert finished["status"] == "SUCCESS", stack.run_failure_summary(run["runId"])

    materialization = stack.latest_materialization(["raw", "kaggle_tracks"])
    assert materialization["runId"] == run["runId"]
    values = materialization["metadata"]
    # the dropped file's rows, beside the synthetic catalogue the synthetic listens need (issue 14)
    assert values["data_source"] == "kaggle, synthetic" and values["rows_rejected"] == 0
    with duckdb.connect(str(stack.data_dir / "warehouse.duckdb"), read_only=True) as conn:
        dropped = conn.execute(
            "select count(*), count(distinct track_id) from raw.kaggle_tracks where source = 'kaggle'"
        ).fetchone()
    assert dropped == (distinct_tracks, distinct_tracks)

    # The sensor's tick history (the UI's sensor page) names the run it launched.
    ticks = stack.sensor(SENSOR)["sensorState"]["ticks"]
    assert any(run["runId"] in tick["runIds"] for tick in ticks), ticks


def test_a_failed_blocking_check_is_visible_explained_and_alerted_by_the_daemon(dagster_daemon, webhook):
    stack = dagster_daemon
    drop = stack.data_dir / "external" / "kaggle"
    for old in drop.glob("*.csv"):
        old.unlink()
    # every row lacks its track_id: the loader quarantines them all, and the file keeping none of
    # its rows fails the blocking rows_kept check (the synthetic rows beside it do not hide it)
    write_kaggle_csv(drop / "spotify_tracks_broken.csv", blank_track_ids=True)

    # the sensor (still on) notices the folder changed and launches the load
    def broken_file_run():
        runs = stack.runs(tags={"dagster/sensor_name": SENSOR, "kaggle/files": "spotify_tracks_broken.csv"})
        return runs[0] if runs else None

    run_id = wait_for(broken_file_run, timeout=300, interval=2, what=f"{SENSOR} to load the new file")["runId"]
    finished = stack.wait_for_run(run_id, timeout=600)
    assert finished["status"] == "FAILURE"
    assert "rows_kept" in stack.run_failure_summary(run_id)

    # visible and explained: the check's latest result says why, the materialisation says what was rejected
    checks = {c["name"]: c for c in stack.asset_checks(["raw", "kaggle_tracks"])}
    evaluation = checks["rows_kept"]["executionForLatestMaterialization"]["evaluation"]
    assert (evaluation["success"], evaluation["severity"]) == (False, "ERROR")
    assert evaluation["description"].startswith("spotify_tracks_broken.csv: 0 of 19 rows kept")
    assert stack.latest_materialization(["raw", "kaggle_tracks"])["metadata"]["rows_rejected"] == 19

    # alerted by the daemon's sensors: one run-failure and one check-failure record, each posted once
    def alerts_for_run():
        alerts = [a for a in read_alerts(stack.data_dir) if a["run_id"] == run_id]
        return alerts if {a["kind"] for a in alerts} == {"run_failure", "check_failure"} else None

    alerts = wait_for(alerts_for_run, timeout=240, interval=3, what="the daemon's alert sensors to record the failure")
    check_alert = next(a for a in alerts if a["kind"] == "check_failure")
    assert (check_alert["asset"], check_alert["check"]) == ("raw/kaggle_tracks", "rows_kept")
    wait_for(
        lambda: len([p for p in webhook.received if p["alert"]["run_id"] == run_id]) >= 2,
        timeout=60,
        interval=1,
        what="the webhook to receive both alerts",
    )
    posted = [p for p in webhook.received if p["alert"]["run_id"] == run_id]
    assert sorted(p["alert"]["kind"] for p in posted) == ["check_failure", "run_failure"]
