"""Dead runs never block (issue 14): real run processes killed with SIGKILL, SIGTERM and SIGINT.

Each test uses a private DAGSTER_HOME with the local instance settings (deploy/dagster.local.yaml:
the ``warehouse`` pool holds one step at a time) and the jobs of ``run_workloads.py``: a step
that holds the pool and a child process until killed, and a quick step of the same pool.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from music_platform.defs.automation.run_recovery import dead_run_recovery_sensor
from music_platform.runs import dagster_instance as di
from music_platform.runs.leases import leases_dir
from music_platform.runs.recovery import recover_dead_runs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = "music_platform_tests.run_workloads"


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _dagster_job(home: Path, job: str) -> subprocess.Popen:
    """`dagster job execute`: the job runs through its executor, as `dagster asset materialize` does."""
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", WORKLOADS, "-j", job],
        env=_env(home),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _guarded(home: Path, job: str) -> subprocess.Popen:
    """The job executed in-process under RunGuard, as `music-platform demo` executes its stages."""
    return subprocess.Popen(
        [sys.executable, "-m", WORKLOADS, job],
        env=_env(home),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, what: str, timeout: float = 120.0, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before {what}:\n{process.stdout.read()}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _claims(instance: dg.DagsterInstance) -> dict[str, tuple[str, ...]]:
    return {h.run_id: h.claimed for h in di.pool_holdings(instance) if h.claimed}


def _queued(instance: dg.DagsterInstance) -> dict[str, tuple[str, ...]]:
    return {h.run_id: h.queued for h in di.pool_holdings(instance) if h.queued}


def _status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _lease_children(home: Path, run_id: str) -> list[int]:
    import json

    path = leases_dir(home) / f"{run_id}.lease"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [entry["child"]["pid"] for entry in lines if "child" in entry]


def _finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def test_dagster_instance_adapter_contract_and_a_killed_run_never_blocks_the_next(dagster_home):
    """SIGKILL a `dagster job execute` run holding the warehouse pool; the next run completes.

    Also the contract of the adapter (music_platform/runs/dagster_instance.py) on dagster's real
    storage: the dead run is unfinished, its RUN_START names its process, it holds the pool.
    """
    instance = dg.DagsterInstance.get()
    holder = _dagster_job(dagster_home, "leased_holder")
    try:
        claims = _wait_for(lambda: _claims(instance), "the holder to claim the warehouse slot", process=holder)
        [run_id] = claims
        assert claims[run_id] == ("warehouse:hold_the_pool",)
        [child] = _wait_for(lambda: _lease_children(dagster_home, run_id), "the child process in the lease")
    finally:
        holder.kill()
        holder.wait()
    assert psutil.pid_exists(child), "the child outlives its killed parent (as dbt does)"

    # the adapter's view of the dead run
    assert run_id in {r.run_id for r in di.unfinished_runs(instance)}
    pid, started_at = di.run_start(instance, run_id)
    assert pid == holder.pid and started_at <= time.time()
    assert di.storage_is_single_host(instance)
    assert di.storage_root(instance) == dagster_home
    assert di.statuses(instance, [run_id]) == {run_id: dg.DagsterRunStatus.STARTED}

    # The next run of the same pool recovers the dead one before it claims a slot.
    started = time.monotonic()
    code, out = _finish(_dagster_job(dagster_home, "leased_user"), timeout=240)
    assert code == 0, out
    [next_run] = instance.get_run_records(dg.RunsFilter(job_name="leased_user"), limit=1)
    assert next_run.dagster_run.status == dg.DagsterRunStatus.SUCCESS, out
    assert time.monotonic() - started < 240
    assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
    assert "is gone" in next(iter(instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE))).message
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert _claims(instance) == {} and _queued(instance) == {}
    assert list(leases_dir(dagster_home).glob("*.lease")) == []


def test_a_run_without_a_lease_is_recovered_from_its_dead_process_by_the_sensor(dagster_home):
    """Runs of an older version (no lease) on the local SQLite instance: judged by their RUN_START pid."""
    instance = dg.DagsterInstance.get()
    holder = _dagster_job(dagster_home, "unleased_holder")
    try:
        [run_id] = _wait_for(lambda: _claims(instance), "the holder to claim the warehouse slot", process=holder)
        assert recover_dead_runs(instance).failed_runs == []  # alive: never touched
        assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED
    finally:
        holder.kill()
        holder.wait()
    with dg.build_sensor_context(instance=instance) as context:
        skip = dead_run_recovery_sensor(context)
    assert isinstance(skip, dg.SkipReason) and "marked 1 dead run(s) failed" in skip.skip_message
    assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
    assert _claims(instance) == {} and _queued(instance) == {}


def test_sigterm_stops_a_guarded_run_at_once_and_releases_everything(dagster_home):
    instance = dg.DagsterInstance.get()
    guarded = _guarded(dagster_home, "leased_holder")
    try:
        [run_id] = _wait_for(lambda: _claims(instance), "the guarded run to claim the slot", process=guarded)
        [child] = _wait_for(lambda: _lease_children(dagster_home, run_id), "the child process in the lease")
        sent = time.monotonic()
        guarded.send_signal(signal.SIGTERM)
        code, out = _finish(guarded, timeout=60)
    finally:
        guarded.kill()
    assert code == 128 + signal.SIGTERM, out
    assert time.monotonic() - sent < 15, "the run must stop promptly"
    assert "SIGTERM received" in out
    assert _status(instance, run_id) == dg.DagsterRunStatus.CANCELED
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert _claims(instance) == {} and _queued(instance) == {}
    assert list(leases_dir(dagster_home).glob("*.lease")) == []


def test_sigint_stops_a_run_waiting_for_the_pool(dagster_home):
    """The hang measured in issue 14: a step waiting on the warehouse pool ignored Ctrl-C."""
    instance = dg.DagsterInstance.get()
    holder = _dagster_job(dagster_home, "leased_holder")
    waiter = None
    try:
        [holder_run] = _wait_for(lambda: _claims(instance), "the holder to claim the slot", process=holder)
        waiter = _guarded(dagster_home, "leased_user")
        [waiter_run] = _wait_for(lambda: _queued(instance).keys() - {holder_run}, "the waiter to queue", process=waiter)
        sent = time.monotonic()
        waiter.send_signal(signal.SIGINT)
        code, out = _finish(waiter, timeout=60)
        assert code == 128 + signal.SIGINT, out
        assert time.monotonic() - sent < 15
        assert _status(instance, waiter_run) == dg.DagsterRunStatus.CANCELED
        assert waiter_run not in _queued(instance)
        assert _status(instance, holder_run) == dg.DagsterRunStatus.STARTED  # a live run is never touched
        assert holder_run in _claims(instance)
    finally:
        holder.kill()
        holder.wait()
        if waiter is not None:
            waiter.kill()


def test_what_the_abandoned_run_thread_cannot_raise_after_a_signal_goes_to_the_log(monkeypatch, caplog):
    """After SIGTERM the run's thread is left to unwind while the process stops; a library
    generator closed mid-step then reports "generator ignored GeneratorExit" as an unraisable
    exception, which must not print a traceback under the demo's one-line message."""
    import logging
    import threading

    from music_platform.runs.guard import Interrupted, run_interruptibly

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test
    release = threading.Event()

    def run() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        release.wait(10)

    with pytest.raises(Interrupted):
        run_interruptibly(run, lambda signum: None)

    def closed_mid_step():
        try:
            yield 1
        finally:
            yield 2  # what a generator that ignores GeneratorExit does

    with caplog.at_level(logging.DEBUG, logger="music_platform.runs.guard"):
        generator = closed_mid_step()
        next(generator)
        del generator  # closing it raises RuntimeError, which Python reports as unraisable
    release.set()
    assert "while stopping after a signal" in caplog.text
    assert "generator ignored GeneratorExit" in caplog.text
