"""Schedules evaluate to the runs an operator expects."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from music_platform.config import Settings
from music_platform.defs.automation import schedules
from music_platform.defs.automation.schedules import daily_ingestion_schedule_for
from music_platform.defs.ml.assets import lightfm_model

daily_ingestion_schedule = daily_ingestion_schedule_for(
    Settings.from_env({"MUSIC_PLATFORM_PARTITIONS_START": "2025-01-01"})
)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_daily_ingestion_requests_yesterdays_partition(instance):
    # Today is a partition too (issue 19): the 01:00 tick names the day before, its final load.
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 3, 15, 1, 0, tzinfo=UTC)
    )
    request = daily_ingestion_schedule(context)  # direct invocation: the request the function makes
    assert request.partition_key == "2026-03-14"
    assert request.run_config == {}  # every tracked user: the day's full load
    assert daily_ingestion_schedule.cron_schedule == "0 1 * * *"
    assert daily_ingestion_schedule.execution_timezone == "UTC"


def test_the_weekly_retrain_is_the_models_automation_condition_alone():
    """One trigger per retrain: the model's cron condition (Sundays 04:00 UTC, or when missing),
    and no schedule or job that retrains it as well."""
    model = dg.AssetKey(["ml", "lightfm_model"])
    condition = lightfm_model.automation_conditions_by_key[model]
    assert {child.get_label() for child in condition.children} == {"on_missing", "on_cron(0 4 * * 0, UTC)"}
    assert not [name for name in vars(schedules) if "retrain" in name]  # no retrain job or schedule
