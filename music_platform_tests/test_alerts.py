"""Alerts: failed runs and failed ERROR checks leave one record each and reach the webhook (issue 8).

Real runs on an ephemeral instance feed the real sensors (``build_run_status_sensor_context``);
the webhook is a local HTTP receiver on 127.0.0.1 that records what a Slack-compatible endpoint
would receive.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from music_platform.defs.automation.alerts import run_failure_alert_sensor
from music_platform.defs.automation.check_alerts import (
    check_failure_alert_sensor,
    failed_check_alerts,
    failed_run_check_alert_sensor,
)
from music_platform.quality.alerts import (
    CHECK_FAILURE,
    RUN_FAILURE,
    Alert,
    alerts_path,
    check_failure_alert,
    read_alerts,
    record_alert,
)


class WebhookReceiver:
    """A stdlib HTTP server that stores every JSON body POSTed to it and answers ``status``."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(clean_env, monkeypatch) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("MUSIC_PLATFORM_ALERT_WEBHOOK", receiver.url)
        yield receiver


@pytest.fixture
def data_dir(clean_env) -> Path:
    return clean_env / "data"


# -- the alert store ------------------------------------------------------------------------


def test_alert_is_appended_as_jsonl_and_posted_as_slack_json(data_dir):
    alert = Alert(
        kind=CHECK_FAILURE,
        reason="87.00% of 200 rows complete",
        run_id="run-1",
        job="__ASSET_JOB",
        asset="raw/lastfm_scrobbles",
        check="completeness",
        partition="2026-11-23",
    )
    with WebhookReceiver() as receiver:
        outcome = record_alert(alert, data_dir, receiver.url)
    assert outcome.recorded and outcome.delivered
    [line] = alerts_path(data_dir).read_text().splitlines()
    record = json.loads(line)
    assert {k: record[k] for k in ("kind", "run_id", "asset", "check", "reason", "partition")} == {
        "kind": "check_failure",
        "run_id": "run-1",
        "asset": "raw/lastfm_scrobbles",
        "check": "completeness",
        "reason": "87.00% of 200 rows complete",
        "partition": "2026-11-23",
    }
    assert record["time"].endswith("+00:00")
    [payload] = receiver.received
    assert all(part in payload["text"] for part in ("completeness", "raw/lastfm_scrobbles", "run-1"))
    assert payload["alert"]["check"] == "completeness"


def test_the_same_alert_is_recorded_and_posted_once(data_dir):
    first = Alert(kind=RUN_FAILURE, reason="step failed", run_id="run-2", job="daily_ingestion_job")
    again = Alert(kind=RUN_FAILURE, reason="step failed (seen again)", run_id="run-2", job="daily_ingestion_job")
    with WebhookReceiver() as receiver:
        assert record_alert(first, data_dir, receiver.url).recorded
        repeated = record_alert(again, data_dir, receiver.url)
    assert not repeated.recorded and repeated.delivered is None
    assert len(read_alerts(data_dir)) == 1 and len(receiver.received) == 1


def test_a_failing_webhook_keeps_the_record_and_never_raises_or_logs_the_url(data_dir, caplog):
    alert = Alert(kind=RUN_FAILURE, reason="boom", run_id="run-3")
    with WebhookReceiver(status=500) as receiver, caplog.at_level(logging.WARNING):
        outcome = record_alert(alert, data_dir, receiver.url)
    assert outcome.recorded and outcome.delivered is False
    assert read_alerts(data_dir)[0]["run_id"] == "run-3"
    assert "secret-token" not in caplog.text and "webhook failed" in caplog.text
    # an unreachable webhook too
    outcome = record_alert(Alert(kind=RUN_FAILURE, reason="boom", run_id="run-4"), data_dir, "http://127.0.0.1:9/hook")
    assert outcome.recorded and outcome.delivered is False


def test_only_failed_error_checks_raise_alerts():
    common = {"asset": "marts/dim_tracks", "check": "audio_features_in_range", "description": "tempo <= 0: 3 rows"}
    assert check_failure_alert(passed=True, severity="ERROR", **common) is None
    assert check_failure_alert(passed=False, severity="WARN", **common) is None
    alert = check_failure_alert(passed=False, severity="ERROR", run_id="r", **common)
    assert alert.kind == CHECK_FAILURE and alert.reason == "tempo <= 0: 3 rows"
    assert alert.dedup_key == "check_failure:r:marts/dim_tracks:audio_features_in_range:-"


def test_torn_lines_do_not_stop_alerting(data_dir):
    path = alerts_path(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text('{"kind": "run_failure", "dedup_key": "run_failure:a"}\n{"kind": "run_fa')
    assert record_alert(Alert(kind=RUN_FAILURE, reason="x", run_id="b"), data_dir).recorded
    assert not record_alert(Alert(kind=RUN_FAILURE, reason="x", run_id="a"), data_dir).recorded


# -- the sensors, on real runs --------------------------------------------------------------

WIDGETS = dg.AssetKey(["raw", "widgets"])


@dg.asset(
    key=WIDGETS,
    check_specs=[
        dg.AssetCheckSpec("row_count_in_range", asset=WIDGETS),
        dg.AssetCheckSpec("spelling", asset=WIDGETS),
        dg.AssetCheckSpec("key_unique", asset=WIDGETS),
    ],
)
def widgets():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="row_count_in_range", passed=False, description="3 rows, expected >= 10")
    yield dg.AssetCheckResult(
        check_name="spelling", passed=False, severity=dg.AssetCheckSeverity.WARN, description="2 names misspelt"
    )
    yield dg.AssetCheckResult(check_name="key_unique", passed=True)


GATED = dg.AssetKey(["ml", "gated_model"])


@dg.asset(key=GATED, check_specs=[dg.AssetCheckSpec("beats_baseline", asset=GATED, blocking=True)])
def gated_model():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="beats_baseline", passed=False, description="0.01 does not beat 0.03")


@dg.asset(deps=[GATED])
def published_recommendations():
    return None


def _sensor_context(sensor, instance, result, failed: bool):
    event = result.get_run_failure_event() if failed else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=result.dagster_run
    )
    return context.for_run_failure() if failed else context


def test_a_failed_error_check_in_a_successful_run_alerts_once(webhook, data_dir):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([widgets], instance=instance)
    assert result.success  # a non-blocking check does not fail the run

    check_failure_alert_sensor(_sensor_context(check_failure_alert_sensor, instance, result, failed=False))
    alerts = read_alerts(data_dir)
    assert [(a["kind"], a["asset"], a["check"]) for a in alerts] == [
        ("check_failure", "raw/widgets", "row_count_in_range")
    ]
    assert alerts[0]["run_id"] == result.run_id and alerts[0]["reason"] == "3 rows, expected >= 10"
    assert [p["alert"]["check"] for p in webhook.received] == ["row_count_in_range"]

    # The daemon re-reading the same run (a reset cursor, a restart) does not alert again.
    check_failure_alert_sensor(_sensor_context(check_failure_alert_sensor, instance, result, failed=False))
    assert len(read_alerts(data_dir)) == 1 and len(webhook.received) == 1


def test_the_adapter_reads_a_runs_check_evaluations():
    """Contract of music_platform.runs.dagster_instance.check_evaluations on the installed dagster
    (it reads the run's events through a non-public instance method: see the adapter's docstring)."""
    from music_platform.runs.dagster_instance import CheckEvaluation, check_evaluations

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([widgets], instance=instance)
    assert check_evaluations(instance, result.run_id) == [
        CheckEvaluation("raw/widgets", "row_count_in_range", False, "ERROR", "3 rows, expected >= 10", None),
        CheckEvaluation("raw/widgets", "spelling", False, "WARN", "2 names misspelt", None),
        CheckEvaluation("raw/widgets", "key_unique", True, "ERROR", None, None),
    ]
    assert check_evaluations(instance, "no-such-run") == []


def test_a_blocking_check_failure_fails_the_run_and_raises_one_run_alert_and_one_check_alert(webhook, data_dir):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([gated_model, published_recommendations], instance=instance, raise_on_error=False)
    assert not result.success
    assert [a.check for a in failed_check_alerts(instance, result.dagster_run)] == ["beats_baseline"]

    for _ in range(2):  # twice: nothing is alerted twice
        run_failure_alert_sensor(_sensor_context(run_failure_alert_sensor, instance, result, failed=True))
        failed_run_check_alert_sensor(_sensor_context(failed_run_check_alert_sensor, instance, result, failed=True))
    alerts = read_alerts(data_dir)
    assert sorted(a["kind"] for a in alerts) == ["check_failure", "run_failure"]
    by_kind = {a["kind"]: a for a in alerts}
    assert by_kind["check_failure"]["asset"] == "ml/gated_model"
    assert by_kind["check_failure"]["reason"] == "0.01 does not beat 0.03"
    assert by_kind["run_failure"]["run_id"] == result.run_id == by_kind["check_failure"]["run_id"]
    assert "beats_baseline" in by_kind["run_failure"]["reason"]
    assert len(webhook.received) == 2
    assert all(p["text"].startswith(":rotating_light:") for p in webhook.received)


def test_the_check_alert_sensors_are_in_the_definitions():
    from music_platform.definitions import defs as load_defs

    sensors = {s.name: s for s in load_defs().sensors}
    for name in ("run_failure_alert_sensor", "check_failure_alert_sensor", "failed_run_check_alert_sensor"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name
