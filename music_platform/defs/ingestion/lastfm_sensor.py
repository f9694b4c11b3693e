"""The near-real-time Last.fm sensor: reloads the daily scrobble partitions that got new listens.

Every ``POLL_INTERVAL_S`` it asks each tracked user (one ``user.getRecentTracks`` request per
user, newest first) for scrobbles since that user's cursor, and requests one run of
``raw/lastfm_scrobbles`` per affected day. The logic is ``music_platform.sources.lastfm.recent``
(free of Dagster); this module adds the cursor, the run requests and the rate budget.

- Cursor: JSON ``{"user": unix time of the newest scrobble handled}``, stored by Dagster with
  each tick, so a daemon restart resumes where it stopped.
- Duplicates: the cursor only moves forward, and each run request's ``run_key`` is
  ``lastfm_scrobbles:<day>:<newest scrobble time seen for that day>``, so re-evaluating a tick
  (same cursor, same answers) requests nothing Dagster has not already launched.
- Rate: the sensor runs in the code-server process the daemon calls, the steps in run
  processes; each process has its own 5 req/s token bucket. Steps calling Last.fm share the
  ``lastfm_api`` pool (one at a time), and the sensor (a) skips its tick while a step holds that
  pool, (b) asks at most ``MAX_REQUESTS_PER_TICK`` users per tick, sequentially, through the
  same process-wide bucket, and (c) stops its tick at the first "rate limit exceeded".
  See docs/data-source/stream-source-validation.md ("Near-real-time sensor and the rate limit").
- Scrobbles of a day whose partition does not exist yet (today, with daily partitions that
  end yesterday) advance the cursor without a run: the 01:00 daily schedule loads that day.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from functools import cache

import dagster as dg

from music_platform.config import Settings, definitions_settings
from music_platform.defs.ingestion.lastfm import LASTFM_API_POOL
from music_platform.partitions import daily_partitions
from music_platform.resources import LastfmResource
from music_platform.sources.http import RetryPolicy, Timeouts
from music_platform.sources.lastfm.recent import (
    PollResult,
    dump_cursor,
    load_cursor,
    poll_recent_scrobbles,
    users_for_this_tick,
)

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
SENSOR_NAME = "lastfm_recent_scrobbles_sensor"
POLL_INTERVAL_S = 300
#: Requests per tick at most (one per user; more users are asked in turn over several ticks).
#: With ticks >= 300 s apart this is <= 0.17 req/s on average, inside the 0.45 req/s the steps'
#: bucket (4.55 req/s) leaves under Last.fm's 5 req/s averaged over 5 minutes.
MAX_REQUESTS_PER_TICK = 50
#: Stop asking after this long; the daemon gives a sensor evaluation 60 s by default.
TICK_TIME_BUDGET_S = 40.0
#: The sensor retries little: a user whose request fails is asked again at the next tick.
SENSOR_RETRY = RetryPolicy(
    max_attempts=2, deadline_s=10.0, initial_backoff_s=1.0, max_backoff_s=2.0, jitter_s=0.5,
    rate_limited_backoff_s=5.0, retry_after_cap_s=5.0,
)  # fmt: skip
SENSOR_TIMEOUTS = Timeouts(connect_s=5.0, read_s=10.0)

# Tests move the sensor's clock.
clock = time.time


def _default_status(settings: Settings) -> dg.DefaultSensorStatus:
    # Polling an API every 5 minutes is only worth it (and only allowed to start by itself) when a
    # real Last.fm source is configured; on synthetic data it is switched on by hand if wanted.
    synthetic = settings.uses_synthetic_source
    return dg.DefaultSensorStatus.STOPPED if synthetic else dg.DefaultSensorStatus.RUNNING


def lastfm_pool_busy(instance: dg.DagsterInstance) -> bool:
    """Whether a step of the ``lastfm_api`` pool is running (it then has the rate to itself)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    return storage.get_concurrency_info(LASTFM_API_POOL).active_slot_count > 0


def sensor_client(lastfm: LastfmResource):
    """The client the sensor asks with: the process-wide 5 req/s bucket, short retries."""
    if lastfm.use_synthetic:
        return lastfm.get_client()
    if not lastfm.api_key:
        raise dg.Failure("the Last.fm sensor needs LASTFM_API_KEY (or MUSIC_PLATFORM_SOURCE=synthetic)")
    from music_platform.sources.lastfm.client import LastfmClient

    return LastfmClient(
        api_key=lastfm.api_key,
        api_root=lastfm.api_root,
        rate_limit_per_s=lastfm.requests_per_second,
        retry=SENSOR_RETRY,
        timeouts=SENSOR_TIMEOUTS,
    )


def existing_partition(day: date, now: int, partitions: dg.PartitionsDefinition) -> bool:
    """Whether ``day`` is a partition of ``raw/lastfm_scrobbles`` at ``now`` (today's is not, yet)."""
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(now, tz=UTC)):
        return partitions.has_partition_key(day.isoformat())


def run_requests_for(
    result: PollResult, now: int, partitions: dg.PartitionsDefinition
) -> tuple[list[dg.RunRequest], list[str]]:
    """One run per affected day that is a partition; the days left to the daily schedule."""
    requests, deferred = [], []
    for day, marker in sorted(result.affected_days.items()):
        if not existing_partition(day, now, partitions):
            deferred.append(day.isoformat())
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"lastfm_scrobbles:{day.isoformat()}:{marker}",
                partition_key=day.isoformat(),
                tags={"music_platform/api": "lastfm", "music_platform/trigger": SENSOR_NAME},
            )
        )
    return requests, deferred


def recent_scrobbles_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor for ``settings``: their daily partitions, running by itself on a real source only."""
    return _recent_scrobbles_sensor(daily_partitions(settings), _default_status(settings))


@cache
def _recent_scrobbles_sensor(
    partitions: dg.PartitionsDefinition, status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        target=dg.AssetSelection.assets(SCROBBLES),
        minimum_interval_seconds=POLL_INTERVAL_S,
        default_status=status,
        description="Every 5 minutes asks each tracked Last.fm user (one request each, at most "
        f"{MAX_REQUESTS_PER_TICK} per tick) for scrobbles since the cursor and reloads the daily partitions "
        "that got new listens. Skips its tick while a Last.fm step runs (pool lastfm_api).",
    )
    def lastfm_recent_scrobbles_sensor(context: dg.SensorEvaluationContext, lastfm: LastfmResource):
        return poll_tick(context, lastfm, partitions)

    return lastfm_recent_scrobbles_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[recent_scrobbles_sensor(definitions_settings())])


def poll_tick(context: dg.SensorEvaluationContext, lastfm: LastfmResource, partitions: dg.PartitionsDefinition):
    """One tick of the sensor (``recent_scrobbles_sensor``)."""
    if lastfm_pool_busy(context.instance):
        return dg.SkipReason(
            f"a step of pool {LASTFM_API_POOL!r} is calling Last.fm; this tick yields the rate limit to it"
        )
    client = sensor_client(lastfm)
    try:
        users = lastfm.tracked_users(client)
        if not users:
            return dg.SkipReason("no tracked users (set LASTFM_USERS)")
        now = int(clock())
        tracked = set(users)  # users dropped from LASTFM_USERS leave the cursor
        cursor = {user: uts for user, uts in load_cursor(context.cursor).items() if user in tracked}
        chosen = users_for_this_tick(users, MAX_REQUESTS_PER_TICK, now // POLL_INTERVAL_S)
        result = poll_recent_scrobbles(client, chosen, cursor, now, time_budget_s=TICK_TIME_BUDGET_S)
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()

    for user, reason in result.skipped.items():
        context.log.warning(f"Last.fm user {user!r} skipped: {reason}")
    for user, reason in result.failed.items():
        context.log.warning(f"Last.fm user {user!r} not read this tick (asked again next tick): {reason}")
    if result.stopped_because:
        context.log.warning(f"poll stopped early: {result.stopped_because}; {len(result.not_asked)} user(s) wait")
    requests, deferred = run_requests_for(result, now, partitions)
    if deferred:
        context.log.info(f"new scrobbles on {', '.join(deferred)}: no partition yet, the daily schedule loads them")
    summary = (
        f"{result.requests} request(s), {sum(p.new_scrobbles for p in result.polls)} new scrobble(s), "
        f"{len(requests)} partition run(s) requested"
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests,
        cursor=dump_cursor(result.cursor),
        skip_reason=None if requests else f"no partition to reload ({summary})",
    )
