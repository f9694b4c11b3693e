"""``music-platform serve``: uvicorn workers tuned for 1000+ concurrent keep-alive clients.

What zero timeouts at 1000 connections on two cores took (measured with
``benchmarks/serve_load.py``; docs/serving.md has the figures):

- **One listening socket per worker, with SO_REUSEPORT.** uvicorn's own ``--workers`` shares
  one socket, so whichever worker wakes first accepts a whole burst of new connections and
  keeps them: one core then carries most clients while the other idles. With a socket per
  worker the kernel spreads connections evenly. Each worker binds before loading but only
  listens after its snapshot is loaded, so no connection ever waits on a cold worker.
- **The asyncio event loop, not uvloop, for accepting.** Under full CPU load uvloop accepted
  about 40 new connections per second per worker, leaving hundreds of clients in the accept
  queue until their first request timed out; asyncio's accept loop drains the whole queue at
  once. httptools still parses HTTP.
- **Hot routes answered in the HTTP parser callback** (``serving/protocol.py``), without the
  ASGI round of scope, task and send coroutines; everything else goes through uvicorn as usual.
- A listen backlog as deep as the kernel allows, keep-alive longer than any client pause,
  no access log (a log line costs more than the lookup) and no ``server`` header.

A small supervisor forks the workers (after importing the app, so they start warm), restarts
one that dies and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from music_platform.config import Settings
from music_platform.serving.protocol import fast_protocol
from music_platform.serving.service import ServingConfig

if TYPE_CHECKING:
    from music_platform.serving.app import FastPathApp

log = logging.getLogger(__name__)

DEFAULT_BACKLOG = 8192
KEEP_ALIVE_SECONDS = 30
EVENT_LOOP = "asyncio"
RESTART_DELAY_SECONDS = 1.0
QUICK_DEATH_SECONDS = 30.0
MAX_QUICK_DEATHS = 5


def listen_backlog() -> int:
    """The backlog to ask for: the kernel caps it at net.core.somaxconn anyway."""
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
    if somaxconn < 1024:
        log.warning(
            "net.core.somaxconn is %d: bursts of new connections may be dropped; raise it "
            "(sysctl -w net.core.somaxconn=4096) for 1000+ concurrent clients",
            somaxconn,
        )
    return max(somaxconn, DEFAULT_BACKLOG)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """Fail early, and clearly, if something else listens there: with SO_REUSEPORT a second
    server of ours could otherwise silently share the port."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR lets the probe ignore TIME_WAIT leftovers of a previous run, yet it
        # still fails on a live listener (and, lacking SO_REUSEPORT, on one of ours).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


def worker_socket(host: str, port: int) -> socket.socket:
    """Bound, not yet listening: uvicorn calls listen() once the app has started."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def event_loop() -> str:
    """asyncio unless MUSIC_PLATFORM_SERVE_LOOP says uvloop (see the module docstring)."""
    chosen = os.environ.get("MUSIC_PLATFORM_SERVE_LOOP", EVENT_LOOP).strip().lower() or EVENT_LOOP
    if chosen not in ("asyncio", "uvloop"):
        raise ValueError(f"MUSIC_PLATFORM_SERVE_LOOP must be asyncio or uvloop, got {chosen!r}")
    return chosen


def uvicorn_config(app: FastPathApp, backlog: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop=event_loop(),
        http=fast_protocol(app),
        lifespan="on",
        backlog=backlog,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        access_log=False,
        server_header=False,
        log_level="info",
    )


def serve_worker(host: str, port: int, backlog: int) -> None:
    """One worker process: its own app, snapshot and listening socket."""
    from music_platform.serving.app import create_app

    # A forked worker inherits the supervisor's handlers: take the defaults back until uvicorn
    # installs its own, so a stop during start-up is not swallowed.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = worker_socket(host, port)
    uvicorn.Server(uvicorn_config(create_app(), backlog)).run(sockets=[sock])


class Supervisor:
    """Runs ``workers`` processes of ``serve_worker`` until SIGINT/SIGTERM."""

    def __init__(self, host: str, port: int, workers: int, backlog: int):
        self.host, self.port, self.workers, self.backlog = host, port, workers, backlog
        # fork, after run_server imported the app's modules: a worker starts with pandas,
        # pyarrow and FastAPI already imported (3 s of CPU each on this machine). The parent
        # holds no connection, socket or event loop a child could inherit.
        self.context = multiprocessing.get_context("fork")
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.stopping = False

    def _start_one(self) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(
            target=serve_worker, args=(self.host, self.port, self.backlog), name="music-platform-worker"
        )
        process.start()
        log.info("started worker process %d", process.pid)
        return process

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        """Returns 0 after a requested stop, 1 when workers kept dying right after starting."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        quick_deaths = 0
        try:
            self.processes = [self._start_one() for _ in range(self.workers)]
            started_at = [time.monotonic()] * self.workers
            while not self.stopping:
                for index, process in enumerate(self.processes):
                    if process.is_alive() or self.stopping:
                        continue
                    log.error("worker %d exited with %s: restarting it", process.pid, process.exitcode)
                    _forget_metrics_of(process.pid)
                    lived = time.monotonic() - started_at[index]
                    quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                    if quick_deaths >= MAX_QUICK_DEATHS:
                        log.error("workers keep dying within %ss of starting: giving up", QUICK_DEATH_SECONDS)
                        return 1
                    time.sleep(RESTART_DELAY_SECONDS)
                    self.processes[index] = self._start_one()
                    started_at[index] = time.monotonic()
                time.sleep(0.2)
            return 0
        finally:
            for process in self.processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)  # uvicorn finishes in-flight requests
            for process in self.processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _forget_metrics_of(pid: int | None) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def run_server(host: str, port: int, workers: int) -> None:
    """Serve the recommendation API until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    # Fail now, in the parent, on a malformed setting rather than once per worker.
    settings = Settings.from_env()
    config = ServingConfig.from_env()
    loop = event_loop()
    check_port_free(host, port)
    backlog = listen_backlog()
    log.info(
        "serving %s on http://%s:%d with %d worker(s) (%s event loop), checking for new model versions %s",
        settings.target,
        host,
        port,
        workers,
        loop,
        f"every {config.reload_seconds:g} s" if config.reload_seconds else "never (polling off)",
    )
    if workers == 1:
        serve_worker(host, port, backlog)
        return
    metrics_dir: str | None = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share their metric values through files here so /metrics sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="music-platform-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Imported once here, inherited by every forked worker. Only now: prometheus_client picks
    # its multi-process value files at import, from PROMETHEUS_MULTIPROC_DIR.
    import music_platform.serving.app  # noqa: F401

    try:
        exit_code = Supervisor(host, port, workers, backlog).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if exit_code:
        raise SystemExit(exit_code)
