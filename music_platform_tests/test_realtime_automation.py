"""Real time (issue 19): which AutomationCondition each asset gets, and what they do.

The conditions are evaluated with ``evaluate_automation_conditions`` (what the daemon's
automation sensor runs) on a small graph shaped like the platform's: raw scrobbles by day ->
a day-partitioned mart -> an unpartitioned dimension. The real graph's assignment is checked on
the definitions (the slow cascade over the whole graph is in test_daemon_automation.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from music_platform.policies import REALTIME_ASSET_KEYS, REALTIME_PARTITIONS, absorbs_realtime

RAW = dg.AssetKey(["raw", "lastfm_scrobbles"])
FCT = dg.AssetKey(["marts", "fct_listens"])
DIM = dg.AssetKey(["marts", "dim_users"])
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-03-01", timezone="UTC", end_offset=1)
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dg.asset(key=RAW, partitions_def=PARTITIONS)
def raw():
    return None


@dg.asset(key=FCT, deps=[RAW], partitions_def=PARTITIONS, automation_condition=REALTIME_PARTITIONS)
def fct():
    return None


@dg.asset(key=DIM, deps=[FCT], automation_condition=absorbs_realtime())
def dim():
    return None


def _report(instance, key, partition=None):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def _requested(result) -> dict[str, set]:
    return {
        key.to_user_string(): set(result.get_requested_partitions(key))
        for key in (RAW, FCT, DIM)
        if result.get_num_requested(key)
    }


def test_the_open_day_cascades_at_once_and_the_dimension_waits_for_the_daily_settle():
    assets = [raw, fct, dim]
    instance = dg.DagsterInstance.ephemeral()
    with dg.partition_loading_context(effective_dt=NOON):
        days = PARTITIONS.get_partition_keys()
    assert days[-1] == "2026-03-10"  # today is a partition
    for day in days:
        _report(instance, RAW, day)
        _report(instance, FCT, day)
    _report(instance, DIM)
    first = dg.evaluate_automation_conditions(assets, instance, evaluation_time=NOON)
    assert _requested(first) == {}

    # The sensor loads today's new scrobbles: today's mart partition follows, the dimension does not.
    _report(instance, RAW, "2026-03-10")
    tick = dg.evaluate_automation_conditions(assets, instance, evaluation_time=NOON + timedelta(minutes=1),
                                             cursor=first.cursor)  # fmt: skip
    assert _requested(tick) == {"marts/fct_listens": {"2026-03-10"}}
    _report(instance, FCT, "2026-03-10")
    after = dg.evaluate_automation_conditions(assets, instance, evaluation_time=NOON + timedelta(minutes=2),
                                              cursor=tick.cursor)  # fmt: skip
    assert _requested(after) == {}

    # An old day reloaded (a backfill) is not rebuilt by automation: only today and yesterday are.
    _report(instance, RAW, "2026-03-05")
    _report(instance, RAW, "2026-03-09")  # yesterday's final load
    late = dg.evaluate_automation_conditions(assets, instance, evaluation_time=NOON + timedelta(minutes=3),
                                             cursor=after.cursor)  # fmt: skip
    assert _requested(late) == {"marts/fct_listens": {"2026-03-09"}}
    _report(instance, FCT, "2026-03-09")

    # The next day at 01:31 UTC: the dimension rebuilds once.
    settle_at = datetime(2026, 3, 11, 1, 31, tzinfo=UTC)
    settled = dg.evaluate_automation_conditions(assets, instance, evaluation_time=settle_at, cursor=late.cursor)
    assert "marts/dim_users" in _requested(settled)
    _report(instance, DIM)
    again = dg.evaluate_automation_conditions(assets, instance, evaluation_time=settle_at + timedelta(minutes=1),
                                              cursor=settled.cursor)  # fmt: skip
    assert "marts/dim_users" not in _requested(again)


@pytest.fixture(scope="module")
def graph():
    from music_platform.definitions import defs

    return defs().resolve_asset_graph()


def test_the_real_graph_assigns_the_real_time_conditions(graph):
    partitioned = {key for key in graph.get_all_asset_keys() if graph.get(key).partitions_def is not None}
    assert partitioned == set(REALTIME_ASSET_KEYS)
    for key in REALTIME_ASSET_KEYS[1:]:
        assert graph.get(key).automation_condition.get_label() == REALTIME_PARTITIONS.get_label()
    absorbing = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).automation_condition is not None
        and graph.get(key).automation_condition.get_label() == absorbs_realtime().get_label()
    }
    assert {"staging/stg_lastfm__scrobbles", "marts/dim_users", "marts/dim_tracks", "ml/training_data",
            "raw/lastfm_artist_tags"} <= absorbing  # fmt: skip
    assert (
        graph.get(dg.AssetKey(["ml", "lightfm_model"])).automation_condition.get_label()
        != absorbs_realtime().get_label()
    )
    # the day-partitioned marts read the raw day directly (no staging rebuild needed)
    assert RAW in graph.get(FCT).parent_keys
