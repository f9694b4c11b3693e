"""Alerting: every failed run leaves an alert record (and a webhook post when configured)."""


import dagster as dg

from music_platform.config import Settings
from music_platform.quality.alerts import Alert, record_alert


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description="Writes an alert (data/alerts/alerts.jsonl; MUSIC_PLATFORM_ALERT_WEBHOOK if set) for every failed run.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    settings = Settings.from_env()
    failed_steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    reason = context.failure_event.message or "run failed"
    record_alert(
        Alert(
            kind="run_failure",
            reason=reason[:500],
            run_id=context.dagster_run.run_id,
            job=context.dagster_run.job_name,
            asset=", ".join(failed_steps)[:300] or None,
        ),
        settings.data_dir,
        settings.alert_webhook,
    )
