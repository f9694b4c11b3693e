"""Signals and exits of the command line, kept free of Dagster so that importing them is instant
(``music-platform`` prints its first line before Dagster is imported; ``guard`` re-exports them)."""

from __future__ import annotations

import os
import signal
import sys
import threading


class Interrupted(Exception):
    """The process received SIGINT or SIGTERM; the run was stopped and marked canceled."""

    def __init__(self, signum: int, run_id: str | None) -> None:
        self.signum = signum
        self.run_id = run_id
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: run {run_id} stopped and marked canceled" if run_id else f"{name} received")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def stop_on_sigterm() -> None:
    """SIGTERM behaves as Ctrl-C for the rest of the process: ``KeyboardInterrupt`` unwinds the
    command (``finally`` blocks and context managers run, files are closed) and click ends it
    with "Aborted!", instead of the process vanishing mid-write. Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def exit_now(code: int) -> None:
    """End the process at once (after flushing output), without waiting for an abandoned run thread."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop the exit
            pass
    os._exit(code)
