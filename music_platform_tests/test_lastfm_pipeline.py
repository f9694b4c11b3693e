"""The Last.fm client wired into Dagster, against the fake Last.fm server.

Fast tests (in process, ``dg.materialize``) prove the failure semantics of ``raw/lastfm_scrobbles``:
unknown and private users are skipped with a WARN check naming them, an invalid key fails the
run at once without step retries, a failed load leaves the partition as it was and a step
retry completes it, a walk whose pages shift is restarted. CLI tests drive ``collect lastfm``
and ``check-apis`` through typer.

The slow test is the end-to-end proof: ``dagster asset materialize`` (a subprocess, like an
operator) loads a week of scrobbles for 40 users through injected faults (HTTP 500s, error 29,
an HTML 502, a timeout); every scrobble lands exactly once, no second holds more than 5
requests, the rest of the graph (other raw assets, dbt, ml) builds from that data, and the API
key appears in no file under the data dir or DAGSTER_HOME (event log included).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from typer.testing import CliRunner

from music_platform.cli import app
from music_platform.config import Settings
from music_platform.defs.ingestion.kaggle import DROP_FOLDER_CHECK, kaggle_tracks
from music_platform.defs.ingestion.lastfm import scrobbles_asset
from music_platform.identity import artist_id
from music_platform.resources import ArtifactStoreResource, KaggleResource, LastfmResource, WarehouseResource
from music_platform.sources.http import RateLimiter, RetryPolicy, Timeouts
from music_platform.sources.lastfm.client import LastfmClient
from music_platform.sources.schemas import KAGGLE_TRACKS
from music_platform_tests.fakes.lastfm_server import (
    ARTISTS_IN_EVERY_SCRIPT,
    TRACKS_IN_EVERY_SCRIPT,
    FakeLastfmServer,
    Fault,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAY_S = 86_400
# A fixed week inside the platform's partitions (they start 2025-01-01): 2025-03-01 .. 2025-03-07.
END = int(datetime(2025, 3, 8, tzinfo=UTC).timestamp())
FIRST_DAY, LAST_DAY = date(2025, 3, 1), date(2025, 3, 7)
# The asset as the code location builds it, partitions from the default first day.
lastfm_scrobbles = scrobbles_asset(Settings.from_env({"MUSIC_PLATFORM_PARTITIONS_START": "2025-01-01"}))
KEY = "PiPeLiNeKeY0123456789abcdef01234"
# The client retries each request twice, quickly; the asset's STEP_RETRY retries whole steps.
QUICK_RETRY = RetryPolicy(max_attempts=2, deadline_s=5, initial_backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)
SCROBBLES_COLUMNS = "user_name, played_at_uts, artist_name, track_name"


class QuickLastfmResource(LastfmResource):
    """The real client with fast retries and no rate wait, so the tests spend no time sleeping."""

    def get_client(self):
        return LastfmClient(
            self.api_key,
            self.api_root,
            retry=QUICK_RETRY,
            timeouts=Timeouts(connect_s=2.0, read_s=2.0),
            rate_limiter=RateLimiter(500),
        )


@pytest.fixture
def server():
    with FakeLastfmServer(users=4, days=7, seed=5, end_uts=END, api_key=KEY, private_users=["hidden_listener"]) as fake:
        yield fake


def _resources(tmp_path: Path, server: FakeLastfmServer, users: list[str], key: str = KEY) -> dict:
    return {
        "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb")),
        "lastfm": QuickLastfmResource(use_synthetic=False, api_key=key, api_root=server.url, users=users),
        "artifacts": ArtifactStoreResource(data_dir=str(tmp_path / "data")),
    }


def _materialize(resources: dict, day: date | None = None, *, days: tuple[date, date] | None = None):
    tags = {}
    if days is not None:
        tags = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[1].isoformat(),
        }
    return dg.materialize(
        [lastfm_scrobbles],
        resources=resources,
        partition_key=day.isoformat() if day else None,
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _day_window(first: date, last: date | None = None) -> tuple[int, int]:
    start = int(datetime.combine(first, datetime.min.time(), tzinfo=UTC).timestamp())
    end = int(datetime.combine(last or first, datetime.min.time(), tzinfo=UTC).timestamp()) + DAY_S
    return start, end


def _expected(server: FakeLastfmServer, users: list[str], first: date, last: date | None = None) -> Counter:
    window = _day_window(first, last)
    return Counter(key for user in users for key in server.world.expected_keys(user, *window))


def _loaded(duckdb_path: Path, first: date | None = None, last: date | None = None) -> Counter:
    where = ""
    if first is not None:
        where = f" where scrobble_date between date '{first}' and date '{last or first}'"
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        rows = conn.execute(f"select {SCROBBLES_COLUMNS} from raw.lastfm_scrobbles{where}").fetchall()
    return Counter(tuple(row) for row in rows)


def _check(result, name: str):
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evaluations) == 1, [e.check_name for e in result.get_asset_check_evaluations()]
    return evaluations[0]


def _step_failures(result) -> list[str]:
    return [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]


# -- failure semantics of the scrobbles asset ---------------------------------------------------------------


def test_unknown_and_private_users_are_skipped_with_a_warn_check_naming_them(tmp_path, server):
    real = [u for u in server.user_names if u != "hidden_listener"]
    users = [*real, "no_such_listener", "hidden_listener"]
    day = date(2025, 3, 5)

    result = _materialize(_resources(tmp_path, server, users), day)

    assert result.success, _step_failures(result)
    check = _check(result, "tracked_users_loaded")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "no_such_listener" in check.description and "hidden_listener" in check.description
    skipped = check.metadata["skipped_users"].value
    assert set(skipped) == {"no_such_listener", "hidden_listener"}
    assert "LASTFM_USERS" in skipped["no_such_listener"]  # the reason says what to do
    assert _loaded(tmp_path / "warehouse.duckdb") == _expected(server, real, day)
    assert _check(result, "completeness").passed and _check(result, "key_unique").passed


def test_tracked_users_check_passes_when_every_user_is_read(tmp_path, server):
    users = [u for u in server.user_names if u != "hidden_listener"]
    result = _materialize(_resources(tmp_path, server, users), date(2025, 3, 2))
    assert result.success and _check(result, "tracked_users_loaded").passed


def test_an_invalid_key_fails_the_run_at_once_without_step_retries(tmp_path, server):
    users = server.user_names[:2]
    result = _materialize(_resources(tmp_path, server, users, key="not-the-key-0123456789abcdef0123"), date(2025, 3, 5))

    assert not result.success
    (message,) = _step_failures(result)
    assert "LASTFM_API_KEY" in message and "not retried" in message
    assert "not-the-key" not in message
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(server.requests) == 1  # no HTTP retry, no step retry, no second user


def test_a_failed_load_keeps_the_partition_and_a_step_retry_completes_it(tmp_path, server):
    users = [u for u in server.user_names if u != "hidden_listener"]
    day = date(2025, 3, 4)
    resources = _resources(tmp_path, server, users)
    duckdb_path = tmp_path / "warehouse.duckdb"
    assert _materialize(resources, day).success
    before = _loaded(duckdb_path)
    assert before == _expected(server, users, day)

    # New listens arrive for that day; then a load dies on the last user, after the others were
    # read (the key is suspended mid-run: a failure without step retry, so the test is quick).
    day_start, _ = _day_window(day)
    server.world.insert(users[0], day_start + 3_601)
    server.world.insert(users[1], day_start + 7_201)
    server.add_fault(Fault("error", code=26, method="user.getrecenttracks", user=users[-1]))
    failed = _materialize(resources, day)
    assert not failed.success and "suspended" in _step_failures(failed)[0]
    assert len(server.requests_for("user.getRecentTracks")) == 2 * len(users)  # the others were read
    assert _loaded(duckdb_path) == before  # nothing half-written: the previous contents stand

    # Transient again, but only for as long as the first step attempt: STEP_RETRY completes the day.
    server.clear()
    attempts = QUICK_RETRY.max_attempts
    server.add_fault(Fault("error", code=8, method="user.getrecenttracks", user=users[-1], times=attempts))
    retried = _materialize(resources, day)
    assert retried.success, _step_failures(retried)
    assert [e for e in retried.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    after = _loaded(duckdb_path)
    assert after == _expected(server, users, day)
    assert sum(after.values()) == sum(before.values()) + 2 and max(after.values()) == 1


def test_a_range_load_restarts_a_walk_whose_pages_shifted(tmp_path, server):
    users = [u for u in server.user_names if u != "hidden_listener"]
    resources = _resources(tmp_path, server, users)
    # A back-dated scrobble arrives inside the week while the first user's walk is on page 2.
    late = _day_window(date(2025, 3, 3))[0] + 12_345
    server.add_fault(Fault("insert", method="user.getrecenttracks", user=users[0], page=2, insert=[(users[0], late)]))
    result = _materialize(resources, days=(FIRST_DAY, LAST_DAY))

    assert result.success, _step_failures(result)
    assert server.faults[0].applied == 1
    loaded = _loaded(tmp_path / "warehouse.duckdb")
    assert loaded == _expected(server, users, FIRST_DAY, LAST_DAY)
    assert any(key[1] == late for key in loaded)
    # One walk per user for the whole week (2 pages each at 200 per page), plus the restarted one.
    walks = [r for r in server.requests_for("user.getRecentTracks") if r.params.get("page") == "1"]
    assert len(walks) == len(users) + 1


def test_without_a_kaggle_file_the_table_is_empty_with_a_warn_check(tmp_path):
    drop = tmp_path / "data" / "external" / "kaggle"
    drop.mkdir(parents=True)
    resources = {
        "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb")),
        "kaggle": KaggleResource(drop_dir=str(drop), synthetic_allowed=False),
        "artifacts": ArtifactStoreResource(data_dir=str(tmp_path / "data")),
    }
    result = dg.materialize([kaggle_tracks], resources=resources, instance=dg.DagsterInstance.ephemeral())

    assert result.success  # a Last.fm-only deployment still builds its marts
    check = _check(result, DROP_FOLDER_CHECK)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert str(drop) in check.description and "dataset.csv" in check.description
    assert _check(result, "completeness").passed and _check(result, "rows_accounted_for").passed
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.kaggle_tracks").fetchone()[0] == 0
        columns = [row[0] for row in conn.execute("describe raw.kaggle_tracks").fetchall()]
    assert columns == KAGGLE_TRACKS.column_names


# -- the CLI against the fake ----------------------------------------------------------------------------------


def test_cli_help_lists_the_lastfm_commands():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "check-apis" in top.output and "collect" in top.output
    collect = runner.invoke(app, ["collect", "lastfm", "--help"])
    assert collect.exit_code == 0
    assert all(option in collect.output for option in ("--users", "--since", "--until"))
    assert runner.invoke(app, ["check-apis", "--help"]).exit_code == 0


def test_cli_check_apis_and_collect_lastfm_against_the_fake(clean_env, monkeypatch, server):
    user = server.user_names[0]
    monkeypatch.setenv("LASTFM_API_ROOT", server.url)
    monkeypatch.setenv("LASTFM_API_KEY", KEY)
    monkeypatch.setenv("LASTFM_USERS", user)
    monkeypatch.setenv("LASTFM_TAGS", "rock,jazz")
    runner = CliRunner()

    checked = runner.invoke(app, ["check-apis"])
    assert checked.exit_code == 0, checked.output
    assert KEY not in checked.output

    collected = runner.invoke(app, ["collect", "lastfm", "--since", "2025-03-06", "--until", "2025-03-07"])
    assert collected.exit_code == 0, collected.output
    out = clean_env / "data" / "external" / "lastfm"
    pages = list((out / "recenttracks").rglob("*.json"))
    assert pages and all("2025-03-06" in str(p) for p in pages)
    assert len(list((out / "runs").glob("*.json"))) == 1
    assert not [p for p in out.rglob("*.json") if KEY in p.read_text()]


# -- end to end: the operator's command, then the whole graph ------------------------------------------------


def max_requests_in_any_second(times: list[float]) -> int:
    """The most request arrivals within any window shorter than one second."""
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_max_requests_in_any_second():
    assert max_requests_in_any_second([]) == 0
    assert max_requests_in_any_second([0.0, 0.21, 0.42, 0.63, 0.84, 1.05]) == 5
    assert max_requests_in_any_second([0.0, 0.2, 0.4, 0.6, 0.8, 0.99]) == 6


def _late_waking_clock(late_on_call: int, late_by: float):
    """A fake clock whose ``sleep`` oversleeps once, as a thread does on a busy machine."""
    state = {"now": 0.0, "calls": 0}

    def sleep(seconds: float) -> None:
        state["calls"] += 1
        state["now"] += seconds + (late_by if state["calls"] == late_on_call else 0.0)

    return state, (lambda: state["now"]), sleep


def test_rate_limiter_keeps_actual_starts_apart_when_a_wait_overruns():
    def starts(spaced: bool) -> list[float]:
        state, clock, sleep = _late_waking_clock(late_on_call=1, late_by=0.15)
        gate = RateLimiter(5, margin_s=0.02, space_actual_starts=spaced, clock=clock, sleep=sleep)
        out = []
        for _ in range(8):
            gate.acquire()
            out.append(state["now"])
        return out

    bare = starts(spaced=False)
    assert min(b - a for a, b in zip(bare, bare[1:], strict=False)) < 0.2  # the bucket alone lets the next start early
    assert max_requests_in_any_second(bare) == 6
    spaced = starts(spaced=True)
    assert min(b - a for a, b in zip(spaced, spaced[1:], strict=False)) >= 0.22 - 1e-9
    assert max_requests_in_any_second(spaced) <= 5


def _pipeline_env(tmp_path: Path, server: FakeLastfmServer, key: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MUSIC_PLATFORM_", "LASTFM_", "SPOTIFY_", "SNOWFLAKE_", "DAGSTER_"))
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env.update(
        DAGSTER_HOME=str(home),
        MUSIC_PLATFORM_DATA_DIR=str(tmp_path / "data"),
        MUSIC_PLATFORM_TARGET="duckdb",
        MUSIC_PLATFORM_PARTITIONS_START=FIRST_DAY.isoformat(),
        LASTFM_API_ROOT=server.url,
        LASTFM_API_KEY=key,
        LASTFM_USERS=",".join(server.user_names),
    )
    return env


def _dagster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "music_platform.definitions"]
    return subprocess.run(
        [*command, *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1_800, check=False
    )


def _file_bytes(path: Path) -> bytes:
    """The file as bytes; gzip files (the audit trail) decompressed, so their content is searched."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in _file_bytes(p)]


@pytest.mark.slow
def test_cli_materialises_a_week_exactly_once_under_faults_then_the_whole_graph(tmp_path):
    key = "E2eSeCrEt" + "7f3a9c2b41d84e06a5b1c9d2e8f0"
    # 24 of the 60 artists are named in other scripts or in symbols only, their tracks too.
    with FakeLastfmServer(
        users=40, days=7, seed=17, end_uts=END, api_key=key,
        artist_names=ARTISTS_IN_EVERY_SCRIPT, track_names=TRACKS_IN_EVERY_SCRIPT,
    ) as server:  # fmt: skip
        users = server.user_names
        for fault in (
            Fault("error", code=8, method="user.getrecenttracks", times=2, skip=3),  # HTTP 500, twice in a row
            Fault("error", code=29, method="user.getrecenttracks", skip=12),  # rate limit exceeded (429)
            Fault("html", status=502, method="user.getrecenttracks", skip=25),  # load balancer page
            Fault("sleep", delay_s=21.0, method="user.getrecenttracks", skip=40),  # beyond the 20 s read timeout
            Fault("error", code=16, method="user.getinfo", skip=5),  # temporary error, HTTP 200
        ):
            server.add_fault(fault)
        env = _pipeline_env(tmp_path, server, key)

        scrobbles = _dagster(
            env,
            "--select", "raw/lastfm_scrobbles",
            "--partition-range", f"{FIRST_DAY.isoformat()}...{LAST_DAY.isoformat()}",
        )  # fmt: skip
        assert scrobbles.returncode == 0, scrobbles.stderr[-4000:]
        assert [f.applied for f in server.faults[:4]] == [2, 1, 1, 1]

        duckdb_path = tmp_path / "data" / "warehouse.duckdb"
        loaded = _loaded(duckdb_path)
        expected = _expected(server, users, FIRST_DAY, LAST_DAY)
        assert sum(expected.values()) > 40 * 7 * 15
        assert loaded == expected  # every scrobble, exactly once
        scrobble_requests = [r.at for r in server.requests]
        assert max_requests_in_any_second(scrobble_requests) <= 5

        rest = _dagster(
            env,
            "--select", 'group:ingestion and not key:"raw/lastfm_scrobbles",group:transform,group:ml',
            "--partition", LAST_DAY.isoformat(),  # the daily dbt models, rebuilt from all history:
            "--config-json", '{"ops": {"dbt_daily_models": {"config": {"full_refresh": true}}}}',
        )  # fmt: skip
        assert rest.returncode == 0, rest.stderr[-6000:]
        assert server.faults[4].applied == 1
        assert max_requests_in_any_second([r.at for r in server.requests]) <= 5

        with duckdb.connect(str(duckdb_path), read_only=True) as conn:
            listens = conn.execute(
                "select source, count(*), count(distinct user_id) from marts.fct_listens group by 1"
            ).fetchall()
            assert listens == [("lastfm", sum(expected.values()), len(users))]
            # Every scrobble raw received is one listen, whatever script its names are in: the
            # artist keeps its name in dim_artists and an id of its own (the id Python gives it).
            heard = {row[0] for row in conn.execute("select distinct artist_name from raw.lastfm_scrobbles").fetchall()}
            assert len(heard & set(ARTISTS_IN_EVERY_SCRIPT)) > len(ARTISTS_IN_EVERY_SCRIPT) // 2
            dim_artists = dict(conn.execute("select artist_name, artist_id from marts.dim_artists").fetchall())
            assert {name: dim_artists.get(name) for name in heard} == {name: artist_id(name) for name in heard}
            listened_ids = conn.execute("select count(distinct artist_id) from marts.fct_listens").fetchone()[0]
            assert listened_ids == len(heard)
            unaccounted = conn.execute(
                "select count(*) from audit.listen_ledger where unaccounted_rows <> 0 or kept_rows <> received_rows"
            ).fetchone()[0]
            assert unaccounted == 0
            for mart in ("dim_users", "dim_tracks", "dim_artists", "user_track_interactions", "genre_summary"):
                assert conn.execute(f"select count(*) from marts.{mart}").fetchone()[0] > 0, mart
            assert conn.execute("select count(*) from raw.kaggle_tracks").fetchone()[0] == 0  # no Kaggle file
            recommended = {
                row[0] for row in conn.execute("select distinct user_id from ml.user_recommendations").fetchall()
            }
            published = conn.execute("select count(*) from ml.model_registry").fetchone()[0]
        assert recommended == set(users)
        assert published > 0

    needle = key.encode()
    assert needle not in (scrobbles.stdout + scrobbles.stderr + rest.stdout + rest.stderr).encode()
    # The search does see what is in those files: a check name in the SQLite event log, a user in
    # the gzip audit trail.
    assert [p for p in _files_containing(tmp_path / "dagster_home", b"tracked_users_loaded") if p.suffix == ".db"]
    assert [p for p in _files_containing(tmp_path / "data", users[-1].encode()) if p.suffix == ".gz"]
    assert _files_containing(tmp_path / "data", needle) == []
    assert _files_containing(tmp_path / "dagster_home", needle) == []
