"""Incremental by day, end to end: the scrobble load and the dbt models.

The scrobble load writes one batch of whole days at a time (bounded memory) and keeps its
audit trail streaming.
``fct_listens`` and ``user_track_interactions`` are incremental by listening day (Dagster's daily
partitions pass ``--vars {min_date, max_date}``). Two warehouses receive the same raw scrobbles:
one is built day by day with the partition vars, the other by ``dbt build --full-refresh``; both
marts must be identical. Then days are restated the way a re-run partition changes them: a
(user, track) pair that vanishes, a listen fewer, a track never heard before, a day emptied. The
project's own dbt SQL runs on DuckDB, on PostgreSQL when the server is up and on Snowflake's
dialect through fakesnow.
"""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.defs.transform.dbt import daily_build_args
from music_platform.sources.landing import (
    AuditTrailWriter,
    collect_scrobbles,
    day_bounds,
    iter_scrobble_batches,
    read_audit_trail,
)
from music_platform.sources.lastfm.errors import lastfm_error
from music_platform.sources.lastfm.parsing import parse_recent_tracks
from music_platform.sources.lastfm.protocol import RecentTracksFetch, fetch_each_user
from music_platform.sources.schemas import LASTFM_SCROBBLES
from music_platform.sources.synthetic.source import SyntheticLastfmSource
from music_platform.warehouse import Warehouse, connect_warehouse
from music_platform_tests.dbt_runner import SNOWFLAKE_ENV, run_dbt

FIRST_DAY = date(2025, 3, 3)
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(3)]
MODELS = [
    "stg_lastfm__scrobbles",
    "fct_listens",
    "listens_set_aside",
    "listen_ledger",
    "user_track_interactions",
]
# The dimensions are not built here: leave out the tests that read them.
ONLY_THESE_MODELS = ["--select", *MODELS, "--indirect-selection", "cautious"]
# The name-key character table (a seed, 26k rows) is loaded by the first build of each warehouse
# only: dbt reloads a selected seed on every invocation, a minute each on fakesnow.
CHARACTER_SEED = "name_key_characters"
KEYS = {"fct_listens": ["listen_id"], "user_track_interactions": ["user_id", "track_id"]}


# -- the scrobble load: one batch of whole days at a time -------------------------------------------


def test_the_audit_trail_round_trips_many_chunks(tmp_path):
    payloads = [{"recenttracks": {"track": [{"name": f"Song {i}", "n": i}] * 40}} for i in range(2000)]
    with AuditTrailWriter(tmp_path, "synthetic", "scrobbles", "label") as audit:
        for i, payload in enumerate(payloads):
            audit.write(payload, user=f"user{i}", day=date(2025, 3, 3))
    assert audit.path.stat().st_size > 0 and audit.count == len(payloads)
    lines = list(read_audit_trail(audit.path))
    assert [line["payload"] for line in lines] == payloads
    assert lines[7]["context"] == {"user": "user7", "day": "2025-03-03"}  # dates written as ISO text


def test_the_synthetic_load_comes_in_batches_of_consecutive_days_and_adds_up():
    source = SyntheticLastfmSource(n_users=40, seed=3)
    week = source.days_per_batch
    week_and_two = [FIRST_DAY + timedelta(days=i) for i in range(week + 2)]
    days = [*week_and_two, FIRST_DAY + timedelta(days=30)]
    batches = list(iter_scrobble_batches(source, source.users, days))
    # a week at most per batch, never across a gap
    assert week == 7
    assert [b.days for b in batches] == [days[:week], days[week:-1], days[-1:]]
    for batch in batches:
        frame = batch.frame(source="synthetic")
        assert set(frame["scrobble_date"]) == set(batch.days)
        assert len(frame) == sum(source.expected_scrobbles(day) for day in batch.days)
    merged = collect_scrobbles(source, source.users, days)
    assert len(merged.frame(source="synthetic")) == sum(len(b.frame(source="synthetic")) for b in batches)


def test_rendered_synthetic_pages_equal_the_item_by_item_payload():
    """The bulk path renders pages from per-track JSON; it must be the same payload, key order too."""
    import orjson

    from music_platform.sources.synthetic.payloads import recent_track_item, recent_tracks_page, track_strings

    world = SyntheticLastfmSource(n_users=40, seed=3).world
    strings = track_strings(world)
    tracks = np.arange(0, world.catalogue.n_tracks, 97)[:250]
    uts = np.arange(1_760_000_000, 1_760_000_000 - 61 * len(tracks), -61)
    for page, now_playing in ((1, 5), (2, 5), (1, None)):
        built = recent_tracks_page(world, "listener", uts, tracks, page, 200, now_playing)
        lo, hi = (page - 1) * 200, min(page * 200, len(tracks))
        expected = [recent_track_item(strings, int(t), int(u)) for t, u in zip(tracks[lo:hi], uts[lo:hi], strict=True)]
        if now_playing is not None and page == 1:
            expected.insert(0, recent_track_item(strings, now_playing, None))
        assert orjson.dumps(built["recenttracks"]["track"]) == orjson.dumps(expected)
        assert built["recenttracks"]["@attr"]["total"] == str(len(tracks))


class WalkingClient:
    """The real client's one-walk-per-user shape, answered by the synthetic source."""

    source_name = "lastfm"
    days_per_batch = 14

    def __init__(self, missing_user: str):
        self.source = SyntheticLastfmSource(n_users=12, seed=5)
        self.missing_user = missing_user
        self.walks: list[tuple[str, int, int]] = []

    def fetch_recent_tracks(self, user: str, time_from: int, time_to: int) -> RecentTracksFetch:
        self.walks.append((user, time_from, time_to))
        if user == self.missing_user:
            raise lastfm_error(6, "User not found", operation="user.getRecentTracks", context={"user": user})
        fetch = RecentTracksFetch(user=user, time_from=time_from, time_to=time_to)
        for page in self.source.get_recent_tracks_pages(user, time_from, time_to):
            fetch.pages.append(page)
            fetch.result.extend(parse_recent_tracks(page, user, window=(time_from, time_to)))
        fetch.total_reported = fetch.result.item_count
        return fetch

    def recent_tracks_for_days(self, users, first: date, last: date):
        return fetch_each_user(self.fetch_recent_tracks, users, day_bounds(first)[0], day_bounds(last)[1])


def test_api_loads_walk_each_user_over_batches_of_consecutive_days():
    client = WalkingClient(missing_user="nobody")
    users = [*client.source.users, "nobody"]
    days = [FIRST_DAY + timedelta(days=i) for i in range(5)] + [FIRST_DAY + timedelta(days=9)]
    batches = list(iter_scrobble_batches(client, users, days, days_per_batch=2))
    assert [[d.day for d in b.days] for b in batches] == [[3, 4], [5, 6], [7], [12]]
    # one walk per user and batch, over exactly the batch's days; the missing user is asked once
    assert sum(1 for user, *_ in client.walks if user == "nobody") == 1
    assert batches[-1].skipped_users == {"nobody": batches[0].skipped_users["nobody"]}
    for batch in batches:
        start, end = day_bounds(batch.days[0])[0], day_bounds(batch.days[-1])[1]
        walked = {(f, t) for user, f, t in client.walks if user != "nobody"}
        assert (start, end) in walked
        frame = batch.frame(source="lastfm")
        assert set(frame["scrobble_date"]) <= set(batch.days)
    expected = sum(client.source.expected_scrobbles(day) for day in days)
    assert sum(len(b.frame(source="lastfm")) for b in batches) == expected


# -- pure: the arguments the partitioned Dagster asset gives dbt --------------------------------


def test_a_partition_window_becomes_dbts_event_time_window_not_vars():
    args = daily_build_args(datetime(2025, 3, 1), datetime(2025, 3, 4))
    assert args[0] == "build"
    # dbt's own time-window flags (start inclusive, end exclusive, as Dagster's window): run
    # arguments, so partial parsing survives from one run to the next; --vars would not
    assert args[args.index("--event-time-start") + 1] == "2025-03-01T00:00:00"
    assert args[args.index("--event-time-end") + 1] == "2025-03-04T00:00:00"
    assert "--vars" not in args
    # relationships to the (unpartitioned) dimensions are judged when those are rebuilt
    assert args[args.index("--indirect-selection") + 1] == "cautious"
    # dbt unit tests check logic a partition does not change: the unpartitioned build runs them
    assert args[args.index("--exclude-resource-type") + 1] == "unit_test"
    assert "--full-refresh" not in args


def test_full_refresh_is_passed_on_and_an_empty_window_is_refused():
    assert "--full-refresh" in daily_build_args(datetime(2025, 3, 1), datetime(2025, 3, 2), full_refresh=True)
    with pytest.raises(ValueError, match="empty partition window"):
        daily_build_args(datetime(2025, 3, 2), datetime(2025, 3, 2))


def test_every_dbt_model_belongs_to_exactly_one_dbt_asset():
    from music_platform.defs.transform.dbt import dbt_assets_for
    from music_platform.transformation.project import get_dbt_project

    settings = Settings.from_env({})
    dbt_daily_models, dbt_models = dbt_assets_for(settings)
    manifest = json.loads(Path(get_dbt_project(settings).manifest_path).read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")}
    daily = {k.path[-1] for k in dbt_daily_models.keys}
    other = {k.path[-1] for k in dbt_models.keys}
    assert daily == {"fct_listens", "listens_set_aside", "listen_ledger", "recent_listens", "user_track_interactions"}
    assert not daily & other
    assert daily | other == models


# -- dbt on real warehouses ------------------------------------------------------------------------


def build_days(settings: Settings, work_dir: Path, first: date, last: date, with_seed: bool = False) -> None:
    """What the partitioned Dagster asset runs for the partition range [first, last]."""
    window_start = datetime.combine(first, datetime.min.time())
    window_end = datetime.combine(last + timedelta(days=1), datetime.min.time())
    seed = [CHARACTER_SEED] if with_seed else []
    run_dbt([*daily_build_args(window_start, window_end), "--select", *seed, *MODELS], settings, work_dir)


def full_refresh(settings: Settings, work_dir: Path, with_seed: bool = False) -> None:
    seed = [CHARACTER_SEED] if with_seed else []
    run_dbt(
        ["build", "--full-refresh", "--select", *seed, *MODELS, "--indirect-selection", "cautious"], settings, work_dir
    )


def synthetic_days() -> dict[date, pd.DataFrame]:
    """Raw scrobbles per day, through the same JSON pages and parser as the ingestion asset."""
    source = SyntheticLastfmSource(n_users=80, seed=7)
    batch = collect_scrobbles(source, source.users, DAYS)
    frame = batch.frame(source="synthetic", ingested_at=datetime(2025, 4, 1))
    return {day: frame[frame["scrobble_date"] == day].reset_index(drop=True) for day in DAYS}


def write_day(warehouse: Warehouse, day: date, frame: pd.DataFrame) -> None:
    warehouse.replace_partition("raw", LASTFM_SCROBBLES.name, frame, "scrobble_date", [day])


def marts(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
    out = {}
    for table, keys in KEYS.items():
        frame = warehouse.query_df(f"select * from {warehouse.qualified('marts', table)}")
        frame.columns = [c.lower() for c in frame.columns]
        out[table] = frame.sort_values(keys).reset_index(drop=True)
    return out


def assert_same_marts(incremental: Warehouse, full: Warehouse) -> dict[str, pd.DataFrame]:
    got, expected = marts(incremental), marts(full)
    for table in KEYS:
        assert len(expected[table]) > 0, table
        pd.testing.assert_frame_equal(got[table], expected[table], check_dtype=True, obj=table)
    return got


def listen_days(marts_frames: dict[str, pd.DataFrame]) -> set[date]:
    return set(pd.to_datetime(marts_frames["fct_listens"]["listen_date"]).dt.date)


def restated_day(days: dict[date, pd.DataFrame], day: date) -> pd.DataFrame:
    """The day as a re-run partition might bring it: a pair gone, a listen fewer, a new track."""
    everything = pd.concat(days.values(), ignore_index=True)
    pair = ["user_name", "artist_name", "track_name"]
    days_per_pair = everything.groupby(pair)["scrobble_date"].nunique()
    frame = days[day]
    on_day = set(frame[pair].itertuples(index=False, name=None))
    only_that_day = sorted(p for p in days_per_pair[days_per_pair == 1].index if p in on_day)
    also_elsewhere = sorted(p for p in days_per_pair[days_per_pair > 1].index if p in on_day)
    assert only_that_day and also_elsewhere, "the synthetic days should hold both kinds of pair"
    keys = pd.Series(list(frame[pair].itertuples(index=False, name=None)), index=frame.index)
    vanished = keys == only_that_day[0]
    one_fewer = (keys == also_elsewhere[0]) & ~keys.duplicated()
    changed = frame[~(vanished | one_fewer)].copy()
    new_listen = changed.iloc[[0]].copy()
    new_listen["track_name"] = "A Song Nobody Played Before"
    new_listen["played_at_uts"] += 1
    new_listen["played_at"] = pd.to_datetime(new_listen["played_at_uts"], unit="s")
    return pd.concat([changed, new_listen], ignore_index=True)


def _duckdb(work_dir: Path, name: str, stack: ExitStack, request) -> Settings:
    return Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(work_dir / name)})


def _postgres(work_dir: Path, name: str, stack: ExitStack, request) -> Settings:
    from music_platform_tests.pg_utils import fresh_database, require_postgres

    url = stack.enter_context(fresh_database(f"mp_incr_{name}", require_postgres()))
    return Settings.from_env(
        {"MUSIC_PLATFORM_DATA_DIR": str(work_dir / name), "MUSIC_PLATFORM_TARGET": "postgres",
         "MUSIC_PLATFORM_POSTGRES_URL": url}
    )  # fmt: skip


def _snowflake(work_dir: Path, name: str, stack: ExitStack, request) -> Settings:
    import snowflake.connector

    server = request.getfixturevalue("fakesnow_server")
    # fakesnow keeps databases for the session and cannot drop them: a fresh name per test
    database = f"MP_INCR_{name.upper()}_{uuid.uuid4().hex[:8].upper()}"
    env = {**server.env(), "SNOWFLAKE_DATABASE": database}
    with snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"], user=env["SNOWFLAKE_USER"], password=env["SNOWFLAKE_PASSWORD"],
        host=server.host, port=server.port, protocol="http",
    ) as conn:  # fmt: skip
        conn.cursor().execute(f"create database {database}")
        conn.cursor().execute(f"create schema if not exists {database}.public")
    settings = Settings.from_env({**env, "MUSIC_PLATFORM_DATA_DIR": str(work_dir / name)})
    SNOWFLAKE_ENV[id(settings)] = env
    stack.callback(SNOWFLAKE_ENV.pop, id(settings), None)
    return settings


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_settings",
    [
        _duckdb,
        pytest.param(_postgres, marks=[pytest.mark.postgres, pytest.mark.extended]),
        pytest.param(_snowflake, marks=pytest.mark.extended),
    ],
    ids=["duckdb", "postgres", "snowflake"],
)
def test_day_by_day_builds_and_restatements_equal_a_full_refresh(tmp_path, make_settings, request):
    days = synthetic_days()
    with ExitStack() as stack:
        inc_settings = make_settings(tmp_path, "incremental", stack, request)
        full_settings = make_settings(tmp_path, "full", stack, request)
        incremental, full = connect_warehouse(inc_settings), connect_warehouse(full_settings)
        inc_dir, full_dir = tmp_path / "inc_dbt", tmp_path / "full_dbt"

        # 1. day by day (the first run creates the tables) vs one full refresh
        for day in DAYS:
            write_day(incremental, day, days[day])
            build_days(inc_settings, inc_dir, day, day, with_seed=day == DAYS[0])
        for day in DAYS:
            write_day(full, day, days[day])
        full_refresh(full_settings, full_dir, with_seed=True)
        built = assert_same_marts(incremental, full)
        assert listen_days(built) == set(DAYS)

        # 2. one day restated with listens removed and added
        day = DAYS[1]
        days[day] = restated_day(days, day)
        for warehouse in (incremental, full):
            write_day(warehouse, day, days[day])
        build_days(inc_settings, inc_dir, day, day)
        full_refresh(full_settings, full_dir)
        assert_same_marts(incremental, full)

        # 3. a range restated in one run (a single-run backfill) where one day is now empty
        emptied = DAYS[2]
        days[emptied] = days[emptied].iloc[0:0]
        for warehouse in (incremental, full):
            write_day(warehouse, emptied, days[emptied])
        build_days(inc_settings, inc_dir, DAYS[1], DAYS[2])
        full_refresh(full_settings, full_dir)
        restated = assert_same_marts(incremental, full)
        assert listen_days(restated) == set(DAYS) - {emptied}

        # 4. a plain incremental run (no vars) restates only the days from the newest stored one
        # minus lookback_days, never the whole history: an old day re-fetched under another
        # source label stays as stored, and the marts still equal the full refresh.
        old_day = DAYS[0]
        write_day(incremental, old_day, days[old_day].assign(source="refetched"))
        run_dbt(["build", "--vars", json.dumps({"lookback_days": 0}), *ONLY_THESE_MODELS], inc_settings, inc_dir)
        kept = assert_same_marts(incremental, full)["fct_listens"]
        assert set(kept[pd.to_datetime(kept["listen_date"]).dt.date == old_day]["source"]) == {"synthetic"}
