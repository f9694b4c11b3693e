"""The near-real-time Last.fm sensor: loads the day's new scrobbles within minutes.

Every ``POLL_INTERVAL_S`` it asks tracked users (one ``user.getRecentTracks`` request per user,
newest first, since that user's newest handled scrobble) and requests one run of
``raw/lastfm_scrobbles`` per affected day, today included (``daily_partitions`` has
``end_offset=1``: the open day is a partition). The logic is ``music_platform.sources.lastfm.recent``
(free of Dagster); this module adds the cursor, the run requests and the rate budget.

- Who is asked (``plan_tick``): a tick has a request budget, what the sensor's pace (at most
  ``SENSOR_REQUESTS_PER_SECOND``, 5, reaching Last.fm in any second: ~4.7/s) allows in
  ``TICK_TIME_BUDGET_S`` (188 requests), every ``POLL_INTERVAL_S`` (42 s). First the rotation's
  share: enough of the next users in ``LASTFM_USERS`` order to ask everyone within
  ``MAX_POLL_INTERVAL_S`` (500 s; a rotation behind catches up with what its steady pace leaves,
  less 15 % kept for recent listeners); then the users who scrobbled recently, by priority
  (listening comes in sessions): still playing (within 10 min) every tick, paused (within 30 min)
  and within 2 h every 5 min; what is left moves the rotation on.
- Landed, not fetched twice: when a user's answer (one page of 50) holds all their new scrobbles,
  the tick lands it on disk (``sources.lastfm.landed``: one file per day and tick under
  ``<data_dir>/landing/lastfm_scrobbles/<day>/``, durable before it is visible) and the run
  (``ScrobblesLoadConfig.landed_until``) adds those scrobbles to the day without asking Last.fm;
  only users with more new scrobbles than the page are fetched again, their whole day
  (``ScrobblesLoadConfig.users``), keeping the other users' stored rows. The day is replaced in one
  transaction (the day-replace); a landed scrobble already stored is not added again, so a re-run,
  a re-evaluated tick or a lost run request duplicates and loses nothing; the 01:00 schedule's full
  load of the previous day settles it (and deletes the files it covers).
- Cursor (``PollState``, compact JSON stored by Dagster with each tick, so a daemon restart
  resumes where it stopped): the rotation's position, and per user who scrobbled in the last 2 h
  the newest scrobble handled and when they were asked; loads held back (below).
- Duplicates: a user's window starts after their newest handled scrobble, and each run request's
  ``run_key`` is ``lastfm_scrobbles:<day>:<newest scrobble time seen for that day>:<users>``, so
  re-evaluating a tick (same cursor, same answers) requests nothing Dagster has not launched.
- Rate: the sensor runs in the code-server process the daemon calls, the steps in run
  processes; each process has its own 5 req/s token bucket. Steps calling Last.fm share the
  ``lastfm_api`` pool (one at a time), and the sensor (a) waits up to ``WAIT_FOR_RUN_S`` at the
  start of its tick while a run of a Last.fm asset is running (``ASKING``: its process is up; a
  run still loading its code cannot ask yet; a run tagged ``LANDED`` loads only what the sensor
  landed and never asks, so it does not count), and skips the tick if it still is, (b) checks that
  again before every request and stops the tick as soon as one starts, so the sensor and a step
  never ask at the same time, (c) asks sequentially, at most its
  budget, and (d) stops its tick at the first "rate limit exceeded".
- While a run restates the day-partitioned marts (the listen ledger compares raw and marts within
  one dbt build: the raw day must not change under it) the sensor still polls and requests its
  loads; the load's step waits for that run to end before it writes (``wait_for_restatement``),
  so its run start-up overlaps the build. (It used to hold them in the cursor until the next tick
  after the build: up to a tick later.) Loads held by a cursor of that time are requested at the
  next tick.
  See docs/data-source/stream-source-validation.md ("Near-real-time sensor and the rate limit").
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import dagster as dg

from music_platform.config import Settings, definitions_settings
from music_platform.defs.ingestion.lastfm import LASTFM_API_POOL
from music_platform.partitions import daily_partitions
from music_platform.resources import ArtifactStoreResource, LastfmResource
from music_platform.sources.http import AnsweredWindowLimiter, RetryPolicy, Timeouts
from music_platform.sources.lastfm.landed import landing_dir, write_landed
from music_platform.sources.lastfm.recent import (
    MAX_POLL_INTERVAL_S,
    PendingLoad,
    advance_state,
    dump_state,
    load_state,
    merge_pending,
    plan_tick,
    poll_recent_scrobbles,
)

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
SENSOR_NAME = "lastfm_recent_scrobbles_sensor"
#: A listen should count within minutes (issue 19: p95 <= 10 min to marts.fct_listens).
#: A tick asks for up to 40 s; ticks ran ~3 s past their 45-s interval (~48 s apart), so at 42 s
#: a tick starts again right after the previous one ends (~45 s apart): the sensor asks ~89 % of
#: the time instead of ~83 %.
POLL_INTERVAL_S = 42
#: Stop asking after this long; the daemon gives a sensor evaluation 60 s (its gRPC timeout).
TICK_TIME_BUDGET_S = 40.0
#: A tick that finds a Last.fm run starting or running waits this long (within its time budget)
#: for it to end before it gives the tick up: a sensor run takes ~10-30 s, a skipped tick 60.
WAIT_FOR_RUN_S = 15.0
#: Scrobbles per poll request: a poll needs the newest ones and the total, not a full page.
SENSOR_PAGE_LIMIT = 50
#: Most of the sensor's requests that may reach Last.fm in any one second (its terms: 5/s). The
#: sensor's limiter (``AnsweredWindowLimiter``) starts a request only when fewer than that many
#: are unanswered or were answered within the last second (+10 ms), so no send-to-arrival delay
#: can put more in one second at Last.fm's end (a request arrives after it is sent and before it
#: is answered). Before, a token bucket spaced starts 270 ms apart (4/s), because at 220 ms six
#: requests once arrived within 0.99 s at the fake server on the loaded machine.
SENSOR_REQUESTS_PER_SECOND = 5
#: Starts at least this far apart: the window's requests spread over it rather than in a burst.
SENSOR_MIN_INTERVAL_S = 0.2
#: The sensor's expected pace, for its budget: 5 requests per 1.01-s window plus their answers
#: (~10-50 ms at the fake server): ~4.7/s, 188 requests in 40 s. A slower answer only ends the
#: tick's poll at its time budget; the users not asked keep their place.
SENSOR_EXPECTED_ANSWER_S = 0.05
#: The sensor retries little: a user whose request fails is asked again at the next tick.
SENSOR_RETRY = RetryPolicy(
    max_attempts=2, deadline_s=10.0, initial_backoff_s=1.0, max_backoff_s=2.0, jitter_s=0.5,
    rate_limited_backoff_s=5.0, retry_after_cap_s=5.0,
)  # fmt: skip
SENSOR_TIMEOUTS = Timeouts(connect_s=5.0, read_s=10.0)

# Tests move the sensor's clocks.
clock = time.time
monotonic = time.monotonic
sleep = time.sleep


def request_budget(seconds: float, requests_per_second: float) -> int:
    """Requests a tick plans for ``seconds`` of asking at ``requests_per_second``."""
    if seconds <= 0 or requests_per_second <= 0:
        return 0
    return int(seconds * requests_per_second)


def _default_status(settings: Settings) -> dg.DefaultSensorStatus:
    # Polling an API every 5 minutes is only worth it (and only allowed to start by itself) when a
    # real Last.fm source is configured; on synthetic data it is switched on by hand if wanted.
    synthetic = settings.uses_synthetic_source
    return dg.DefaultSensorStatus.STOPPED if synthetic else dg.DefaultSensorStatus.RUNNING


# Every asset whose step calls Last.fm (pool ``lastfm_api``) and the jobs made of them.
LASTFM_ASSETS = frozenset(
    dg.AssetKey(["raw", name])
    for name in ("lastfm_scrobbles", "lastfm_users", "lastfm_tag_top_tracks", "lastfm_chart_top_tracks",
                 "lastfm_artist_tags")
)  # fmt: skip
LASTFM_JOBS = frozenset({"daily_ingestion_job", "__anonymous_asset_job_lastfm_recent_scrobbles_sensor"})
API_TAG = "music_platform/api"
#: The tag value of a run that loads only scrobbles the sensor landed (it never calls Last.fm).
LANDED = "none (landed by the sensor)"
_ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
#: The runs that the sensor yields to: their process is up and may call Last.fm at any moment. A
#: STARTING run is still loading the code location (30-80 s measured on the shared 2-core machine,
#: when the sensor used to yield to it); its step's first request comes well after it turns
#: STARTED (1.7 s from run start to step start, measured), and the sensor looks before each of its
#: requests, at least 200 ms apart, so it stops first.
ASKING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def lastfm_run_active(instance: dg.DagsterInstance, statuses: list[dg.DagsterRunStatus] | None = None) -> str | None:
    """The id of a starting or running run (``statuses``) that may call Last.fm (it then has the
    rate to itself), else None. Public run storage only: a run whose assets include a Last.fm
    asset, a Last.fm job, or a run of unknown assets (a whole-graph run) counts."""
    wanted = _ACTIVE if statuses is None else statuses
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=wanted), limit=50):
        if run.tags.get(API_TAG) == LANDED:
            continue  # it loads what the sensor landed: no request to Last.fm
        selection = run.asset_selection
        # The sensor's own runs (an anonymous job of its target, no asset selection recorded)
        # carry the tag: seen in the benchmark, missing them let a tick and a load ask at once.
        if run.tags.get(API_TAG) == "lastfm" or run.job_name in LASTFM_JOBS:
            return run.run_id
        if selection is not None and selection & LASTFM_ASSETS:
            return run.run_id
        if selection is None and run.job_name == "__ASSET_JOB":
            return run.run_id
    return None


def lastfm_pool_busy(instance: dg.DagsterInstance) -> bool:
    """Whether a step of the ``lastfm_api`` pool may be calling Last.fm."""
    return lastfm_run_active(instance) is not None


def sensor_window(lastfm: LastfmResource) -> int:
    """Most requests of the sensor in any second (never above the resource's rate, nor 5)."""
    return max(1, int(min(lastfm.requests_per_second, SENSOR_REQUESTS_PER_SECOND)))


def sensor_rate(lastfm: LastfmResource) -> float:
    """Requests per second the sensor expects to ask at: its window's requests, one window plus
    one answer apart (``AnsweredWindowLimiter``)."""
    return sensor_window(lastfm) / (1.0 + SENSOR_LIMITER_MARGIN_S + SENSOR_EXPECTED_ANSWER_S)


#: Added to the limiter's one-second window (clock granularity).
SENSOR_LIMITER_MARGIN_S = 0.01


@cache
def sensor_limiter(api_root: str, per_second: int) -> AnsweredWindowLimiter:
    """The sensor's limiter, one per process and API root: ticks follow each other closely (a
    tick's last answers and the next tick's first requests could share a second), so every tick's
    client takes its starts from the same one."""
    return AnsweredWindowLimiter(per_second, 1.0, min_interval_s=SENSOR_MIN_INTERVAL_S,
                                 margin_s=SENSOR_LIMITER_MARGIN_S)  # fmt: skip


def sensor_client(lastfm: LastfmResource):
    """The client the sensor asks with: at most ``sensor_window`` requests reaching Last.fm in
    any second, short retries."""
    if lastfm.use_synthetic:
        return lastfm.get_client()
    if not lastfm.api_key:
        raise dg.Failure("the Last.fm sensor needs LASTFM_API_KEY (or MUSIC_PLATFORM_SOURCE=synthetic)")
    from music_platform.sources.lastfm.client import LastfmClient  # noqa: PLC0415 - only for a real source

    return LastfmClient(
        api_key=lastfm.api_key,
        api_root=lastfm.api_root,
        rate_limiter=sensor_limiter(lastfm.api_root, sensor_window(lastfm)),
        retry=SENSOR_RETRY,
        timeouts=SENSOR_TIMEOUTS,
    )


def existing_partition(day: date, now: int, partitions: dg.PartitionsDefinition) -> bool:
    """Whether ``day`` is a partition of ``raw/lastfm_scrobbles`` at ``now`` (today's is, a
    scrobble dated after today is not)."""
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(now, tz=UTC)):
        return partitions.has_partition_key(day.isoformat())


SCROBBLES_OP = "raw__lastfm_scrobbles"


def run_requests_for(
    loads: Mapping[str, PendingLoad], now: int, partitions: dg.PartitionsDefinition
) -> tuple[list[dg.RunRequest], list[str]]:
    """One run per day with new scrobbles (``loads``: day -> (newest scrobble seen, users,
    users to fetch again, newest landed file)) that is a partition: it loads the scrobbles landed
    for it and fetches the day of the users whose new scrobbles the poll did not hold whole (a run
    with none of those never calls Last.fm, and says so in its tags); the days that are no
    partition (dated in the future, before the start)."""
    requests, deferred = [], []
    for day_key, (marker, users, refetch, landed_until) in sorted(loads.items()):
        day = date.fromisoformat(day_key)
        if not existing_partition(day, now, partitions):
            deferred.append(day_key)
            continue
        digest = zlib.crc32(",".join(sorted(users)).encode("utf-8"))
        config: dict = {"users": sorted(refetch)}
        if landed_until:
            config["landed_until"] = landed_until
        requests.append(
            dg.RunRequest(
                run_key=f"lastfm_scrobbles:{day_key}:{marker}:{digest:08x}",
                partition_key=day_key,
                run_config={"ops": {SCROBBLES_OP: {"config": config}}},
                tags={
                    API_TAG: "lastfm" if refetch or not landed_until else LANDED,
                    "music_platform/trigger": SENSOR_NAME,
                },
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
        description=f"Every {POLL_INTERVAL_S} s asks tracked Last.fm users (one request each, as many as the "
        f"rate allows in {TICK_TIME_BUDGET_S:g} s: everyone within {MAX_POLL_INTERVAL_S // 60} min, recent "
        "listeners more often) for scrobbles since the cursor and loads the new listens of their days, today "
        "included, for just the users who scrobbled. Never asks while a Last.fm step runs (pool lastfm_api).",
    )
    def lastfm_recent_scrobbles_sensor(
        context: dg.SensorEvaluationContext, lastfm: LastfmResource, artifacts: ArtifactStoreResource
    ):
        return poll_tick(context, lastfm, partitions, landing_dir(artifacts.data_dir))

    return lastfm_recent_scrobbles_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[recent_scrobbles_sensor(definitions_settings())])


def wait_for_lastfm_runs(instance: dg.DagsterInstance, limit_s: float) -> tuple[float, str | None]:
    """Wait up to ``limit_s`` while a Last.fm run is starting or running: the seconds waited and
    the id of the run still going (None when the rate is free)."""
    started = monotonic()
    while True:
        run_id = lastfm_run_active(instance, ASKING)
        waited = monotonic() - started
        if run_id is None or waited >= limit_s:
            return waited, run_id
        sleep(min(1.0, limit_s - waited))


#: A run in these states has not read the landed files yet (its step reads them after its start).
_NOT_YET_READING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


def waiting_landed_loads(instance: dg.DagsterInstance) -> set[str]:
    """The days with a load of landed scrobbles requested by the sensor that has not started yet.
    Such a run takes every file of its day landed by the time it reads them, so a tick does not
    request another one for that day: under load, loads requested every tick queued up behind the
    marts builds (each waits for one before it writes) faster than they ran (issue 19 benchmark,
    load average 10). A tick whose load needs a fetch (users listed) still requests it."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=_NOT_YET_READING, tags={API_TAG: LANDED, "music_platform/trigger": SENSOR_NAME}),
        limit=50,
    )
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags}


def poll_tick(
    context: dg.SensorEvaluationContext,
    lastfm: LastfmResource,
    partitions: dg.PartitionsDefinition,
    landing: Path,
):
    """One tick of the sensor (``recent_scrobbles_sensor``)."""
    waited, busy = wait_for_lastfm_runs(context.instance, WAIT_FOR_RUN_S)
    if busy is not None:
        return dg.SkipReason(
            f"a step of pool {LASTFM_API_POOL!r} is calling Last.fm (run {busy}); this tick yields the rate limit "
            f"to it (waited {waited:.0f} s)"
        )

    def step_started() -> str | None:
        run_id = lastfm_run_active(context.instance, ASKING)
        return None if run_id is None else f"run {run_id} of a Last.fm asset started: it has the rate to itself"

    client = sensor_client(lastfm)
    try:
        users = lastfm.tracked_users(client)
        if not users:
            return dg.SkipReason("no tracked users (set LASTFM_USERS)")
        now = int(clock())
        state = load_state(context.cursor)
        ask_s = max(0.0, TICK_TIME_BUDGET_S - waited)
        budget = request_budget(ask_s, sensor_rate(lastfm))
        plan = plan_tick(users, state, now, budget, tick_interval_s=POLL_INTERVAL_S)
        starts = {user: state.window_start(user, now) for user in plan.users if user not in state.seen}
        result = poll_recent_scrobbles(
            client, plan.users, state.seen, now, limit=SENSOR_PAGE_LIMIT, time_budget_s=ask_s,
            stop_when=step_started, starts=starts,
        )  # fmt: skip
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()
    new_state = advance_state(state, users, plan, result, now)

    for user, reason in result.skipped.items():
        context.log.warning(f"Last.fm user {user!r} skipped: {reason}")
    for user, reason in result.failed.items():
        context.log.warning(f"Last.fm user {user!r} not read this tick (asked again later): {reason}")
    if result.stopped_because:
        context.log.warning(f"poll stopped early: {result.stopped_because}; {len(result.not_asked)} user(s) wait")
    # Land what the poll holds whole before the cursor moves past it (a crash in between: the
    # next tick asks the same windows again, and the run adds a stored scrobble once).
    landed = {day: write_landed(landing, day, windows, written_at=now) for day, windows in
              sorted(result.landed_by_day.items())}  # fmt: skip
    loads = merge_pending(state.pending, result, landed)
    summary = (
        f"{result.requests} request(s) of a budget of {budget} ({len(plan.rotation_users)} in rotation, position "
        f"{new_state.rotation}/{len(users)}; {len(plan.priority_users)} recent listener(s)), "
        f"{sum(p.new_scrobbles for p in result.polls)} new scrobble(s)"
    )
    new_state.pending = {}
    requests, deferred = run_requests_for(loads, now, partitions)
    if deferred:
        context.log.warning(f"new scrobbles dated {', '.join(deferred)}: not a partition (clock skew?), not loaded")
    waiting = waiting_landed_loads(context.instance)
    covered = [r for r in requests if r.tags.get(API_TAG) == LANDED and r.partition_key in waiting]
    requests = [r for r in requests if r not in covered]
    summary += f", {len(requests)} partition run(s) requested"
    if covered:
        summary += (f" ({len(covered)} day(s) left to the load already waiting to start, which takes every file "
                    "landed by then)")  # fmt: skip
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests,
        cursor=dump_state(new_state),
        skip_reason=None if requests else f"no partition to reload ({summary})",
    )
