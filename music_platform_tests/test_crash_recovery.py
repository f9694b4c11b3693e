"""The crash suite (issue 14): real runs killed with SIGKILL during ingestion, dbt, training and
publication, then run again without any manual step; the result is compared with a clean run.

One DAGSTER_HOME (the local instance settings, deploy/dagster.local.yaml) and one data folder,
as a user's clone has:

1. a clean ``music-platform demo`` -- the baseline (row counts, the live publication);
2. ``dagster asset materialize --select group:ml`` killed while the model trains, then again
   killed once the recommendations and similar tracks are written, before the pointer switch
   -- the service still serves the baseline's publication, never the unpublished one;
3. ``music-platform demo`` killed while it loads the raw scrobbles; stopped with SIGTERM in the
   middle of dbt (it must exit within seconds, its dbt process stopped, its run canceled);
   then killed in the middle of dbt (its dbt process outlives it and still holds the DuckDB file);
4. ``music-platform demo`` again: it must complete, with exactly the clean run's rows (no
   duplicate, none lost), and the service serves the newly published version.

Sizes are the smallest that exercise every stage and give the model gate enough test users to
tell the model from popularity (300 listeners, 3 days): two full demos and five short runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from music_platform.config import Settings
from music_platform.demo import demo_days
from music_platform.recommender.registry import ModelRegistry
from music_platform.runs import dagster_instance as di
from music_platform.runs.leases import leases_dir
from music_platform.serving.service import RecommendationService, ServingConfig
from music_platform.sources.schemas import RAW_TABLES

# The crash suite (whole demo killed and re-run several times) runs in `make test-extended`.
pytestmark = [pytest.mark.slow, pytest.mark.extended]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO = [str(BIN / "music-platform"), "demo", "--users", "300", "--days", "3", "--seed", "42"]
CANCELED = dg.DagsterRunStatus.CANCELED
ML_RUN = [str(BIN / "dagster"), "asset", "materialize", "-m", "music_platform.definitions", "--select", "group:ml"]


class World:
    """The shared clone: its DAGSTER_HOME, data folder and the processes started on it."""

    def __init__(self, root: Path) -> None:
        self.home = root / "dagster_home"
        self.data = root / "data"
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text())
        first_day, _ = demo_days(3)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MUSIC_PLATFORM_", "LASTFM_", "SPOTIFY_"))}
        self.env = {**clean, "DAGSTER_HOME": str(self.home), "MUSIC_PLATFORM_DATA_DIR": str(self.data)}
        # what the demo sets for itself, for the runs started with the dagster CLI
        self.ml_env = {
            **self.env,
            "MUSIC_PLATFORM_SOURCE": "synthetic",
            "MUSIC_PLATFORM_SYNTHETIC_USERS": "300",
            "MUSIC_PLATFORM_SEED": "42",
            "MUSIC_PLATFORM_PARTITIONS_START": first_day.isoformat(),
        }
        self.settings = Settings(target="duckdb", data_dir=self.data)
        self.started = 0
        self.instance = dg.DagsterInstance.from_config(str(self.home))

    def start(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        # output to a file: a pipe nobody reads would block a chatty process before its kill point
        self.started += 1
        log = (self.home.parent / f"run-{self.started}.log").open("w+b")
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        process.log = log  # type: ignore[attr-defined]
        return process

    def complete(self, command: list[str], env: dict[str, str]) -> str:
        done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=1200)
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"{' '.join(command[:3])} failed ({done.returncode}):\n{out[-6000:]}"
        return out

    # -- what the runs are doing -----------------------------------------------------------
    def steps(self, event: dg.DagsterEventType) -> set[str]:
        found = set()
        for run in di.unfinished_runs(self.instance):
            for record in self.instance.get_records_for_run(run.run_id, of_type=event).records:
                found.add(record.event_log_entry.step_key or "")
        return found

    def lease_children(self) -> list[int]:
        children = []
        for path in leases_dir(self.home).glob("*.lease"):
            for line in path.read_text().splitlines():
                entry = json.loads(line) if line.strip() else {}
                if "child" in entry:
                    children.append(entry["child"]["pid"])
        return children

    def kill_when(
        self, process: subprocess.Popen, ready, what: str, delay: float = 0.0, timeout: float = 900, signum=None
    ):
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                raise AssertionError(f"the run ended ({process.returncode}) before {what}:\n{_output(process)}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        time.sleep(delay)
        self.children_at_signal = [pid for pid in self.lease_children() if psutil.pid_exists(pid)]
        signalled = time.monotonic()
        process.send_signal(signum or signal.SIGKILL)
        process.wait(timeout=120)
        self.stopped_after = time.monotonic() - signalled

    # -- what is stored and served ---------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows of every raw, staging, intermediate and mart table, and of the live publication."""
        with duckdb.connect(str(self.settings.resolved_duckdb_path), read_only=True) as conn:
            tables = conn.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_schema in ('raw', 'staging', 'intermediate', 'marts') order by 1, 2"
            ).fetchall()
            found = {f"{s}.{t}": conn.execute(f"select count(*) from {s}.{t}").fetchone()[0] for s, t in tables}
            model_version, pid = self.live(conn)
            for table in ("user_recommendations", "published_tracks", "published_artists"):
                found[f"ml.{table} (live)"] = conn.execute(
                    f"select count(*) from ml.{table} where publication_id = ?", [pid]
                ).fetchone()[0]
            found["ml.similar_tracks (live)"] = conn.execute(
                "select count(*) from ml.similar_tracks where model_version = ?", [model_version]
            ).fetchone()[0]
        return found

    def live(self, conn=None) -> tuple[str, str]:
        """(model_version, publication_id) that ml.model_registry names live."""
        own = conn is None
        conn = conn or duckdb.connect(str(self.settings.resolved_duckdb_path), read_only=True)
        try:
            row = conn.execute(
                "select model_version, publication_id from ml.model_registry where status = 'published' "
                "and publication_id is not null order by published_at desc limit 1"
            ).fetchone()
        finally:
            if own:
                conn.close()
        assert row is not None, "nothing is published"
        return row[0], row[1]

    def served(self) -> tuple[str | None, str | None]:
        """What a freshly started service serves: (model_version, publication_id)."""
        service = RecommendationService(self.settings, ServingConfig(reload_seconds=0))
        outcome = service.reload()
        assert outcome.error is None, outcome.error
        snapshot = service.snapshot
        status, health = service.health()
        assert status == 200 and json.loads(health)["status"] == "ok", health
        return snapshot.model_version, snapshot.publication_id

    def assert_serves_a_published_version(self) -> tuple[str, str]:
        served = self.served()
        assert served == self.live(), f"the service serves {served}, the registry names {self.live()}"
        assert ModelRegistry(self.settings.models_dir).get(served[0]).status == "published"
        return served

    def assert_no_duplicates(self) -> None:
        with duckdb.connect(str(self.settings.resolved_duckdb_path), read_only=True) as conn:
            keys = {f"raw.{t.name}": t.key for t in RAW_TABLES.values() if t.key}
            keys |= {
                "marts.fct_listens": ("listen_id",),
                "marts.dim_tracks": ("track_id",),
                "marts.dim_users": ("user_id",),
                "marts.user_track_interactions": ("user_id", "track_id"),
                "ml.user_recommendations": ("publication_id", "user_id", "rank"),
                "ml.published_tracks": ("publication_id", "track_id"),
            }
            existing = {
                f"{s}.{t}"
                for s, t in conn.execute("select table_schema, table_name from information_schema.tables").fetchall()
            }
            for table, key in keys.items():
                if table not in existing:
                    continue
                columns = ", ".join(key)
                total, distinct = conn.execute(
                    f"select count(*), (select count(*) from (select distinct {columns} from {table})) from {table}"
                ).fetchone()
                assert total == distinct, f"{table}: {total - distinct} duplicated ({columns})"

    def assert_nothing_left_behind(self) -> None:
        assert di.unfinished_runs(self.instance) == []
        assert di.pool_holdings(self.instance) == []
        assert list(leases_dir(self.home).glob("*.lease")) == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _output(process: subprocess.Popen) -> str:
    process.log.seek(0)  # type: ignore[attr-defined]
    return process.log.read().decode(errors="replace")[-6000:]  # type: ignore[attr-defined]


def test_sigkill_at_every_stage_then_the_next_run_matches_a_clean_run(tmp_path):
    world = World(tmp_path)
    days = demo_days(3)

    # 1. the clean run
    world.complete(DEMO, world.env)
    baseline = world.counts()
    live_before = world.assert_serves_a_published_version()
    assert baseline["raw.lastfm_scrobbles"] > 0 and baseline["ml.user_recommendations (live)"] > 0

    # 2a. SIGKILL while the model trains (dagster asset materialize on the same DAGSTER_HOME)
    ml = world.start(ML_RUN, world.ml_env)
    world.kill_when(
        ml,
        lambda: any(s.endswith("lightfm_model") for s in world.steps(dg.DagsterEventType.STEP_START)),
        "training",
        delay=1.0,
    )
    assert world.assert_serves_a_published_version() == live_before

    # 2b. SIGKILL with the new recommendations and similar tracks written, before the pointer switch
    ml = world.start(ML_RUN, world.ml_env)

    def written() -> bool:
        done = world.steps(dg.DagsterEventType.STEP_SUCCESS)
        return any(s.endswith("user_recommendations") for s in done) and any(s.endswith("similar_tracks") for s in done)

    world.kill_when(ml, written, "publication")
    served = world.assert_serves_a_published_version()
    with duckdb.connect(str(world.settings.resolved_duckdb_path), read_only=True) as conn:
        publications = {
            r[0] for r in conn.execute("select distinct publication_id from ml.user_recommendations").fetchall()
        }
    unpublished = publications - {live_before[1]}
    assert unpublished, "the killed run wrote its recommendations"
    if served != live_before:  # the kill came after the switch: then its publication is the published one
        assert served[1] in unpublished

    # 3a. SIGKILL of the demo while it loads the scrobbles
    demo = world.start(DEMO, world.env)
    world.kill_when(
        demo,
        lambda: any(s.endswith("lastfm_scrobbles") for s in world.steps(dg.DagsterEventType.STEP_START)),
        "the raw load",
        delay=0.5,
    )

    # 3b. SIGTERM (docker stop, systemd) in the middle of dbt: the demo stops dbt and itself at once
    demo = world.start(DEMO, world.env)
    world.kill_when(demo, world.lease_children, "dbt", delay=2.0, signum=signal.SIGTERM)
    stopped = _output(demo)
    assert demo.returncode == 128 + signal.SIGTERM, stopped
    assert world.stopped_after < 20, "the demo must stop promptly"
    assert "demo interrupted: SIGTERM received" in stopped and "Traceback" not in stopped
    assert world.children_at_signal, "dbt was running"
    assert not [pid for pid in world.children_at_signal if _running(pid)], "dbt must be stopped with the demo"
    [cancelled] = [r.dagster_run for r in world.instance.get_run_records() if r.dagster_run.status == CANCELED]
    assert cancelled.run_id not in {h.run_id for h in di.pool_holdings(world.instance)}

    # 3c. SIGKILL of the demo in the middle of dbt: its dbt process survives it
    demo = world.start(DEMO, world.env)
    world.kill_when(demo, world.lease_children, "dbt", delay=3.0)
    orphans = world.children_at_signal

    # 4. the next demo completes unattended, with the clean run's rows
    out = world.complete(DEMO, world.env)
    assert "recovered from an earlier crash" in out
    if demo_days(3) != days:
        pytest.skip("the UTC day changed during the test: the demo's days moved, counts cannot be compared")
    assert not [pid for pid in orphans if _running(pid)], "the dead demo's dbt must be stopped"
    assert world.counts() == baseline
    world.assert_no_duplicates()
    live_after = world.assert_serves_a_published_version()
    # Training data, configuration and code unchanged since the live model: it is reused, not
    # retrained (defs/ml/training_reuse.py), and stays live. Otherwise the last demo's model is
    # published only when the gate finds it clearly better than the live one; else it stays a
    # candidate and the live model keeps serving (its recommendations refreshed on the new data,
    # as a new publication of the same version).
    newest = max(ModelRegistry(world.settings.models_dir).list_versions(), key=lambda v: v.created_at)
    if newest.version == live_before[0]:
        assert newest.status == "published" and live_after[0] == live_before[0]
    elif newest.status == "published":
        assert live_after[0] == newest.version and live_after[0] != live_before[0]
    else:
        assert newest.status == "candidate" and live_after[0] == live_before[0]
    world.assert_nothing_left_behind()
    statuses = [r.dagster_run.status for r in world.instance.get_run_records()]
    assert statuses.count(dg.DagsterRunStatus.FAILURE) == 4  # the four runs killed with SIGKILL
    assert statuses.count(CANCELED) == 1  # the one stopped with SIGTERM
