"""Keeps the SQLite files of a local Dagster instance open while ``music-platform demo`` runs.

A local instance (``make demo``, ``make dev``: SQLite under DAGSTER_HOME) stores each event by
opening a database connection, committing and closing it, several times per event (the run's
own file, then the cross-run index, then the run storage). Its files are in WAL mode, and SQLite
ends WAL mode when the *last* connection to a file closes: it checkpoints the log into the
database (two fsyncs), deletes the ``-wal`` and ``-shm`` files and syncs the directory. With no
other connection open, every one of Dagster's commits paid that: in a test run of 130 events,
1,680 fdatasync and 712 unlink calls (``strace -f -c``), 13 fsyncs per event.

:class:`SqliteKeeper` holds one idle connection to each of those files while the demo runs, so
no Dagster connection is the last one: the log stays, commits append to it (one fsync each), and
SQLite checkpoints it when it grows (``wal_autocheckpoint``). Nothing is written through these
connections and they hold no lock between statements (autocommit, one read when opened). They
change nothing that a crash could break: a killed demo leaves a ``-wal`` file that the next
connection to the file replays, as SQLite always does; `make dev` and other processes share the
files as before.

With the log kept, what a commit still costs is its fsync: SQLite's default, ``synchronous=FULL``,
syncs the log on every commit (in a profile of the demo's second run with the files kept, 6.6 s
of the 10.3 s the transform run spent writing its 328 "planned" events were that commit). While
the keeper is open, every connection Dagster opens *in this process* to one of the instance's
files gets ``PRAGMA synchronous=NORMAL`` (through SQLAlchemy's public ``connect`` event: Dagster's
SQLite storage connects through SQLAlchemy): in WAL mode, commits are then written to the log
without a sync, and the log is synced when it is checkpointed. SQLite documents what this keeps:
the database stays consistent whatever happens, and a commit survives the process being killed
(SIGKILL, the crash suite); only a power loss or an OS crash can roll back the last commits, which
the next demo treats like any run a crash left unfinished. Other processes (``make dev``, the
daemon) keep their own settings.

Which files: the instance's run storage (``history/runs.db``), the event log's cross-run index
(``history/runs/index.db``), the schedule storage (``schedules/schedules.db``) and each run's
event log (``history/runs/<run_id>.db``), the layout of dagster 1.13's default SQLite storage
under DAGSTER_HOME. A file that is not there (PostgreSQL storage, an ephemeral instance, another
layout) is simply not kept: the demo then runs as it did without the keeper.
``music_platform_tests/test_sqlite_keeper.py`` checks the layout and the effect.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

# Where dagster 1.13's default SQLite storage keeps its files, relative to DAGSTER_HOME.
INSTANCE_FILES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
RUN_FILE = "history/runs/{run_id}.db"
# A run's file appears when its first event is stored: how often to look for it meanwhile.
WATCH_SECONDS = 0.05


def wal_in_use(path: Path) -> bool:
    """A connection has the database ``path`` open in WAL mode: its ``-wal`` file exists.

    Only ``stat``: the file itself is never opened outside SQLite. Closing a descriptor of a file
    drops every POSIX lock this process holds on it, the locks of Dagster's open connections
    included (SQLite's own connections share their descriptors and are safe); a first version read
    the file's header and so broke a run's commit ("disk I/O error"). A run's file is created
    empty and switched to WAL mode by Dagster just after: the keeper waits for the log, so it is
    never connected while that switch happens."""
    return Path(f"{path}-wal").exists()


def open_if_wal(path: Path) -> sqlite3.Connection | None:
    """An idle SQLite connection to ``path`` when it is a database in WAL mode, else None."""
    if not path.exists():  # sqlite3.connect would create it
        return None
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        # Reading opens the file's WAL index (-shm): from then on this connection counts.
        connection.execute("select count(*) from sqlite_master").fetchone()
        wal = connection.execute("pragma journal_mode").fetchone()[0] == "wal"
    except sqlite3.Error:
        wal = False
    if not wal:
        connection.close()
        return None
    return connection


class SqliteKeeper:
    """One idle connection per SQLite file of a local instance; see the module docstring.

    ``keep_instance_files()`` once, ``keep_run(run_id)`` before each run executes (a thread waits
    for the run's file), ``close()`` at the end (or use it as a context manager).
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._connections: dict[Path, sqlite3.Connection] = {}
        self._pending: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SqliteKeeper:
        self.keep_instance_files()
        if self.root is not None:
            event.listen(Engine, "connect", self._on_connect)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def kept(self) -> list[Path]:
        with self._lock:
            return sorted(self._connections)

    def keep_instance_files(self) -> None:
        if self.root is None:
            return
        for relative in INSTANCE_FILES:
            self._keep(self.root / relative)

    def keep_run(self, run_id: str) -> None:
        """Keep the run's event log file open as soon as it exists (it does once the run is created)."""
        if self.root is None:
            return
        path = self.root / RUN_FILE.format(run_id=run_id)
        if wal_in_use(path) and self._keep(path):
            return
        with self._lock:
            self._pending.add(path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="music-platform-sqlite-keeper", daemon=True)
                self._thread.start()

    def close(self) -> None:
        if event.contains(Engine, "connect", self._on_connect):
            event.remove(Engine, "connect", self._on_connect)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            self._pending.clear()
        for connection in connections:
            # The last connection to a file checkpoints it and removes its -wal and -shm files.
            connection.close()

    def _keep(self, path: Path) -> bool:
        with self._lock:
            if path in self._connections or self._stop.is_set():
                return True
        connection = open_if_wal(path)
        if connection is None:
            return False
        with self._lock:
            if path in self._connections or self._stop.is_set():
                connection.close()
            else:
                self._connections[path] = connection
                self._pending.discard(path)
        return True

    def _on_connect(self, dbapi_connection, _record) -> None:
        """``synchronous=NORMAL`` on a new SQLite connection to one of the instance's files."""
        if not isinstance(dbapi_connection, sqlite3.Connection) or self.root is None:
            return
        files = [row[2] for row in dbapi_connection.execute("pragma database_list").fetchall() if row[1] == "main"]
        root = os.path.realpath(self.root) + os.sep
        if files and files[0] and os.path.realpath(files[0]).startswith(root):
            dbapi_connection.execute("pragma synchronous=NORMAL")

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            with self._lock:
                pending = list(self._pending)
            for path in pending:
                if wal_in_use(path):
                    self._keep(path)
