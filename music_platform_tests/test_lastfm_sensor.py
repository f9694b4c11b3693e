"""The near-real-time Last.fm sensor against the fake server (``dg.build_sensor_context``).

New scrobbles become run requests for exactly the daily partitions they fall on, the cursor
advances, a restart from the stored cursor requests nothing twice, each tick costs one request
per user, and the sensor yields to a running Last.fm step (pool ``lastfm_api``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from music_platform.config import Settings
from music_platform.defs.ingestion import lastfm_sensor as sensor_module
from music_platform.defs.ingestion.lastfm_sensor import (
    LASTFM_API_POOL,
    recent_scrobbles_sensor,
)
from music_platform.resources import LastfmResource
from music_platform.sources.http import NO_RETRY, RateLimiter
from music_platform.sources.lastfm.client import LastfmClient
from music_platform.sources.lastfm.recent import (
    dump_cursor,
    load_cursor,
    poll_recent_scrobbles,
)
from music_platform_tests.fakes.lastfm_server import FakeLastfmServer, Fault

DAY_S = 86_400
END = int(datetime(2025, 3, 8, tzinfo=UTC).timestamp())  # the fake's histories end 2025-03-08 00:00 UTC
KEY = "SeNsOrKeY0123456789abcdef0123456"
# The sensor as the code location builds it for a real Last.fm source, partitions from 2025-01-01.
lastfm_recent_scrobbles_sensor = recent_scrobbles_sensor(
    Settings.from_env({"LASTFM_API_KEY": KEY, "MUSIC_PLATFORM_PARTITIONS_START": "2025-01-01"})
)


@pytest.fixture
def server():
    with FakeLastfmServer(users=3, days=3, seed=9, end_uts=END, api_key=KEY) as fake:
        yield fake


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _resource(server: FakeLastfmServer, users: list[str]) -> LastfmResource:
    return LastfmResource(use_synthetic=False, api_key=KEY, api_root=server.url, users=users)


def _tick(monkeypatch, instance, server, users, now: int, cursor: str | None = None):
    monkeypatch.setattr(sensor_module, "clock", lambda: now)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lastfm": _resource(server, users)})
    return lastfm_recent_scrobbles_sensor(context)


def _partitions(result) -> list[str]:
    return [r.partition_key for r in (result.run_requests or [])]


def _slice(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["raw__lastfm_scrobbles"]["config"]["users"]


def _newest(server: FakeLastfmServer, user: str, before: int) -> int:
    return max(uts for uts, _track in server.world.scrobbles(user, None, before))


def test_new_scrobbles_request_their_partitions_and_the_cursor_resumes(monkeypatch, instance, server):
    users = server.user_names
    now = END + 600  # 2025-03-08 00:10 UTC: the last partition is 2025-03-07

    first = _tick(monkeypatch, instance, server, users, now)
    # First sight of each user: the last 24 h, i.e. 2025-03-07 00:10 .. now; all on 2025-03-07.
    assert _partitions(first) == ["2025-03-07"]
    assert first.run_requests[0].tags["music_platform/api"] == "lastfm"
    cursor = load_cursor(first.cursor)
    assert cursor == {user: _newest(server, user, now) for user in users}
    assert len(server.requests_for("user.getRecentTracks")) == len(users)  # one request per user

    # Nothing new: no run, the cursor stays.
    second = _tick(monkeypatch, instance, server, users, now + 300, first.cursor)
    assert _partitions(second) == [] and load_cursor(second.cursor) == cursor
    assert len(server.requests_for("user.getRecentTracks")) == 2 * len(users)

    # A listen finished just before midnight reaches Last.fm late (newer than the cursor, same day),
    # and one listen today: 2025-03-08 is a partition while it runs (end_offset=1), loaded at once.
    late = max(cursor[users[0]] + 5, END - 30)
    server.world.insert(users[0], late)
    server.world.insert(users[1], END + 400)
    third = _tick(monkeypatch, instance, server, users, now + 600, second.cursor)
    assert _partitions(third) == ["2025-03-07", "2025-03-08"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    # Each run reloads just the users who scrobbled that day (the incremental slice).
    assert [_slice(r) for r in third.run_requests] == [[users[0]], [users[1]]]
    assert sorted(_slice(first.run_requests[0])) == sorted(users)
    advanced = load_cursor(third.cursor)
    assert advanced[users[0]] == late and advanced[users[1]] == END + 400 and advanced[users[2]] == cursor[users[2]]

    # The daemon restarts and evaluates again from the stored cursor: nothing is requested twice.
    restarted = _tick(monkeypatch, instance, server, users, now + 900, third.cursor)
    assert _partitions(restarted) == [] and load_cursor(restarted.cursor) == advanced
    # Re-evaluating the same tick from the previous cursor gives the same run key (Dagster dedups it).
    again = _tick(monkeypatch, instance, server, users, now + 600, second.cursor)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in third.run_requests]


def test_late_scrobbles_of_several_days_request_each_day(monkeypatch, instance, server):
    users = server.user_names[:1]
    now = END + 3 * 3600
    # The daemon was down since 2025-03-05 00:00: the one request covers three days of listens.
    resumed = json.dumps({users[0]: END - 3 * DAY_S})
    result = _tick(monkeypatch, instance, server, users, now, resumed)
    assert _partitions(result) == ["2025-03-05", "2025-03-06", "2025-03-07"]
    assert len(server.requests) == 1
    assert load_cursor(result.cursor) == {users[0]: _newest(server, users[0], now)}


def test_unknown_user_is_skipped_and_the_others_are_read(monkeypatch, instance, server):
    users = [*server.user_names[:2], "no_such_listener"]
    result = _tick(monkeypatch, instance, server, users, END + 600)
    assert _partitions(result) == ["2025-03-07"]
    assert set(load_cursor(result.cursor)) == set(users[:2])  # the unknown user has no cursor


def test_a_transient_failure_leaves_that_users_cursor_for_the_next_tick(monkeypatch, instance, server):
    users = server.user_names
    first = _tick(monkeypatch, instance, server, users, END + 600)
    server.world.insert(users[2], END - 20)
    server.add_fault(Fault("error", code=8, method="user.getrecenttracks", user=users[2], times=10))
    failed = _tick(monkeypatch, instance, server, users, END + 900, first.cursor)
    assert _partitions(failed) == [] and load_cursor(failed.cursor) == load_cursor(first.cursor)
    server.clear()
    recovered = _tick(monkeypatch, instance, server, users, END + 1200, failed.cursor)
    assert _partitions(recovered) == ["2025-03-07"] and load_cursor(recovered.cursor)[users[2]] == END - 20


def _started_run(instance, assets, job_name="__ASSET_JOB", tags=None):
    import uuid

    return instance.add_run(
        dg.DagsterRun(
            job_name=job_name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset(assets) if assets is not None else None, tags=tags or {},
        )
    )


def test_the_sensor_yields_while_a_lastfm_step_runs(monkeypatch, instance, server):
    run = _started_run(instance, [dg.AssetKey(["raw", "lastfm_scrobbles"])])
    result = _tick(monkeypatch, instance, server, server.user_names, END + 600)
    assert isinstance(result, dg.SkipReason) and LASTFM_API_POOL in result.skip_message
    assert server.requests == []
    instance.report_run_canceled(run)
    # The sensor's own run: an anonymous job without a recorded asset selection, but its tag.
    own = _started_run(instance, None, "__anonymous_asset_job_x", tags={"music_platform/api": "lastfm"})
    result = _tick(monkeypatch, instance, server, server.user_names, END + 600)
    assert isinstance(result, dg.SkipReason) and server.requests == []
    instance.report_run_canceled(own)
    # A run restating the day-partitioned marts: the raw day must not change under its ledger.
    restating = _started_run(instance, [dg.AssetKey(["marts", "fct_listens"])])
    result = _tick(monkeypatch, instance, server, server.user_names, END + 600)
    assert isinstance(result, dg.SkipReason) and "restating" in result.skip_message
    assert server.requests == []
    # A run of other assets (the model) does not hold the Last.fm rate.
    instance.report_run_canceled(restating)
    _started_run(instance, [dg.AssetKey(["ml", "lightfm_model"])])
    result = _tick(monkeypatch, instance, server, server.user_names, END + 600)
    assert _partitions(result) == ["2025-03-07"]


def test_a_lastfm_step_starting_mid_tick_stops_the_poll(server):
    client = LastfmClient(api_key=KEY, api_root=server.url, retry=NO_RETRY, rate_limiter=RateLimiter(1000))
    users = server.user_names
    asked = []

    def stop_when():
        asked.append(len(server.requests))
        return "a Last.fm step started" if len(asked) > 1 else None

    result = poll_recent_scrobbles(client, users, {}, END + 600, stop_when=stop_when)
    assert result.requests == 1 and len(server.requests) == 1  # the sensor asked no more once it started
    assert result.not_asked == users[1:] and result.stopped_because == "a Last.fm step started"


def test_the_sensor_is_stopped_by_default_on_synthetic_data():
    synthetic = recent_scrobbles_sensor(Settings.from_env({}))
    assert synthetic.default_status == dg.DefaultSensorStatus.STOPPED
    assert lastfm_recent_scrobbles_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert lastfm_recent_scrobbles_sensor.minimum_interval_seconds == sensor_module.POLL_INTERVAL_S == 60


# -- the polling logic alone ---------------------------------------------------------------------------------


def test_one_request_per_user_even_when_there_are_more_pages(server):
    client = LastfmClient(KEY, server.url, rate_limiter=RateLimiter(500))
    user = server.user_names[0]
    now = END
    result = poll_recent_scrobbles(client, [user], {user: now - 3 * DAY_S - 1}, now, limit=5)
    (poll,) = result.polls
    assert poll.more_pages and result.requests == 1
    assert poll.days == [date(2025, 3, 5), date(2025, 3, 6), date(2025, 3, 7)]
    assert result.cursor[user] == _newest(server, user, now)


def test_a_rate_limit_answer_stops_the_poll(server):
    client = LastfmClient(KEY, server.url, rate_limiter=RateLimiter(500), retry=NO_RETRY)
    server.add_fault(Fault("error", code=29, method="user.getrecenttracks", times=10))
    users = server.user_names
    result = poll_recent_scrobbles(client, users, {}, END, monotonic=iter(range(100)).__next__)
    assert list(result.failed) == users[:1] and result.not_asked == users[1:]
    assert "rate limit" in (result.stopped_because or "")


def test_the_time_budget_stops_the_poll(server):
    client = LastfmClient(KEY, server.url, rate_limiter=RateLimiter(500))
    ticks = iter([0.0, 0.0, 1.0, 50.0, 60.0])
    result = poll_recent_scrobbles(client, server.user_names, {}, END, time_budget_s=40, monotonic=ticks.__next__)
    assert [p.user for p in result.polls] == server.user_names[:2]
    assert result.not_asked == server.user_names[2:]


def test_users_rotate_when_there_are_more_than_the_budget():
    users = [f"u{i}" for i in range(7)]
    assert users_for_this_tick(users, 10, tick=3) == users
    seen = [u for tick in range(3) for u in users_for_this_tick(users, 3, tick)]
    assert set(seen) == set(users)
    assert len(users_for_this_tick([f"u{i}" for i in range(500)], MAX_REQUESTS_PER_TICK, 1)) == MAX_REQUESTS_PER_TICK


def test_cursor_round_trip_and_a_corrupt_cursor_is_an_error():
    assert load_cursor(dump_cursor({"b": 2, "a": 1})) == {"a": 1, "b": 2}
    assert load_cursor(None) == {}
    with pytest.raises(ValueError, match="reset it"):
        load_cursor("{not json")
    with pytest.raises(ValueError, match="reset it"):
        load_cursor('{"a": "yesterday"}')
