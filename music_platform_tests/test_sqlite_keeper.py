"""The demo keeps the local instance's SQLite files open while its runs write events
(music_platform/runs/sqlite_keeper.py): Dagster's commits then append to each file's WAL
instead of ending WAL mode on every close. These tests pin the file layout it relies on
(dagster 1.13's SQLite storage under DAGSTER_HOME) and the effect."""

import sqlite3
import uuid
from pathlib import Path

import dagster as dg

from music_platform.runs.sqlite_keeper import INSTANCE_FILES, RUN_FILE, SqliteKeeper, open_if_wal, wal_in_use

RANGE = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-20"}


@dg.asset(partitions_def=dg.DailyPartitionsDefinition("2026-01-01"), backfill_policy=dg.BackfillPolicy.single_run())
def days(context: dg.AssetExecutionContext) -> None:
    context.log.info(f"{len(context.partition_keys)} days")


@dg.asset_check(asset=days)
def days_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


JOB = dg.Definitions(assets=[days], asset_checks=[days_check]).resolve_implicit_global_asset_job_def()


def _instance(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.ExecuteInProcessResult:
    return JOB.execute_in_process(instance=instance, tags=RANGE, run_id=run_id)


def test_only_databases_in_wal_mode_are_kept_and_none_is_created(tmp_path):
    wal, journal = tmp_path / "wal.db", tmp_path / "journal.db"
    writer = sqlite3.connect(wal)
    writer.execute("pragma journal_mode=wal")
    writer.execute("create table t (x)")
    writer.commit()
    with sqlite3.connect(journal) as connection:
        connection.execute("create table t (x)")
    connection.close()
    (tmp_path / "text.db").write_text("not a database, not at all")
    assert wal_in_use(wal) and not wal_in_use(journal)  # the open writer keeps the log
    kept = open_if_wal(wal)
    assert kept is not None
    kept.close()
    assert open_if_wal(journal) is None
    assert open_if_wal(tmp_path / "text.db") is None
    assert open_if_wal(tmp_path / "missing.db") is None and not (tmp_path / "missing.db").exists()
    writer.close()


def test_the_keeper_opens_the_files_through_sqlite_only_and_leaves_a_writer_whole(tmp_path, monkeypatch):
    """A descriptor of the file opened and closed outside SQLite drops every POSIX lock the process
    holds on it, those of Dagster's open connections too (a first version read the header that way,
    and a run's commit in the crash suite failed with "disk I/O error"). The keeper only stats the
    files and connects through SQLite; a transaction of a writer in this process stays whole."""
    import builtins

    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        assert not str(file).endswith(".db"), f"{file} opened outside SQLite"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    path = tmp_path / "run.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("pragma journal_mode=wal")
    writer.execute("create table t (x)")
    with SqliteKeeper(tmp_path) as keeper:
        writer.execute("begin immediate")
        writer.execute("insert into t values (1)")
        assert keeper._keep(path)  # kept while the writer holds its lock
        writer.execute("insert into t values (2)")
        writer.execute("commit")
        assert keeper.kept == [path]
        other = sqlite3.connect(path, timeout=0)
        assert other.execute("select count(*) from t").fetchone() == (2,)
        other.close()
    writer.close()


def test_a_local_instance_has_the_files_the_keeper_keeps_and_each_close_ends_wal_mode(tmp_path):
    """Without the keeper: every connection Dagster closes is the last one, so after a run no
    ``-wal`` file is left (each commit checkpointed and deleted it). This is the cost the keeper
    removes; if a Dagster upgrade changes the layout or the journal mode, this test says so."""
    instance = _instance(tmp_path / "home")
    run_id = str(uuid.uuid4())
    assert _run(instance, run_id).success
    root = Path(instance.root_directory)
    for relative in (*INSTANCE_FILES, RUN_FILE.format(run_id=run_id)):
        assert not wal_in_use(root / relative), relative  # the last close ended WAL mode
        connection = open_if_wal(root / relative)  # the file itself stays in WAL mode
        assert connection is not None, relative
        connection.close()


def test_kept_files_keep_their_log_between_commits_and_the_run_reads_back_whole(tmp_path):
    instance = _instance(tmp_path / "home")
    root = Path(instance.root_directory)
    run_id = str(uuid.uuid4())
    with SqliteKeeper(root) as keeper:
        keeper.keep_run(run_id)
        result = _run(instance, run_id)
        assert result.success
        kept = {path.relative_to(root).as_posix() for path in keeper.kept}
        assert kept == {*INSTANCE_FILES, RUN_FILE.format(run_id=run_id)}
        # WAL mode stays on between Dagster's connections: the log is still there.
        assert (root / "history/runs/index.db-wal").exists()
        assert (root / f"{RUN_FILE.format(run_id=run_id)}-wal").exists()
        # What was committed is there for any reader (the progress display, make dev) meanwhile.
        materialized = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        assert len(materialized.records) == 20
        assert [e.passed for e in result.get_asset_check_evaluations()] == [True]
    # The keeper's connections were the last: closing them checkpointed and removed the logs.
    assert not (root / "history/runs/index.db-wal").exists()
    assert not (root / f"{RUN_FILE.format(run_id=run_id)}-wal").exists()
    reopened = dg.DagsterInstance.from_config(str(root))
    assert reopened.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    assert len(reopened.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records) == 20


def test_a_run_file_that_never_appears_and_an_instance_without_files_keep_nothing(tmp_path):
    with SqliteKeeper(None) as keeper:  # an ephemeral instance
        keeper.keep_run(str(uuid.uuid4()))
        assert keeper.kept == []
    with SqliteKeeper(tmp_path) as keeper:  # no SQLite storage here (e.g. PostgreSQL)
        keeper.keep_run(str(uuid.uuid4()))
        assert keeper.kept == []


def test_a_log_left_by_a_killed_process_is_replayed_by_the_next(tmp_path):
    """A SIGKILLed demo never closes its connections: its ``-wal`` files stay. The committed
    events in them are read by the next process, as SQLite always does."""
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    _instance(home)
    run_id = str(uuid.uuid4())
    script = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
import dagster as dg
from music_platform_tests.test_sqlite_keeper import JOB, RANGE
from music_platform.runs.sqlite_keeper import SqliteKeeper
instance = dg.DagsterInstance.from_config({str(home)!r})
keeper = SqliteKeeper(Path(instance.root_directory))
keeper.keep_instance_files()
keeper.keep_run({run_id!r})
assert JOB.execute_in_process(instance=instance, tags=RANGE, run_id={run_id!r}).success
os.kill(os.getpid(), signal.SIGKILL)
"""
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert (home / "history/runs/index.db-wal").exists()
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    assert len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records) == 20


def test_connections_to_the_instance_files_commit_without_a_sync_while_kept(tmp_path):
    """``synchronous=NORMAL`` (1) on SQLAlchemy connections to the instance's files, in this
    process, while the keeper is open; other files, and every file afterwards, keep FULL (2)."""
    import sqlalchemy

    root, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()

    def synchronous(path: Path) -> int:
        engine = sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            value = connection.execute(sqlalchemy.text("pragma synchronous")).scalar()
        engine.dispose()
        return value

    assert synchronous(root / "history.db") == 2
    with SqliteKeeper(root):
        assert synchronous(root / "history.db") == 1
        assert synchronous(elsewhere / "other.db") == 2
    assert synchronous(root / "history.db") == 2
