"""Find runs whose process died and clean up after them, so that they never block another run.

A run killed with SIGKILL (or by the OOM killer, or a reboot) stays STARTED in the Dagster
instance and keeps its concurrency-pool slot (or its entry at the head of the pool's queue):
every later step of the ``warehouse`` pool then waits forever. ``recover_dead_runs``:

1. takes the lease of every run whose process is gone (see ``leases.py``), stops the child
   processes that run left behind (a dbt build still writing the DuckDB file), marks the run
   failed and releases its pool slots and queue entries;
2. on a single-host instance (SQLite storage: the local ``.dagster_home``), does the same for
   unfinished runs without a lease (runs of an older version, or killed before taking one)
   whose RUN_START process no longer exists;
3. releases the slots and queue entries still held by runs that are already finished.

It never touches a run whose process is alive. It runs before every run this project executes
(``music-platform demo`` and the executor of every job, see ``executor.py``) and every minute
in the ``dead_run_recovery_sensor``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import psutil

from music_platform.runs import dagster_instance as di
from music_platform.runs.leases import SUFFIX, DeadLeases, ProcessRef, leases_dir

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0


@dataclass
class Recovery:
    """What one recovery pass did."""

    failed_runs: list[str] = field(default_factory=list)
    freed_runs: list[str] = field(default_factory=list)
    stopped_processes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed_runs or self.freed_runs or self.stopped_processes)

    def summary(self) -> str:
        parts = []
        if self.failed_runs:
            parts.append(f"marked {len(self.failed_runs)} dead run(s) failed ({', '.join(self.failed_runs)})")
        if self.freed_runs:
            parts.append(f"released the pool slots of {len(self.freed_runs)} run(s)")
        if self.stopped_processes:
            parts.append(
                f"stopped {len(self.stopped_processes)} leftover process(es) ({', '.join(self.stopped_processes)})"
            )
        return "; ".join(parts) if parts else "no dead run"


def stop_processes(processes: tuple[ProcessRef, ...]) -> list[str]:
    """Terminate (then kill) the listed processes that still run on this host; returns their names."""
    alive: list[psutil.Process] = []
    for ref in processes:
        if ref.alive_here():
            try:
                alive.append(psutil.Process(ref.pid))
            except psutil.Error:
                continue
    stopped = []
    for process in alive:
        try:
            stopped.append(f"{process.name()}[{process.pid}]")
            process.terminate()
        except psutil.Error:
            continue
    _, still = psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)
    for process in still:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(still, timeout=STOP_GRACE_SECONDS)
    return stopped


def _started_before(pid: int, moment: float) -> bool:
    """True if process ``pid`` exists and was started before ``moment`` (so it is not a newer
    process that reused the id of a dead one)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= moment + 1.0
    except psutil.Error:
        return False


def _end_run(instance: dg.DagsterInstance, run_id: str, why: str) -> bool:
    """Mark an unfinished run failed (canceled if it was being canceled); False if it had finished."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return False
    message = f"{why}; marked failed by run recovery so that it no longer holds its concurrency-pool slots"
    if run.status == dg.DagsterRunStatus.CANCELING:
        di.report_canceled(instance, run, message)
    else:
        di.report_failed(instance, run, message)
    return True


def recover_dead_runs(instance: dg.DagsterInstance, *, exclude: frozenset[str] = frozenset()) -> Recovery:
    """One recovery pass over ``instance`` (see the module docstring); ``exclude`` are run ids
    the caller executes itself."""
    recovery = Recovery()
    root = di.storage_root(instance)
    if root is None:
        return recovery  # an in-memory instance dies with its process: nothing can be left over
    directory = leases_dir(root)

    with DeadLeases(directory) as dead:
        for lease in dead.found:
            if lease.run_id in exclude:
                continue
            recovery.stopped_processes += stop_processes(lease.children)
            owner = f"pid {lease.owner.pid} on {lease.owner.host}" if lease.owner else "unknown process"
            if _end_run(instance, lease.run_id, f"the process executing this run ({owner}) is gone"):
                recovery.failed_runs.append(lease.run_id)
            di.free_pool_slots(instance, lease.run_id)
            dead.settle(lease)

    if di.storage_is_single_host(instance):
        leased = {p.name[: -len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}")} if directory.is_dir() else set()
        for run in di.unfinished_runs(instance):
            if run.run_id in leased or run.run_id in exclude:
                continue
            start = di.run_start(instance, run.run_id)
            if start is None:
                continue  # not started yet: nothing holds a slot; the daemon's start timeout applies
            pid, started_at = start
            if _started_before(pid, started_at):
                continue
            if _end_run(
                instance, run.run_id, f"the process executing this run (pid {pid} on {socket.gethostname()}) is gone"
            ):
                recovery.failed_runs.append(run.run_id)
            di.free_pool_slots(instance, run.run_id)

    holdings = [h for h in di.pool_holdings(instance) if h.run_id not in exclude]
    statuses = di.statuses(instance, [h.run_id for h in holdings])
    for holding in holdings:
        status = statuses.get(holding.run_id)
        if status is None or status in di.FINISHED:
            di.free_pool_slots(instance, holding.run_id)
            recovery.freed_runs.append(holding.run_id)
    if recovery:
        log.warning("run recovery: %s", recovery.summary())
    return recovery


def report(recovery: Recovery, emit: Callable[[str], None]) -> None:
    """Emit one line about what a recovery pass did (nothing when it did nothing)."""
    if recovery:
        emit(f"recovered from an earlier crash: {recovery.summary()}")
