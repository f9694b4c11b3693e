"""Alerting: every failed run leaves an alert record (and a webhook post when configured).

The alert names the failed steps and, when a blocking check stopped the run, the failed checks
(each of those also gets its own check-failure alert from ``check_alerts.py``). One alert per
run: ``record_alert`` refuses a second record with the same run id.
"""

import dagster as dg

from music_platform.config import Settings
from music_platform.defs.automation.check_alerts import failed_check_alerts
from music_platform.quality.alerts import RUN_FAILURE, Alert, record_alert


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description="Writes an alert (data/alerts/alerts.jsonl; MUSIC_PLATFORM_ALERT_WEBHOOK if set) for every failed run.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    settings = Settings.from_env()
    run = context.dagster_run
    failed_steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    reason = context.failure_event.message or "run failed"
    failed_checks = [f"{a.asset}:{a.check}" for a in failed_check_alerts(context.instance, run)]
    if failed_checks:
        reason += f" Failed ERROR checks: {', '.join(failed_checks)}."
    outcome = record_alert(
        Alert(
            kind=RUN_FAILURE,
            reason=reason[:500],
            run_id=run.run_id,
            job=run.job_name,
            asset=", ".join(failed_steps)[:300] or None,
            partition=run.tags.get("dagster/partition"),
        ),
        settings.data_dir,
        settings.alert_webhook,
    )
    if outcome.delivered is False:
        context.log.warning(f"alert for run {run.run_id} recorded but the webhook did not accept it")
