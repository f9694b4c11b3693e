"""Schedules and the declarative-automation sensor.

- daily ingestion: yesterday's scrobble partition, every day at 01:00 UTC (its final load: the
  near-real-time sensor loads the open day while it runs);
- everything downstream of raw data (dbt models, the model, recommendations) follows its
  ``AutomationCondition``, evaluated by the automation sensor. The weekly retrain is one of
  them: ``ml/lightfm_model`` has ``on_missing() | on_cron("0 4 * * 0")``: once a week, at the
  first update of its training data after Sunday 04:00 UTC (so it never retrains on the data it
  was trained on), and what it publishes follows eagerly. One trigger per asset: no schedule
  retrains it as well.
"""

from datetime import UTC, datetime, timedelta
from functools import cache

import dagster as dg

from music_platform.config import Settings, definitions_settings
from music_platform.partitions import daily_partitions

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])


def daily_ingestion_schedule_for(settings: Settings) -> dg.ScheduleDefinition:
    """The daily ingestion schedule (and its job) over the partitions ``settings`` name."""
    return _daily_ingestion_schedule(daily_partitions(settings))


@cache
def _daily_ingestion_schedule(partitions: dg.PartitionsDefinition) -> dg.ScheduleDefinition:
    daily_ingestion_job = dg.define_asset_job(
        "daily_ingestion_job",
        selection=dg.AssetSelection.assets(SCROBBLES),
        partitions_def=partitions,
        description="Loads one day of scrobbles for every tracked user.",
    )

    @dg.schedule(
        name="daily_ingestion_schedule",
        job=daily_ingestion_job,
        cron_schedule="0 1 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The final load of the day before, for every tracked user, at 01:00 UTC: it settles the day "
        "the near-real-time sensor loaded incrementally while it ran.",
    )
    def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # Today is a partition too (end_offset=1, issue 19), so the schedule names the day before
        # its tick explicitly rather than the job's latest partition.
        tick = context.scheduled_execution_time or datetime.now(UTC)
        day = (tick.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        tags = {"music_platform/load": "final", "music_platform/api": "lastfm"}
        return dg.RunRequest(run_key=f"daily_ingestion:{day}", partition_key=day, tags=tags)

    return daily_ingestion_schedule


@dg.definitions
def defs() -> dg.Definitions:
    # A module with a @dg.definitions function is loaded through it alone: everything is listed.
    return dg.Definitions(
        schedules=[daily_ingestion_schedule_for(definitions_settings())],
        sensors=[automation_sensor],
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Today's marts follow a load within one evaluation: at 30 s a load waited 15 s on average
    # (up to 30) for its marts run to be requested (issue 19: listen-to-marts p95 <= 10 min).
    minimum_interval_seconds=15,
    description="Evaluates every asset's AutomationCondition: rebuilds marts and recommendations when upstream "
    "data changes.",
)
