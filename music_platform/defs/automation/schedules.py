"""Schedules and the declarative-automation sensor.

- daily ingestion: yesterday's scrobble partition, every day at 01:00 UTC (its final load: the
  near-real-time sensor loads the open day while it runs);
- weekly retrain: the model and everything it publishes, Sundays at 04:00 UTC;
- everything downstream of raw data (dbt models, recommendations) follows its
  ``AutomationCondition``s, evaluated by the automation sensor.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from music_platform.partitions import daily_partitions

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
MODEL = dg.AssetKey(["ml", "lightfm_model"])

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion_job",
    selection=dg.AssetSelection.assets(SCROBBLES),
    partitions_def=daily_partitions,
    description="Loads one day of scrobbles for every tracked user.",
)

@dg.schedule(
    name="daily_ingestion_schedule",
    job=daily_ingestion_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The final load of the day before, for every tracked user, at 01:00 UTC: it settles the day the "
    "near-real-time sensor loaded incrementally while it ran.",
)
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    # Today is a partition too (end_offset=1, issue 19), so the schedule names the day before its
    # tick explicitly rather than the job's latest partition.
    tick = context.scheduled_execution_time or datetime.now(UTC)
    day = (tick.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    tags = {"music_platform/load": "final", "music_platform/api": "lastfm"}
    return dg.RunRequest(run_key=f"daily_ingestion:{day}", partition_key=day, tags=tags)

weekly_retrain_job = dg.define_asset_job(
    "weekly_retrain_job",
    selection=dg.AssetSelection.assets(MODEL).downstream(),
    description="Retrains the model, evaluates it against the baseline and publishes it if it passes the gate.",
)

weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=weekly_retrain_job,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates every asset's AutomationCondition: rebuilds marts and recommendations when upstream "
    "data changes.",
)
