"""Run leases: a file per running run, locked by the process that executes it.

A process that executes a run holds an exclusive ``flock`` on ``<leases dir>/<run_id>.lease``
for as long as it runs. The kernel drops the lock when the process dies, however it dies
(SIGKILL, the OOM killer, a reboot), so "the lock can be taken" means "the run's process is
gone" -- with no guess from process ids, clocks or timeouts, and across containers that
share the directory. The file also lists the process's child processes (dbt), which outlive a
killed parent and must be stopped before the run is retried (DuckDB has one writer).

The lease file is written and locked under a temporary name, then renamed into place, so a
reader never sees a lease that is not yet locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SUFFIX = ".lease"


def leases_dir(storage_root: Path) -> Path:
    """The leases of an instance: under ``storage/``, which docker-compose shares between containers."""
    return storage_root / "storage" / "run_leases"


@dataclass(frozen=True)
class ProcessRef:
    """A process, identified beyond its pid (pids are reused): host, pid and start time."""

    host: str
    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(socket.gethostname(), pid, psutil.Process(pid).create_time())

    def alive_here(self) -> bool:
        """True if this very process is still running on this host."""
        if self.host != socket.gethostname():
            return False
        try:
            process = psutil.Process(self.pid)
            return abs(process.create_time() - self.started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def as_json(self) -> dict:
        return {"host": self.host, "pid": self.pid, "started": self.started}


@dataclass
class RunLease:
    """Held by the process executing ``run_id``; ``release`` when the run is over."""

    run_id: str
    path: Path
    _fd: int = field(repr=False)

    @classmethod
    def acquire(cls, directory: Path, run_id: str) -> RunLease:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{run_id}{SUFFIX}"
        staging = directory / f".{run_id}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            owner = {"run_id": run_id, "owner": ProcessRef.of(os.getpid()).as_json(), "acquired_at": time.time()}
            os.write(fd, (json.dumps(owner) + "\n").encode())
            os.fsync(fd)
            os.replace(staging, path)  # the lock stays with the open file
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            raise
        return cls(run_id, path, fd)

    def add_child(self, pid: int) -> None:
        """Record a child process (it is stopped if this process dies before the run ends)."""
        try:
            child = ProcessRef.of(pid)
        except psutil.Error:
            return  # already gone
        os.write(self._fd, (json.dumps({"child": child.as_json()}) + "\n").encode())

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class DeadLease:
    """A lease whose process is gone: the run it names, and the children it left running."""

    run_id: str
    path: Path
    owner: ProcessRef | None
    children: tuple[ProcessRef, ...]


def _read(path: Path, fd: int) -> tuple[str, ProcessRef | None, tuple[ProcessRef, ...]]:
    run_id = path.name[: -len(SUFFIX)]
    owner = None
    children: list[ProcessRef] = []
    text = os.pread(fd, 1 << 20, 0).decode("utf-8", errors="replace")
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the crash
        if "owner" in entry:
            owner = ProcessRef(**entry["owner"])
            run_id = entry.get("run_id", run_id)
        elif "child" in entry:
            children.append(ProcessRef(**entry["child"]))
    return run_id, owner, tuple(children)


class DeadLeases:
    """The leases whose process is gone, locked by the caller while it cleans up after them.

    ``settle`` a lease once its run is dealt with: its file is removed when the context ends.
    A lease left unsettled (the clean-up failed) stays for the next attempt. The lock of a
    live process is never taken.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.found: list[DeadLease] = []
        self._fds: dict[Path, int] = {}
        self._settled: set[Path] = set()

    def __enter__(self) -> DeadLeases:
        if not self.directory.is_dir():
            return self
        for path in sorted(self.directory.iterdir()):
            is_lease = path.name.endswith(SUFFIX) and not path.name.startswith(".")
            is_staging = path.name.startswith(".") and path.name.endswith(".tmp")
            if not (is_lease or is_staging):
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # released meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its process is alive
                continue
            if is_staging:  # a lease whose writer died before renaming it into place
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                os.close(fd)
                continue
            run_id, owner, children = _read(path, fd)
            self._fds[path] = fd
            self.found.append(DeadLease(run_id, path, owner, children))
        return self

    def settle(self, lease: DeadLease) -> None:
        self._settled.add(lease.path)

    def __exit__(self, *exc) -> None:
        for path, fd in self._fds.items():
            if path in self._settled:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            os.close(fd)
        self._fds.clear()


# -- the leases this process holds -----------------------------------------------------------
# Child processes a run starts (dbt) are added to its lease, so that they are stopped with it.
_held: dict[str, RunLease] = {}
_children: dict[str, list[int]] = {}


def hold(lease: RunLease) -> None:
    """Make ``lease`` the one that ``note_child_process`` records children of its run in."""
    _held[lease.run_id] = lease


def drop(lease: RunLease) -> None:
    """Forget and release ``lease`` (its run is over)."""
    _held.pop(lease.run_id, None)
    _children.pop(lease.run_id, None)
    lease.release()


def note_child_process(run_id: str, pid: int) -> None:
    """Record that run ``run_id`` started process ``pid``: it is stopped if the run dies or is interrupted."""
    _children.setdefault(run_id, []).append(pid)
    lease = _held.get(run_id)
    if lease is not None:
        lease.add_child(pid)


def children_of(run_id: str) -> list[int]:
    return list(_children.get(run_id, ()))
