"""``music-platform-dbt-warm``: dbt's command line, run in a process that has imported dbt already.

Every dbt invocation Dagster makes is a new process, and before it reads a single file dbt spends
most of its fixed cost getting ready: importing dbt-core and the adapter (mashumaro compiles a
serialiser for every artifact class as it is defined) and building the JSON schemas it validates
the profile and the project against. That is the same work, with the same result, in every
invocation: about 3 of the 4 CPU-s of an invocation that builds nothing (docs/dbt.md).

So the executable Dagster runs is a small client, and the work is done once by a per-user server
(one per Python environment) that imports dbt-core and the DuckDB adapter, builds those schemas
(``dbtClassMixin.json_schema``, which dbt caches per class), compiles the manifest's deserialisers
(``warm_up``) and then waits on a Unix socket in a
private directory (0700, like the profiles). For each invocation the client sends its arguments,
working directory, environment and its standard input, output and error (the descriptors
themselves, ``SCM_RIGHTS``); the server forks, and the child takes them as its own -- what
``exec`` would have given a new dbt process -- and runs dbt's own command line (``dbt.cli.main``).
Everything dbt does from there is unchanged: it reads the profile, the project and the
partial-parse state afresh, writes to the client's stdout (dagster-dbt reads its JSON events
there), and its exit status, as ``waitpid`` reports it, is the client's.

- **Nothing is shared between invocations**: each is a fresh fork of the warmed-up server, which
  never runs dbt itself; a child's state dies with it.
- **Stopping.** The client forwards SIGINT, SIGTERM and SIGHUP to its child. If the client dies
  (a killed run; the run's lease records the client's pid), the child sees its connection close
  and exits at once, so it never keeps the DuckDB file.
- **Which server.** The socket's name is a digest of the Python executable, the modification
  time of its site-packages (any install, upgrade or removal of a package changes it) and of this
  file, so an upgraded environment starts a new server and never runs dbt from stale modules.
- **Lifetime.** The first client starts the server (others wait on a lock meanwhile) and waits
  until it listens; it exits after ``IDLE_EXIT_S`` without an invocation. If the server cannot be
  started, the client runs dbt itself, as ``music-platform-dbt`` does.
- **Accounting.** A child's CPU time is in the server's (``/proc``'s cutime/cstime once reaped,
  before the client learns the exit status): ``server_cpu_seconds`` lets the benchmarks count it.

``MUSIC_PLATFORM_DBT_SERVER=false`` (``Settings.dbt_server``) makes Dagster run
``music-platform-dbt`` instead (plain dbt in a new process); the server needs ``fork``, so it is
used on Linux only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

#: The server exits after this long without an invocation.
IDLE_EXIT_S = 900.0
#: How long a client waits for a server it started to listen (importing dbt takes 3-10 s here).
START_WAIT_S = 120.0
#: Imported by the server once: what ``dbt build/run/test/seed/parse`` import on DuckDB.
WARM_MODULES = (
    "dbt.cli.main",
    "dbt.adapters.factory",
    "dbt.adapters.duckdb",
    "dbt.adapters.sql",
    "dbt.compilation",
    "dbt.parser.manifest",
    "dbt.parser.schema_yaml_readers",
    "dbt.parser.sql",
    "dbt.task.build",
    "dbt.task.run",
    "dbt.task.seed",
    "dbt.task.test",
    "dbt.task.snapshot",
    "dbt.task.printer",
    "dbt.graph.thread_pool",
)
#: The classes whose JSON schema dbt builds to validate the profile, the project and the
#: selectors of every invocation, and the nodes of a parse (``dbtClassMixin.json_schema`` caches
#: one per class, so the children inherit them built).
WARM_SCHEMAS = (
    "dbt.contracts.project.ProjectFlags",
    "dbt.contracts.project.ProfileConfig",
    "dbt.contracts.project.Project",
    "dbt.contracts.project.PackageConfig",
    "dbt.contracts.project.Configuration",
    "dbt.contracts.selection.SelectorFile",
    "dbt.adapters.duckdb.credentials.DuckDBCredentials",
    "dbt.artifacts.resources.v1.model.ModelConfig",
    "dbt.artifacts.resources.v1.seed.SeedConfig",
    "dbt.artifacts.resources.v1.config.TestConfig",
    "dbt.artifacts.resources.v1.exposure.ExposureConfig",
    "dbt.artifacts.resources.v1.unit_test_definition.UnitTestConfig",
    "dbt.artifacts.resources.v1.source_definition.SourceConfig",
    "dbt.artifacts.resources.v1.components.Contract",
    "dbt.contracts.graph.nodes.ModelNode",
    "dbt.contracts.graph.nodes.SeedNode",
    "dbt.contracts.graph.nodes.GenericTestNode",
    "dbt.contracts.graph.unparsed.UnparsedNodeUpdate",
    "dbt.contracts.graph.unparsed.UnparsedModelUpdate",
    "dbt.contracts.graph.unparsed.UnparsedExposure",
    "dbt.contracts.graph.unparsed.UnparsedUnitTest",
    "dbt.contracts.graph.unparsed.UnparsedSourceDefinition",
)
_HEADER = struct.Struct("!I")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# -- where the server lives ------------------------------------------------------------------


def runtime_dir() -> Path:
    """The private directory of this user's servers (sockets, pid files, start locks)."""
    root = Path(tempfile.gettempdir()) / f"music_platform-dbt-server-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    status = root.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise PermissionError(f"{root} must be a private directory of this user (its server runs dbt for it)")
    return root


def server_key() -> str:
    """The server of this Python environment as it is installed now (see the module)."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    parts = (sys.executable, str(purelib.stat().st_mtime_ns), str(Path(__file__).stat().st_mtime_ns))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def socket_path(key: str | None = None) -> Path:
    return runtime_dir() / f"{key or server_key()}.sock"


def server_cpu_seconds() -> float:
    """CPU seconds (user + system) of this user's running servers and of the dbt children they
    reaped: what the benchmarks add to their own children's time."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid_file in runtime_dir().glob("*.pid"):
        try:
            fields = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        # after the command: state is field 3; utime, stime, cutime, cstime are fields 14-17
        total += sum(int(value) for value in fields[11:15]) / ticks
    return total


# -- the client (what Dagster runs) ------------------------------------------------------------


def main() -> None:
    """``music-platform-dbt-warm [dbt arguments]``: dbt's command line, run by the server."""
    args = sys.argv[1:]
    if args == ["--version"]:
        from music_platform.transformation.dbt_launcher import main as launcher

        launcher()
        return
    try:
        connection = _connect()
    except OSError as exc:
        print(f"music-platform-dbt-warm: no dbt server ({exc}); running dbt in this process", file=sys.stderr)
        connection = None
    if connection is None:
        from music_platform.transformation.dbt_launcher import main as launcher

        launcher()
        return
    sys.exit(_run_remotely(connection, args))


def _connect() -> socket.socket:
    key = server_key()
    path = socket_path(key)
    try:
        return _connected(path)
    except OSError:
        pass
    # One client starts the server; the others wait for the lock, then find it listening.
    with open(runtime_dir() / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _connected(path)
        except OSError:
            pass
        log = open(runtime_dir() / f"{key}.log", "ab")  # noqa: SIM115 -- the server's, closed below
        try:
            # The partial-parse state of the invocation that starts it, if any, warms its
            # deserialisers (``warm_up``).
            state = Path(os.environ.get("DBT_TARGET_PATH", "target")).absolute() / "partial_parse.msgpack"
            warm = [str(state)] if state.is_file() else []
            server = subprocess.Popen(
                [sys.executable, "-u", "-m", __name__, "--serve", str(path), *warm],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                return _connected(path)
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise OSError(errno.ECONNREFUSED, f"the dbt server did not start (log: {log.name})") from None
                time.sleep(0.05)


def _connected(path: Path) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _socket_address(path) as address:
            connection.connect(address)
    except OSError:
        connection.close()
        raise
    return connection


@contextlib.contextmanager
def _socket_address(path: Path):
    """``path`` as a socket address: a Unix socket's path is limited to 107 bytes, so a longer one
    (a deep TMPDIR) is reached through its directory's descriptor (``/proc/self/fd/N/name``)."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def _run_remotely(connection: socket.socket, args: list[str]) -> int:
    request = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(connection, [_HEADER.pack(len(request))], [0, 1, 2])
    connection.sendall(request)
    reader = connection.makefile("r", encoding="utf-8")
    started = reader.readline()
    if not started:
        print("music-platform-dbt-warm: the dbt server closed the connection", file=sys.stderr)
        return 1
    child = json.loads(started)["pid"]

    def forward(signum, frame):
        del frame
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    finished = reader.readline()
    if not finished:
        print("music-platform-dbt-warm: the dbt server ended before dbt did", file=sys.stderr)
        return 1
    return int(json.loads(finished)["code"])


# -- the server -------------------------------------------------------------------------------


def warm_up(partial_parse_state: Path | None = None) -> None:
    """What every dbt invocation would otherwise do again before reading the project: imports,
    the JSON schemas, the source lines ``inspect.stack()`` reads (dbt's adapter names the module
    that declared each behaviour flag that way), and -- given a partial-parse state -- the
    deserialisers of the manifest's classes (mashumaro compiles them on first use)."""
    import inspect
    import linecache

    for name in WARM_MODULES:
        importlib.import_module(name)
    for dotted in WARM_SCHEMAS:
        module, _, cls = dotted.rpartition(".")
        getattr(importlib.import_module(module), cls).json_schema()
    inspect.stack()
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("dbt", "dbt_common", "click", "runpy", __name__.partition(".")[0]):
            filename = getattr(module, "__file__", None)
            if filename and filename.endswith(".py"):
                linecache.getlines(filename)
    if partial_parse_state is not None:
        from dbt.contracts.graph.manifest import Manifest

        try:
            Manifest.from_msgpack(partial_parse_state.read_bytes())
        except Exception:  # noqa: BLE001 -- only a warm-up: a state it cannot read changes nothing
            return


def serve(path: Path, partial_parse_state: Path | None = None) -> int:
    """Warm up, then fork one child per invocation until ``IDLE_EXIT_S`` pass without one. Returns
    0 in the server; in a child, dbt's exit code once dbt is done, for a normal interpreter exit
    (which runs the clean-ups dbt registered, as a plain dbt process would)."""
    warm_up(partial_parse_state)
    os.chdir("/")  # holds no directory of the client that started it (each child goes to its client's)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal that started it is the client's
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # stopped: remove the socket first
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    with _socket_address(staging) as address:
        listener.bind(address)
    listener.listen(16)
    os.replace(staging, path)  # listening before it is visible: a client never finds a dead socket
    inode = path.stat().st_ino
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(str(os.getpid()))
    children: dict[int, socket.socket] = {}
    last_activity = time.monotonic()
    server_pid = os.getpid()
    try:
        while True:
            _reap(children)
            if children:
                last_activity = time.monotonic()
            idle = time.monotonic() - last_activity
            if idle >= IDLE_EXIT_S or not _still_ours(path, inode):
                return 0
            ready, _, _ = select.select([listener, wake_read], [], [], min(60.0, IDLE_EXIT_S - idle))
            if wake_read in ready:
                os.read(wake_read, 4096)
            if listener in ready:
                connection, _ = listener.accept()
                last_activity = time.monotonic()
                code = _start_child(connection, listener, children, (wake_read, wake_write))
                if code is not None:  # in the child: dbt ran
                    return code
    finally:
        if os.getpid() == server_pid and _still_ours(path, inode):
            path.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
            log = path.with_suffix(".log")
            if log.is_file() and log.stat().st_size == 0:
                log.unlink()


def _still_ours(path: Path, inode: int) -> bool:
    """Whether ``path`` is still this server's socket (a newer server may have replaced it)."""
    try:
        return path.stat().st_ino == inode
    except OSError:
        return False


def _reap(children: dict[int, socket.socket]) -> None:
    """Collect finished children and tell their clients the exit status."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            connection.sendall(json.dumps({"code": code if code >= 0 else 128 - code}).encode() + b"\n")
        except OSError:
            pass  # the client is gone (it was killed; the child followed)
        connection.close()


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
    (length,) = _HEADER.unpack(header)
    chunks, received = [], 0
    while received < length:
        chunk = connection.recv(min(65536, length - received))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        chunks.append(chunk)
        received += len(chunk)
    return json.loads(b"".join(chunks)), fds


def _start_child(
    connection: socket.socket, listener: socket.socket, children: dict[int, socket.socket], wake: tuple[int, int]
) -> int | None:
    """Fork a child for the client on ``connection``: None in the server, dbt's exit code in the child."""
    try:
        peer_uid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if peer_uid != os.getuid():
            raise PermissionError(f"a client of user {peer_uid}")
        request, fds = _receive(connection)
        if len(fds) != 3:
            raise ConnectionError(f"{len(fds)} descriptors instead of stdin, stdout, stderr")
    except (OSError, ValueError, ConnectionError):
        connection.close()
        return None
    pid = os.fork()
    if pid == 0:
        try:
            listener.close()
            for other in children.values():
                other.close()
            children.clear()
            return _child(connection, request, fds, wake)
        except BaseException:  # the child must never return to the server's loop
            import traceback

            traceback.print_exc()
            os._exit(70)
    for fd in fds:
        os.close(fd)
    children[pid] = connection
    try:
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        os.kill(pid, signal.SIGTERM)  # the client is gone already
    return None


def _child(connection: socket.socket, request: dict, fds: list[int], wake: tuple[int, int]) -> int:
    """In the forked child: become the dbt process the client would have started, and run dbt."""
    import threading

    signal.set_wakeup_fd(-1)
    for fd in wake:
        os.close(fd)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    # The environment the client was started with, as exec would have given it to a new dbt
    # process (dbt reads its DBT_* variables and env_var() from os.environ).
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["dbt", *request["args"]]

    def exit_with_the_client():
        while connection.recv(4096):
            pass
        os._exit(143)  # the client is gone: stop now, releasing the warehouse

    threading.Thread(target=exit_with_the_client, daemon=True).start()
    from dbt.cli.main import cli

    code: object = 0
    try:
        cli(args=request["args"], prog_name="dbt")
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None))
    main()
