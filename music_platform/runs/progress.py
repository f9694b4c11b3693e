"""Progress for people while in-process runs execute (``music-platform demo``).

Two promises (issue 16): the console is never silent for more than a few seconds, and it shows
no dbt log lines.

- A heartbeat thread follows the current phase (loading definitions, a stage's run, the summary).
  On a terminal it keeps one live status line (spinner, phase, elapsed time, current step and dbt
  node); when the output is piped (``make demo > log``) it prints a plain line whenever nothing
  was printed for ``HEARTBEAT_SECONDS``. A finished step and a finished stage get a line each.
- The current step comes from the run's event log (the records Dagster writes for the run the
  stage executes), read through :func:`run_records` -- the one place this module depends on the
  instance's record API (``music_platform_tests/test_demo_output.py`` holds its contract).
- dagster-dbt re-prints every dbt event on ``sys.stdout`` (``DbtCliInvocation.stream_raw_events``;
  the same events reach Dagster as materialisations and check results). While a stage runs,
  ``sys.stdout`` is a :class:`TimestampedLog` on ``<data dir>/logs/dbt.log``; the console keeps
  the real stdout it was created with. The last dbt line read there names the node dbt is on.

Pure presentation: nothing here changes what a run does.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner

# Piped output gets a line at least this often; the promise is 5 s, the margin covers a loaded
# machine that schedules the heartbeat thread late.
HEARTBEAT_SECONDS = 2.5
POLL_SECONDS = 0.5
DBT_LOG_NAME = "dbt.log"
# "14 of 60 START sql table model marts.dim_users ....... [RUN]"
_DBT_NODE = re.compile(r"(\d+) of (\d+) (START|OK|PASS|WARN|ERROR|FAIL|SKIP)\w* (?:[\w ]*?)([\w.:]+)\s*\.*\s*\[")


def run_records(instance, run_id: str, cursor: str | None):
    """(records, cursor) of the run's event log after ``cursor``: step and asset events.

    ``DagsterInstance.get_records_for_run`` (dagster 1.13, capped in pyproject.toml); its
    contract -- records in order, a cursor to resume from -- is tested by test_demo_output.py.
    """
    from dagster import DagsterEventType

    kinds = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    connection = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds)
    return connection.records, connection.cursor


class TimestampedLog(io.TextIOBase):
    """A text stream that appends each complete line, with the time, to a log file.

    Stands in for ``sys.stdout`` while runs execute; remembers the last line written (for the
    heartbeat). Thread-safe: dbt's lines come from the run's worker thread.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._partial = ""
        self._lock = threading.Lock()
        self.last_line = ""
        self.lines = 0

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            *complete, self._partial = (self._partial + text).split("\n")
            for line in complete:
                stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
                self._file.write(f"{stamp} {line}\n")
                if line.strip():
                    self.last_line = line.strip()
                    self.lines += 1
            if complete:
                self._file.flush()
        return len(text)

    def note(self, text: str) -> None:
        """A line of our own (which stage and run the following lines belong to); not dbt's."""
        last_line, lines = self.last_line, self.lines
        self.write(text + "\n")
        self.last_line, self.lines = last_line, lines

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._partial:
                self._file.write(self._partial + "\n")
                self._partial = ""
            self._file.close()
        super().close()


def dbt_node(line: str) -> str | None:
    """``"dbt 14/60 marts.dim_users"`` from a dbt progress line, else None."""
    match = _DBT_NODE.search(line)
    if not match:
        return None
    index, total, _, node = match.groups()
    return f"dbt {index}/{total} {node}"


@dataclass
class _Phase:
    name: str
    started: float
    run_id: str | None = None
    cursor: str | None = None
    step: str | None = None
    steps_started: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0
    assets: int = 0
    checks: int = 0


class DemoProgress:
    """Phases with a heartbeat; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        console: Console,
        dbt_log_path: Path,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.console = console
        self.interactive = console.is_terminal
        self.dbt_log_path = dbt_log_path
        self.heartbeat_seconds = heartbeat_seconds
        self.instance = None
        self._phase: _Phase | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_output = time.monotonic()
        self._live: Live | None = None
        self._spinner = Spinner("dots", text="")
        self._log: TimestampedLog | None = None
        self._child: _HeartbeatProcess | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> DemoProgress:
        if self.interactive:
            # stdout stays ours: dbt's lines must go to the log file, not above the live line.
            self._live = Live(
                self._spinner,
                console=self.console,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        else:
            self._child = _HeartbeatProcess.start(self.console.file, self.heartbeat_seconds)
        # Two threads: a slow read of the event log (SQLite busy) never delays a heartbeat.
        self._threads = [
            threading.Thread(target=self._beat, name="music-platform-heartbeat", daemon=True),
            threading.Thread(target=self._follow, name="music-platform-run-events", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._child is not None:
            self._child.stop()
        if self._live is not None:
            self._live.stop()
        if self._log is not None:
            self._log.close()

    def print(self, *objects, **kwargs) -> None:
        """A line of output above the status line (and a reset of the heartbeat's clock)."""
        with self._lock:
            self.console.print(*objects, **kwargs)
            self._last_output = time.monotonic()
            if self._child is not None:
                self._child.printed(self._last_output)

    # -- phases ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A phase of work outside any run (loading definitions, the summary)."""
        with self._lock:
            self._phase = _Phase(name, time.monotonic())
        self._render()
        try:
            yield
        finally:
            with self._lock:
                self._phase = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A stage that executes runs: stdout goes to the dbt log while it lasts."""
        if self._log is None:
            self._log = TimestampedLog(self.dbt_log_path)
        self._log.note(f"==== {datetime.now(UTC).isoformat(timespec='seconds')} stage: {name}")
        self._log.last_line = ""
        self.print(f"[bold]▶ {name}[/]")
        with self.phase(name), contextlib.redirect_stdout(self._log):
            yield

    def watch_run(self, run_id: str) -> None:
        """The current phase executes this run: follow its steps."""
        with self._lock:
            if self._phase is not None:
                self._phase.run_id = run_id
        if self._log is not None:
            self._log.note(f"---- run {run_id}")

    def stage_done(self, name: str, success: bool, seconds: float) -> None:
        verdict = "[green]ok[/]" if success else "[red]FAILED[/]"
        self.print(f"[bold]■ {name}[/] {verdict} in {seconds:.1f}s")

    # -- the heartbeat ---------------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._follow_run()
            except Exception:  # noqa: BLE001 - progress must never break a run
                pass

    def _beat(self) -> None:
        while not self._stop.wait(POLL_SECONDS / 2):
            self._render()
            if self._child is not None:  # the heartbeat process prints; it needs the status
                with self._lock:
                    self._child.status(self._status_parts())
                continue
            with self._lock:
                silent = time.monotonic() - self._last_output
                due = not self.interactive and self._phase is not None and silent >= self.heartbeat_seconds
            if due:
                self.print(f"  … {self.status_text()}", highlight=False)

    def _follow_run(self) -> None:
        from dagster import DagsterEventType

        with self._lock:
            phase = self._phase
            if phase is None or phase.run_id is None or self.instance is None:
                return
            run_id, cursor = phase.run_id, phase.cursor
        records, cursor = run_records(self.instance, run_id, cursor)
        lines = []
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            kind, step = event.event_type, event.step_key
            if kind == DagsterEventType.STEP_START and step:
                phase.steps_started[step] = record.event_log_entry.timestamp
                phase.step = step
            elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and step:
                phase.steps_done += 1
                at = record.event_log_entry.timestamp
                took = at - phase.steps_started.get(step, at)
                ok = kind == DagsterEventType.STEP_SUCCESS
                lines.append(f"  {'[green]✓[/]' if ok else '[red]✗[/]'} {step} {took:.1f}s")
                if phase.step == step:
                    phase.step = None
            elif kind == DagsterEventType.ASSET_MATERIALIZATION:
                phase.assets += 1
            elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
                phase.checks += 1
        with self._lock:
            if self._phase is phase:
                phase.cursor = cursor
        for line in lines:
            self.print(line, highlight=False)

    def status_text(self) -> str:
        parts = self._status_parts()
        return "" if parts is None else _status_line(*parts, time.monotonic())

    def _status_parts(self) -> tuple[str, float, list[str]] | None:
        """(phase, its start on the monotonic clock, what is known of its progress)."""
        with self._lock:
            phase = self._phase
            if phase is None:
                return None
            parts: list[str] = []
            if phase.step:
                parts.append(f"step {phase.step}")
            if phase.assets or phase.checks:
                parts.append(f"{phase.assets} asset(s), {phase.checks} check(s) done")
            node = dbt_node(self._log.last_line) if self._log is not None and phase.run_id else None
            if node:
                parts.append(node)
        return phase.name, phase.started, parts

    def _render(self) -> None:
        if self._live is not None:
            self._spinner.update(text=self.status_text())


def _status_line(name: str, started: float, parts: list[str], now: float) -> str:
    return " · ".join([f"{name} {now - started:.0f}s", *parts])


class _HeartbeatProcess:
    """The piped heartbeat, printed by a small child process.

    A thread of the demo cannot print while a C extension holds the GIL: scipy's LAPACK calls in
    model training do, for 10-25 s at the default size on a loaded machine. The child knows the
    current phase and when the demo last printed (the monotonic clock is shared by processes) and
    writes the heartbeat line itself, with the elapsed time, to the same stdout.
    """

    def __init__(self, process, connection) -> None:
        self._process = process
        self._connection = connection
        self._sent: object = None

    @classmethod
    def start(cls, stream, heartbeat_seconds: float) -> _HeartbeatProcess | None:
        import multiprocessing

        try:
            fd = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None  # not a file (a test's buffer): the heartbeat thread prints instead
        # fork: started before Dagster is imported or any thread runs; it needs nothing but this module
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_heartbeat_child, args=(receiver, fd, heartbeat_seconds), name="music-platform-heartbeat"
        )
        process.daemon = True
        process.start()
        receiver.close()
        return cls(process, sender)

    def _send(self, message) -> None:
        try:
            self._connection.send(message)
        except (OSError, ValueError):  # the child is gone: no heartbeat, the demo goes on
            pass

    def printed(self, at: float) -> None:
        self._send(("printed", at))

    def status(self, parts) -> None:
        if parts != self._sent:
            self._sent = parts
            self._send(("status", parts))

    def stop(self) -> None:
        self._send(("stop", None))
        self._connection.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()


def _heartbeat_child(connection, fd: int, heartbeat_seconds: float) -> None:
    status, last_output = None, time.monotonic()
    while True:
        try:
            while connection.poll(0.2):
                kind, value = connection.recv()
                if kind == "stop":
                    return
                if kind == "printed":
                    last_output = max(last_output, value)
                elif kind == "status":
                    status = value
        except (EOFError, OSError):  # the demo is gone
            return
        now = time.monotonic()
        if status is not None and now - last_output >= heartbeat_seconds:
            os.write(fd, f"  … {_status_line(*status, now)}\n".encode())
            last_output = now


def console_for(stream=None, width_when_piped: int = 400) -> Console:
    """The console of the real stdout: a terminal's width, or (piped, a log file) a width large
    enough that tables are never cut (check names shown in full)."""
    stream = stream or sys.stdout
    interactive = stream.isatty()
    return Console(file=stream) if interactive else Console(file=stream, width=width_when_piped)
