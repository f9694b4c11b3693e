"""Schedules evaluate to the runs an operator expects."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from music_platform.defs.automation.schedules import daily_ingestion_schedule, weekly_retrain_schedule


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


def test_weekly_retrain_runs_on_sunday_mornings(instance):
    assert weekly_retrain_schedule.cron_schedule == "0 4 * * 0"
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 3, 15, 4, 0, tzinfo=UTC)
    )
    result = weekly_retrain_schedule.evaluate_tick(context)
    assert len(result.run_requests) == 1
    selection = weekly_retrain_schedule.job.selection
    assert selection is not None
