"""Schedules and the declarative-automation sensor.

- daily ingestion: yesterday's scrobble partition, every day at 01:00 UTC;
- weekly retrain: the model and everything it publishes, Sundays at 04:00 UTC;
- everything downstream of raw data (dbt models, recommendations) follows its
  ``AutomationCondition``s, evaluated by the automation sensor.
"""

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

daily_ingestion_schedule = dg.build_schedule_from_partitioned_job(
    daily_ingestion_job,
    hour_of_day=1,
    minute_of_hour=0,
    name="daily_ingestion_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

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
