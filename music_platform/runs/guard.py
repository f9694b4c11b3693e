"""Executing runs in this process (``music-platform demo``): recovery first, a lease per run, and
a prompt, clean stop on SIGINT (Ctrl-C) or SIGTERM.

Dagster's in-process execution defers SIGINT to its own checkpoints, and a step blocked on a
concurrency pool or inside a long dbt build never reaches one: the process used to ignore
both signals. Here the run executes on a worker thread while the main thread waits for it and
owns the signal handlers. On a signal it stops the run's child processes (dbt), marks the run
canceled, releases its pool slots and raises :class:`Interrupted`; the caller then ends the
process with :func:`exit_now` (the worker thread is abandoned mid-step, exactly as a crash
would leave it, which every write of the pipeline is built to survive).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from music_platform.runs import dagster_instance as di
from music_platform.runs.leases import ProcessRef, RunLease, children_of, drop, hold, leases_dir
from music_platform.runs.recovery import Recovery, recover_dead_runs, stop_processes
from music_platform.runs.signals import Interrupted, exit_now, stop_on_sigterm  # noqa: F401 - re-exported

T = TypeVar("T")
log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_interruptibly(fn: Callable[[], T], on_signal: Callable[[int], None]) -> T:
    """``fn()`` on a worker thread; SIGINT/SIGTERM call ``on_signal(signum)`` on the main thread
    and raise :class:`Interrupted` (a second signal ends the process at once). Off the main
    thread signals cannot be handled: ``fn`` runs directly."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    received: list[int] = []

    def handler(signum, _frame) -> None:
        received.append(signum)
        if len(received) > 1:
            exit_now(128 + signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        worker = threading.Thread(target=target, name="music-platform-run", daemon=True)
        worker.start()
        while not done.wait(0.1):
            if received:
                # The abandoned run thread unwinds while the process stops: what it cannot raise
                # (e.g. a library's generator closed mid-step) goes to the log, not the terminal.
                sys.unraisablehook = _log_unraisable
                on_signal(received[0])
                raise Interrupted(received[0], None)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def _log_unraisable(unraisable) -> None:
    log.debug(
        "while stopping after a signal: %s",
        unraisable.err_msg or "exception ignored",
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


class RunGuard:
    """Guards the runs one process executes in-process against crashes and signals.

    ``recover()`` cleans up after dead runs; ``execute(fn)`` picks a run id, holds its lease and
    calls ``fn(run_id)`` interruptibly.
    """

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._root = di.storage_root(instance)

    def recover(self) -> Recovery:
        return recover_dead_runs(self.instance)

    def execute(self, fn: Callable[[str], T]) -> T:
        run_id = str(uuid.uuid4())
        lease = RunLease.acquire(leases_dir(self._root), run_id) if self._root is not None else None
        if lease is not None:
            hold(lease)
        try:
            return run_interruptibly(lambda: fn(run_id), lambda signum: self._stop(run_id))
        except Interrupted as interrupted:
            raise Interrupted(interrupted.signum, run_id) from None
        finally:
            if lease is not None:
                drop(lease)

    def _stop(self, run_id: str) -> None:
        children = tuple(_ref(pid) for pid in children_of(run_id))
        stop_processes(tuple(c for c in children if c is not None))
        run = self.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            di.report_canceled(self.instance, run, "interrupted (SIGINT/SIGTERM): run stopped")
        di.free_pool_slots(self.instance, run_id)


def _ref(pid: int) -> ProcessRef | None:
    try:
        return ProcessRef.of(pid)
    except Exception:  # noqa: BLE001 - the process is already gone
        return None
