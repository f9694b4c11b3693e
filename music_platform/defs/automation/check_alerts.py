"""Alerting on failed asset checks: one alert per failed ERROR-severity check evaluation.

Checks run inside runs (in the asset, as a separate step, or as dbt tests), so two run-status
sensors — one for runs that succeeded, one for runs that failed (a failing blocking check fails
its run) — read each finished run's check evaluations from the instance (through the adapter
``music_platform.runs.dagster_instance``: dagster 1.13 has no public read of them) and
record an alert for every failed ERROR check (data/alerts/alerts.jsonl, plus the webhook in
MUSIC_PLATFORM_ALERT_WEBHOOK). Each sensor sees a run once (its cursor), and every alert carries a
dedup key (run, asset, check, partition) that ``record_alert`` refuses to record twice, so a reset
cursor or a daemon restart does not alert again. WARN-severity failures stay in the UI only.
"""

from __future__ import annotations

import dagster as dg

from music_platform.config import Settings
from music_platform.quality.alerts import Alert, check_failure_alert, record_alert
from music_platform.runs.dagster_instance import check_evaluations


def failed_check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Alert]:
    """The alerts for the failed ERROR checks of one run, in the order they were evaluated."""
    alerts = []
    for evaluation in check_evaluations(instance, run.run_id):
        alert = check_failure_alert(
            asset=evaluation.asset,
            check=evaluation.check,
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            run_id=run.run_id,
            job=run.job_name,
            partition=evaluation.partition or run.tags.get("dagster/partition"),
        )
        if alert is not None:
            alerts.append(alert)
    return alerts


def alert_on_failed_checks(context: dg.RunStatusSensorContext) -> dg.SkipReason:
    settings = Settings.from_env()
    alerts = failed_check_alerts(context.instance, context.dagster_run)
    recorded = 0
    for alert in alerts:
        outcome = record_alert(alert, settings.data_dir, settings.alert_webhook)
        recorded += outcome.recorded
        if outcome.delivered is False:
            context.log.warning(f"alert for {alert.asset}:{alert.check} recorded but the webhook did not accept it")
    run_id = context.dagster_run.run_id
    if not alerts:
        return dg.SkipReason(f"run {run_id}: no failed ERROR check")
    return dg.SkipReason(
        f"run {run_id}: {len(alerts)} failed ERROR check(s), {recorded} new alert(s) "
        f"({len(alerts) - recorded} already recorded)"
    )


def _check_alert_sensor(name: str, status: dg.DagsterRunStatus, which_runs: str) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name,
        run_status=status,
        description=f"Records an alert (data/alerts/alerts.jsonl; MUSIC_PLATFORM_ALERT_WEBHOOK if set) for every "
        f"failed ERROR-severity asset check in {which_runs}.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def _sensor(context: dg.RunStatusSensorContext):
        return alert_on_failed_checks(context)

    return _sensor


check_failure_alert_sensor = _check_alert_sensor(
    "check_failure_alert_sensor", dg.DagsterRunStatus.SUCCESS, "runs that succeeded (non-blocking checks)"
)
failed_run_check_alert_sensor = _check_alert_sensor(
    "failed_run_check_alert_sensor", dg.DagsterRunStatus.FAILURE, "runs that failed (e.g. stopped by a blocking check)"
)
