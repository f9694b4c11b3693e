"""Real time (issue 19): the open day is loaded incrementally while listeners keep scrobbling.

The fake Last.fm server's listeners scrobble between polls; each poll of the sensor requests runs
that reload a slice of users (``ScrobblesLoadConfig.users``) through the day-replace, and the
day's final full load settles it. After every load the open day holds exactly the scrobbles the
API had when the sensor polled (none duplicated, none lost), and the final load matches the
whole day. The open-day check passes a partial day and fails a stalled feed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.defs.ingestion import lastfm_sensor as sensor_module
from music_platform.defs.ingestion.lastfm import scrobbles_asset
from music_platform.defs.ingestion.lastfm_sensor import recent_scrobbles_sensor
from music_platform.defs.quality import open_day as open_day_module
from music_platform.defs.quality.open_day import open_day_feed
from music_platform.quality.open_day import CLOSED, JUST_STARTED, NOT_LIVE, OPEN, STALLED, judge_open_day
from music_platform.resources import ArtifactStoreResource, WarehouseResource
from music_platform.sources.lastfm.landed import landed_files, landing_dir
from music_platform.sources.lastfm.recent import merge_user_slice, select_slice_users
from music_platform_tests.fakes.lastfm_server import ARTISTS_IN_EVERY_SCRIPT, TRACKS_IN_EVERY_SCRIPT, FakeLastfmServer
from music_platform_tests.test_lastfm_pipeline import QuickLastfmResource

# The asset and the sensor as the code location builds them for a real Last.fm source.
SETTINGS = Settings.from_env({"LASTFM_API_KEY": "x" * 32, "MUSIC_PLATFORM_PARTITIONS_START": "2025-01-01"})
lastfm_scrobbles = scrobbles_asset(SETTINGS)
lastfm_recent_scrobbles_sensor = recent_scrobbles_sensor(SETTINGS)

KEY = "ReAlTiMeKeY0123456789abcdef01234"
# The fake's histories end 2025-03-08 00:00 UTC; 2025-03-08 plays "today", the open day.
TODAY = date(2025, 3, 8)
MIDNIGHT = int(datetime(2025, 3, 8, tzinfo=UTC).timestamp())
COLUMNS = "user_name, played_at_uts, artist_name, track_name"


@pytest.fixture
def server():
    with FakeLastfmServer(
        users=5, days=2, seed=19, end_uts=MIDNIGHT, api_key=KEY,
        artist_names=ARTISTS_IN_EVERY_SCRIPT, track_names=TRACKS_IN_EVERY_SCRIPT,
    ) as fake:  # fmt: skip
        yield fake


def _resources(tmp_path: Path, server: FakeLastfmServer) -> dict:
    return {
        "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb")),
        "lastfm": QuickLastfmResource(use_synthetic=False, api_key=KEY, api_root=server.url, users=server.user_names),
        "artifacts": ArtifactStoreResource(data_dir=str(tmp_path / "data")),
    }


def _poll(monkeypatch, instance, resources, now: int, cursor: str | None):
    monkeypatch.setattr(sensor_module, "clock", lambda: now)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lastfm": resources["lastfm"], "artifacts": resources["artifacts"]}
    )
    return lastfm_recent_scrobbles_sensor(context)


def _run(resources, partition: str, run_config: dict | None = None):
    result = dg.materialize(
        [lastfm_scrobbles], resources=resources, partition_key=partition, run_config=run_config or {},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )  # fmt: skip
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["scrobbles_accounted_for"] and checks["key_unique"], checks
    return result


def _loaded(tmp_path: Path, day: date) -> Counter:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(f"select {COLUMNS} from raw.lastfm_scrobbles where scrobble_date = date '{day}'").fetchall()
    return Counter(tuple(r) for r in rows)


def _expected(server: FakeLastfmServer, day: date, before: int) -> Counter:
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())
    end = min(before, start + 86400)
    return Counter(k for u in server.user_names for k in server.world.expected_keys(u, start, end))


def test_the_open_day_is_loaded_incrementally_and_the_final_load_settles_it(monkeypatch, tmp_path, server):
    resources = _resources(tmp_path, server)
    users = server.user_names
    cursor = None
    with dg.instance_for_test() as instance:
        now = MIDNIGHT + 120
        for step in range(6):
            # Listeners keep scrobbling: a few of them each minute, some at the same second.
            for i, user in enumerate(users[: 1 + step % len(users)]):
                server.world.insert(user, now - 50 + i)
            if step == 2:
                server.world.insert(users[0], now - 50)  # the same second as another user's listen
            result = _poll(monkeypatch, instance, resources, now, cursor)
            cursor = result.cursor
            today = [r for r in result.run_requests if r.partition_key == TODAY.isoformat()]
            assert today, f"poll {step}: no run for the open day"
            for request in result.run_requests:
                slice_users = request.run_config["ops"]["raw__lastfm_scrobbles"]["config"]["users"]
                if request.partition_key == TODAY.isoformat():
                    assert set(slice_users) <= set(users[: 1 + step % len(users)])
                _run(resources, request.partition_key, request.run_config)
            loaded = _loaded(tmp_path, TODAY)
            assert max(loaded.values()) == 1  # no scrobble twice
            assert loaded == _expected(server, TODAY, now), f"poll {step}: the open day differs from the API"
            now += 60

    # More listens arrive after the last poll; the day's final (full) load settles it.
    server.world.insert(users[-1], now + 5)
    _run(resources, TODAY.isoformat())
    assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, MIDNIGHT + 86400)


def test_a_rotation_over_ticks_and_lost_run_requests_lose_and_duplicate_nothing(monkeypatch, tmp_path, server):
    """More listeners than a tick's budget (the rotation spreads them over ticks, recent listeners
    first) and the run requests of two ticks lost: after every load the open day holds each
    scrobble the API had before the last poll of its listener at most once (the next run loads
    the lost runs' landed files), and the final load matches the whole day."""
    monkeypatch.setattr(sensor_module, "request_budget", lambda _seconds, _rate: 2)  # 2 a tick, 5 listeners
    monkeypatch.setattr(sensor_module, "sleep", lambda _s: None)
    resources = _resources(tmp_path, server)
    users = server.user_names
    asked_at: dict[str, int] = {}
    asks: Counter = Counter()
    held = []
    cursor = None
    with dg.instance_for_test() as instance:
        now = MIDNIGHT + 120
        for step in range(10):
            server.world.insert(users[step % len(users)], now - 40)
            server.world.insert(users[0], now - 50)  # listener01 is in a session
            lost = step in (3, 4)  # these ticks' run requests are lost (a daemon crash): files wait
            before = len(server.requests_for("user.getRecentTracks"))
            result = _poll(monkeypatch, instance, resources, now, cursor)
            cursor = result.cursor
            asked = [r.params["user"] for r in server.requests_for("user.getRecentTracks")[before:]]
            assert len(asked) <= 2
            for user in asked:
                asked_at[user] = now
            asks.update(asked)
            if lost:
                held.append(len(result.run_requests))
                now += 60
                continue
            for request in result.run_requests:
                _run(resources, request.partition_key, request.run_config)
            loaded = _loaded(tmp_path, TODAY)
            assert max(loaded.values(), default=1) == 1  # no scrobble twice
            # Every scrobble of a listener asked at t, made before t, is loaded; none is invented.
            expected = Counter(
                k for u, t in asked_at.items() for k in server.world.expected_keys(u, MIDNIGHT, t)
            )  # fmt: skip
            assert expected - loaded == Counter(), f"poll {step}: scrobbles lost"
            assert loaded - _expected(server, TODAY, now) == Counter(), f"poll {step}: scrobbles not on the API"
            now += 60
        assert set(asked_at) == set(users)  # the rotation reached everyone
        assert any(held)  # runs were lost, and their scrobbles loaded by the next one
        # The listener in a session is asked more often than the rotation alone would.
        assert asks[users[0]] > max(asks[u] for u in users[1:])
    server.world.insert(users[-1], now + 5)
    _run(resources, TODAY.isoformat())
    assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, MIDNIGHT + 86400)


def test_a_slice_keeps_the_other_users_rows_and_replaces_its_users(server):
    fresh = pd.DataFrame({"user_name": ["a", "a"], "played_at_uts": [3, 4]}).astype({"played_at_uts": "int64"})
    stored = pd.DataFrame({"user_name": ["a", "b", "ü"], "played_at_uts": [1, 2, 5]})
    merged = merge_user_slice(stored, fresh, ["a"])
    assert sorted(zip(merged["user_name"], merged["played_at_uts"], strict=True)) == [
        ("a", 3),
        ("a", 4),
        ("b", 2),
        ("ü", 5),
    ]
    assert merge_user_slice(None, fresh, ["a"]) is fresh
    # A user whose scrobbles were all deleted upstream loses its rows; the others stay.
    emptied = merge_user_slice(stored, fresh.iloc[0:0], ["a"])
    assert sorted(emptied["user_name"]) == ["b", "ü"]
    with pytest.raises(ValueError, match="columns"):
        merge_user_slice(stored, fresh.assign(extra=1), ["a"])


def test_slice_users_apply_to_one_day_of_an_api_source_only():
    day = [date(2025, 3, 8)]
    assert select_slice_users([], ["a", "b"], day, whole_day_source=False) is None
    assert select_slice_users(["b", "gone"], ["a", "b"], day, whole_day_source=False) == ["b"]
    assert select_slice_users(["b"], ["a", "b"], day, whole_day_source=True) is None
    with pytest.raises(ValueError, match="one day"):
        select_slice_users(["b"], ["a", "b"], [*day, date(2025, 3, 9)], whole_day_source=False)


# -- the open day: a partial day passes, a stalled feed fails -----------------------------------------


def test_the_open_day_verdict():
    noon = datetime(2025, 3, 8, 12, tzinfo=UTC)
    partial = judge_open_day(noon, rows=12, newest_landed_at=noon - timedelta(minutes=3))
    assert partial.passed and partial.status == OPEN and "partial" in partial.description
    stalled = judge_open_day(noon, rows=12, newest_landed_at=noon - timedelta(hours=2))
    assert not stalled.passed and stalled.status == STALLED and "stalled" in stalled.description
    empty_at_noon = judge_open_day(noon, rows=0, newest_landed_at=None)
    assert not empty_at_noon.passed and empty_at_noon.status == STALLED
    just_after_midnight = judge_open_day(datetime(2025, 3, 8, 0, 20, tzinfo=UTC), rows=0, newest_landed_at=None)
    assert just_after_midnight.passed and just_after_midnight.status == JUST_STARTED
    closed = judge_open_day(noon, rows=3, newest_landed_at=None, day=date(2025, 3, 7))
    assert closed.passed and closed.status == CLOSED
    # no live feed configured (the synthetic source): an open day without new rows is no stall
    not_live = judge_open_day(noon, rows=0, newest_landed_at=None, live_feed=False)
    assert not_live.passed and not_live.status == NOT_LIVE and "synthetic" in not_live.description
    # naive timestamps (the warehouse's ingested_at) are UTC
    assert judge_open_day(noon, 1, (noon - timedelta(minutes=1)).replace(tzinfo=None)).passed


def test_the_open_day_check_passes_a_partial_day_and_fails_a_stalled_feed(monkeypatch, tmp_path, server):
    resources = _resources(tmp_path, server)
    for user in server.user_names[:2]:
        server.world.insert(user, MIDNIGHT + 600)
    _run(resources, TODAY.isoformat())  # the open day so far: a partial day
    # The test's "today" is 2025-03-08: date the load to 00:12 of it.
    landed = datetime(2025, 3, 8, 0, 12)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute(f"update raw.lastfm_scrobbles set ingested_at = timestamp '{landed}'")

    def evaluate(now: datetime):
        monkeypatch.setattr(open_day_module, "clock", lambda: now)
        result = dg.materialize(
            [lastfm_scrobbles.to_source_asset(), open_day_feed],
            resources={"warehouse": resources["warehouse"], "lastfm": resources["lastfm"]},
            selection=dg.AssetSelection.checks(open_day_feed),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    fresh = evaluate(datetime(2025, 3, 8, 0, 15, tzinfo=UTC))
    assert fresh.passed and fresh.metadata["status"].value == OPEN, fresh.description
    assert fresh.metadata["rows_so_far"].value == len(_loaded(tmp_path, TODAY)) > 0
    stalled = evaluate(datetime(2025, 3, 8, 3, 15, tzinfo=UTC))  # nothing new for 3 h
    assert not stalled.passed and stalled.metadata["status"].value == STALLED
    assert "stalled feed" in stalled.description and stalled.severity == dg.AssetCheckSeverity.ERROR


def _landing(tmp_path: Path) -> Path:
    return landing_dir(tmp_path / "data")


def test_a_landed_load_asks_last_fm_nothing_and_crashes_lose_and_duplicate_nothing(monkeypatch, tmp_path, server):
    """The sensor lands what it fetched; the run adds it without a request to Last.fm. A run
    killed after writing the day but before deleting its files, a tick whose cursor was never
    stored (the sensor killed after landing), a run request lost: the next run of the day adds
    each scrobble once. The day's full load settles the day and deletes the files it covers."""
    resources = _resources(tmp_path, server)
    users = server.user_names
    with dg.instance_for_test() as instance:
        now = MIDNIGHT + 600
        for i, user in enumerate(users[:3]):
            server.world.insert(user, now - 100 + i)
        first = _poll(monkeypatch, instance, resources, now, None)
        (request,) = first.run_requests
        assert request.tags[sensor_module.API_TAG] == sensor_module.LANDED
        files = landed_files(_landing(tmp_path), TODAY)
        kept = {f: f.read_bytes() for f in files}
        asked = len(server.requests)
        _run(resources, TODAY.isoformat(), request.run_config)
        assert len(server.requests) == asked  # the run asked Last.fm nothing
        assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, now)
        assert landed_files(_landing(tmp_path), TODAY) == []  # done with once the day is written

        # The run was killed after writing the day, before deleting its files: run again.
        for path, body in kept.items():
            path.write_bytes(body)
        _run(resources, TODAY.isoformat(), request.run_config)
        assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, now)

        # The sensor is killed after landing, before its cursor is stored: the next tick asks the
        # same windows again (plus a new listen) and lands them a second time.
        server.world.insert(users[3], now + 30)
        _poll(monkeypatch, instance, resources, now + 60, first.cursor)  # result lost with the process
        server.world.insert(users[0], now + 70)
        again = _poll(monkeypatch, instance, resources, now + 120, first.cursor)
        assert len(landed_files(_landing(tmp_path), TODAY)) == 2
        # ... and that run request is lost too; a later tick's run takes every earlier file.
        server.world.insert(users[4], now + 150)
        later = _poll(monkeypatch, instance, resources, now + 180, again.cursor)
        assert len(landed_files(_landing(tmp_path), TODAY)) == 3
        asked = len(server.requests)
        for request in later.run_requests:
            _run(resources, request.partition_key, request.run_config)
        assert len(server.requests) == asked
        loaded = _loaded(tmp_path, TODAY)
        assert max(loaded.values()) == 1 and loaded == _expected(server, TODAY, now + 180)
        assert landed_files(_landing(tmp_path), TODAY) == []

        # Files landed before the day's full load are covered by it and deleted.
        server.world.insert(users[1], now + 200)
        _poll(monkeypatch, instance, resources, now + 240, later.cursor)
        assert landed_files(_landing(tmp_path), TODAY)
    _run(resources, TODAY.isoformat())
    assert landed_files(_landing(tmp_path), TODAY) == []
    assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, MIDNIGHT + 86400)


def test_a_listener_with_more_new_scrobbles_than_a_page_is_fetched_again(monkeypatch, tmp_path, server):
    """A poll reads one page (50 scrobbles): a listener with more is fetched whole by the run,
    beside the landed ones, and the run asks Last.fm (its tag says so, so the sensor yields)."""
    resources = _resources(tmp_path, server)
    users = server.user_names
    with dg.instance_for_test() as instance:
        now = MIDNIGHT + 3600
        for i in range(sensor_module.SENSOR_PAGE_LIMIT + 5):
            server.world.insert(users[0], MIDNIGHT + 60 + i * 30)
        server.world.insert(users[1], now - 100)
        result = _poll(monkeypatch, instance, resources, now, None)
        (request,) = result.run_requests
        config = request.run_config["ops"]["raw__lastfm_scrobbles"]["config"]
        assert config["users"] == [users[0]] and config["landed_until"]
        assert request.tags[sensor_module.API_TAG] == "lastfm"
        asked = len(server.requests)
        _run(resources, TODAY.isoformat(), request.run_config)
        assert len(server.requests) > asked
        loaded = _loaded(tmp_path, TODAY)
        assert max(loaded.values()) == 1 and loaded == _expected(server, TODAY, now)


def test_the_sensor_and_a_landed_load_share_the_rate(monkeypatch, tmp_path):
    """While a landed load runs, the sensor polls (the run asks nothing): at the fake server the
    requests stay within 5 in any second, and every one of them is the sensor's."""
    import threading

    with FakeLastfmServer(users=40, days=1, seed=5, end_uts=MIDNIGHT, api_key=KEY) as big:
        resources = _resources(tmp_path, big)
        monkeypatch.setattr(sensor_module, "request_budget", lambda _seconds, _rate: 16)  # 16 at 4/s: ~4 s
        with dg.instance_for_test() as instance:
            for user in big.user_names[:10]:
                big.world.insert(user, MIDNIGHT + 500)
            first = _poll(monkeypatch, instance, resources, MIDNIGHT + 600, None)
            (request,) = first.run_requests
            instance.add_run(dg.DagsterRun(
                job_name="__anonymous_asset_job_lastfm_recent_scrobbles_sensor", run_id="landed-load",
                status=dg.DagsterRunStatus.STARTED, tags=request.tags,
            ))  # fmt: skip
            before = len(big.requests)
            loading = threading.Thread(target=_run, args=(resources, TODAY.isoformat(), request.run_config))
            loading.start()
            second = _poll(monkeypatch, instance, resources, MIDNIGHT + 660, first.cursor)
            loading.join()
            assert not isinstance(second, dg.SkipReason)
            during = big.requests[before:]
            assert len(during) == 16 and {r.method for r in during} == {"user.getrecenttracks"}
            times = sorted(r.at for r in big.requests)
            assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 5


def test_a_load_waits_for_a_build_of_the_daily_marts_before_it_writes(monkeypatch, tmp_path, server):
    """The listen ledger compares raw and marts within one build: a load requested while the
    marts are restated starts, waits for that run to end, then writes (its start-up overlaps the
    build instead of waiting for the sensor's next tick)."""
    import threading
    import time

    from music_platform.defs.ingestion import lastfm as lastfm_module

    monkeypatch.setattr(lastfm_module, "RESTATEMENT_POLL_S", 0.05)
    resources = _resources(tmp_path, server)
    with dg.instance_for_test() as instance:
        server.world.insert(server.user_names[0], MIDNIGHT + 500)
        (request,) = _poll(monkeypatch, instance, resources, MIDNIGHT + 600, None).run_requests
        build = instance.add_run(dg.DagsterRun(
            job_name="__ASSET_JOB", run_id="restating", status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({dg.AssetKey(["marts", "fct_listens"])}),
        ))  # fmt: skip
        results = []

        def load():
            results.append(dg.materialize(
                [lastfm_scrobbles], resources=resources, partition_key=TODAY.isoformat(),
                run_config=request.run_config, instance=instance,
            ))  # fmt: skip

        loading = threading.Thread(target=load)
        loading.start()
        time.sleep(3.0)
        assert loading.is_alive() and not (tmp_path / "warehouse.duckdb").exists()  # waiting, nothing written
        instance.report_run_canceled(build)
        loading.join(timeout=120)
        (result,) = results
        assert result.success
        waited = result.asset_materializations_for_node("raw__lastfm_scrobbles")[0].metadata
        assert waited["seconds_waited_for_a_marts_build"].value >= 1.5
        assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, MIDNIGHT + 600)


def test_a_load_waiting_to_start_takes_what_landed_after_it_and_is_not_requested_again(monkeypatch, tmp_path, server):
    """Under load, loads requested every tick queued up behind the marts builds (each waits for
    one before it writes). A landed load still waiting to start takes every file of its day
    present when it reads them, so the ticks meanwhile request no other one; once it has
    started, the next tick requests again. Nothing is lost or duplicated."""
    resources = _resources(tmp_path, server)
    users = server.user_names
    day = TODAY.isoformat()
    with dg.instance_for_test() as instance:
        now = MIDNIGHT + 600
        server.world.insert(users[0], now - 100)
        first = _poll(monkeypatch, instance, resources, now, None)
        (request,) = first.run_requests
        queued = dg.DagsterRun(
            job_name="__anonymous_asset_job_lastfm_recent_scrobbles_sensor", run_id="queued-load",
            status=dg.DagsterRunStatus.NOT_STARTED, tags={**request.tags, "dagster/partition": day},
        )  # fmt: skip
        instance.add_run(queued)
        server.world.insert(users[1], now + 20)
        server.world.insert(users[2], now + 30)
        second = _poll(monkeypatch, instance, resources, now + 60, first.cursor)
        assert not second.run_requests  # the waiting load will take this tick's file too
        assert len(landed_files(_landing(tmp_path), TODAY)) == 2
        asked = len(server.requests)
        _run(resources, day, request.run_config)  # the first tick's config: landed_until = its file
        assert len(server.requests) == asked
        assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, now + 60)
        assert landed_files(_landing(tmp_path), TODAY) == []
        # Once it has started (here: ended), a tick with news requests a load again.
        instance.report_run_canceled(queued)  # no longer waiting to start
        server.world.insert(users[3], now + 90)
        third = _poll(monkeypatch, instance, resources, now + 120, second.cursor)
        (request,) = third.run_requests
        _run(resources, day, request.run_config)
        assert _loaded(tmp_path, TODAY) == _expected(server, TODAY, now + 120)
