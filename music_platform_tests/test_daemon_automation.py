"""Automation as the daemon runs it: schedules' ticks and declarative automation (issue 8).

The schedule is evaluated tick by tick with ``build_schedule_context``; the declarative
automation is evaluated with ``evaluate_automation_conditions`` on the real definitions and an
ephemeral instance — the same evaluation the daemon's ``automation_sensor`` performs every minute.
The Kaggle file sensor under a running daemon is in ``test_daemon_sensors.py``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from music_platform.definitions import defs as load_defs

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
RAW_ROOTS_WITHOUT_CONDITION = {SCROBBLES}


@pytest.fixture(scope="module")
def definitions():
    return load_defs()


def _schedule(definitions, name) -> dg.ScheduleDefinition:
    return definitions.resolve_schedule_def(name)


def _next_ticks(schedule: dg.ScheduleDefinition, after: datetime, count: int = 3) -> list[datetime]:
    """The schedule's next tick times, computed as the scheduler daemon computes them."""
    from dagster._utils.schedules import cron_string_iterator

    ticks = cron_string_iterator(after.timestamp(), schedule.cron_schedule, schedule.execution_timezone or "UTC")
    return list(itertools.islice(ticks, count))


@pytest.mark.parametrize(
    "tick, expected_partition",
    [
        (datetime(2026, 3, 1, 1, 0, tzinfo=UTC), "2026-02-28"),  # month end
        (datetime(2025, 12, 31, 1, 0, tzinfo=UTC), "2025-12-30"),
        (datetime(2026, 1, 1, 1, 0, tzinfo=UTC), "2025-12-31"),  # year boundary
    ],
)
def test_daily_ingestion_schedule_loads_yesterdays_partition_at_0100_utc(definitions, tick, expected_partition):
    schedule = _schedule(definitions, "daily_ingestion_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    assert (schedule.execution_timezone or "UTC") == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # Direct invocation: the request as the schedule function makes it (today is a partition too,
    # so the tick names the day before, the day's final load).
    with dg.instance_for_test() as instance:
        request = schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert request.partition_key == expected_partition
    assert request.asset_selection in (None, [SCROBBLES]) or set(request.asset_selection) == {SCROBBLES}


def test_daily_ingestion_schedule_next_ticks_are_0100_utc_every_day(definitions):
    schedule = _schedule(definitions, "daily_ingestion_schedule")
    ticks = _next_ticks(schedule, datetime(2026, 11, 24, 1, 30, tzinfo=UTC))
    assert ticks == [datetime(2026, 11, d, 1, 0, tzinfo=UTC) for d in (25, 26, 27)]


def test_the_weekly_retrain_waits_for_sunday_0400_utc_and_fresh_training_data(definitions):
    """The retrain's one trigger, ``on_cron("0 4 * * 0")`` on the model, as the automation sensor
    evaluates it: not before the tick, not on the tick with stale training data, once fresh
    training data arrives after it, and only once."""
    assert "weekly_retrain_schedule" not in {s.name for s in definitions.schedules}
    model, training = dg.AssetKey(["ml", "lightfm_model"]), dg.AssetKey(["ml", "training_data"])
    assert definitions.resolve_asset_graph().get(model).parent_keys == {training}
    only_the_model = dg.AssetSelection.assets(model)
    instance = dg.DagsterInstance.ephemeral()
    for key in (training, model):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
    # the next Sunday 04:00 UTC tick
    tick = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0)
    tick += timedelta(days=(6 - tick.weekday()) % 7 or 7)

    def evaluate(at: datetime, cursor=None):
        return dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, asset_selection=only_the_model, evaluation_time=at, cursor=cursor
        )

    before = evaluate(tick - timedelta(hours=3))
    assert before.get_num_requested(model) == 0
    stale = evaluate(tick + timedelta(minutes=1), before.cursor)
    assert stale.get_num_requested(model) == 0  # the training data predates the tick
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=training))
    fresh = evaluate(tick + timedelta(hours=21), stale.cursor)
    assert fresh.get_num_requested(model) == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=model))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=training))
    again = evaluate(tick + timedelta(days=2), fresh.cursor)
    assert again.get_num_requested(model) == 0  # once a week, whatever the training data does


def _report_everything_materialised(instance: dg.DagsterInstance, graph) -> None:
    """Pretend the whole graph was built once (runless events), as after a first full run."""
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        partitions = node.partitions_def.get_partition_keys() if node.partitions_def else [None]
        for partition in partitions:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def _requested(result, graph) -> set[str]:
    return {key.to_user_string() for key in graph.get_all_asset_keys() if result.get_num_requested(key)}


def _run_ticks(defs, instance, graph, cursor, evaluation_time=None, max_ticks: int = 8):
    """Evaluate as the daemon does, tick after tick, recording each tick's requests as materialised
    (as the runs it launches would) before the next; stops when a tick requests nothing."""
    requested_by_tick: list[dict[str, set]] = []
    for tick in range(max_ticks):
        when = evaluation_time + timedelta(seconds=30 * tick) if evaluation_time else None
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=when)
        cursor = result.cursor
        requested = {
            key: result.get_requested_partitions(key)
            for key in graph.get_all_asset_keys()
            if result.get_num_requested(key)
        }
        if not requested:
            return requested_by_tick, cursor
        requested_by_tick.append({key.to_user_string(): partitions for key, partitions in requested.items()})
        for key, partitions in requested.items():
            for partition in partitions:
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
    pytest.fail(f"automation did not settle after {max_ticks} ticks: {requested_by_tick}")


REALTIME_MARTS = {
    "marts/fct_listens", "marts/user_track_interactions", "marts/recent_listens", "audit/listen_ledger",
    "audit/listens_set_aside",
}  # fmt: skip


@pytest.mark.slow
def test_declarative_automation_follows_the_open_day_and_settles_the_rest_daily(clean_env, monkeypatch, definitions):
    """Issue 19: a load of today's scrobbles (the near-real-time sensor) rebuilds today's partition
    of the day-partitioned marts within a tick or two, and nothing else: dimensions, the training
    data and the recommendations wait for the daily settle after the 01:00 final load, and the
    model keeps its weekly cadence."""
    monkeypatch.setenv("MUSIC_PLATFORM_SYNTHETIC_USERS", "60")
    defs = load_defs()  # resources point at this test's data dir
    graph = defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    _report_everything_materialised(instance, graph)

    # The daemon's first tick after a full build: nothing to do (everything is up to date).
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    rebuilt_now = _requested(first, graph)
    assert not {k for k in rebuilt_now if k.startswith(("marts/", "ml/"))}, rebuilt_now

    # New scrobbles of today land (the sensor's incremental load of the open day).
    today = graph.get(SCROBBLES).partitions_def.get_last_partition_key()
    assert today == datetime.now(UTC).date().isoformat()  # the open day is a partition
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[SCROBBLES], partition_key=today)
    assert result.success

    requested_by_tick, cursor = _run_ticks(defs, instance, graph, first.cursor)
    rebuilt = {key: parts for tick in requested_by_tick for key, parts in tick.items()}
    # today's partition of every day-partitioned model, in the first tick (one run), and only that day
    assert REALTIME_MARTS <= set(requested_by_tick[0]), requested_by_tick[0]
    assert set(rebuilt) == REALTIME_MARTS, rebuilt
    assert all(parts == {today} for parts in rebuilt.values()), rebuilt
    # the raw roots are loaded by schedules and sensors, never by automation
    assert not {k.to_user_string() for k in RAW_ROOTS_WITHOUT_CONDITION} & set(rebuilt)

    # The next day at 01:31 UTC (after the 01:00 final load): the rest follows once.
    tomorrow_0131 = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
    settled_by_tick, _ = _run_ticks(defs, instance, graph, cursor, tomorrow_0131 + timedelta(hours=1, minutes=31))
    settled = {key for tick in settled_by_tick for key in tick}
    assert {"staging/stg_lastfm__scrobbles", "marts/dim_users", "marts/dim_tracks", "marts/dim_artists",
            "marts/genre_summary", "ml/training_data", "ml/user_recommendations"} <= settled, settled  # fmt: skip
    assert "ml/lightfm_model" not in settled  # retraining keeps its weekly cadence
    counts = {key: sum(key in tick for tick in settled_by_tick) for key in settled}
    assert max(counts.values()) <= 2, counts
    print("automation ticks:", [sorted(t) for t in requested_by_tick], [sorted(t) for t in settled_by_tick])
