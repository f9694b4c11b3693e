"""``music-platform serve``: the service on Granian, through Granian's public interface.

Granian (a maintained HTTP server: Rust's hyper and tokio for the sockets and HTTP parsing)
runs ``ServiceApp`` through RSGI, its documented application interface, in ``--workers``
processes that it starts, watches and restarts. Why Granian and RSGI: at 1000 concurrent
connections on two cores the per-request overhead of the server decides the throughput, and a
lookup through RSGI costs a fraction of one through ASGI (``benchmarks/serve_load.py`` prints
the service beside a bare lookup on the same server; docs/serving.md has the figures).

What is configured, and why:

- **HTTP/1.1 only, with a head timeout** (``MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS``, 10 s):
  a client that has not sent a whole request head by then is disconnected -- slowloris
  connections trickling header bytes, and connections that never send anything (with HTTP/2
  detection on, the server would wait for the first bytes without a timer). The same timer
  ends idle keep-alive connections. Body timeout and size limits are the app's (``app.py``).
- **Workers forked warm**: the app's modules are imported here, before Granian forks the
  workers, so each starts with pandas, pyarrow and FastAPI loaded. Each worker loads its
  snapshot before it accepts connections (``ServiceApp.__rsgi_init__``).
- **A listen backlog as deep as the kernel allows**; Granian's backpressure (connections
  per worker) follows it, so 1000+ keep-alive clients are all served.
- **Metrics of all workers summed**: with several workers, ``PROMETHEUS_MULTIPROC_DIR`` is
  given to the server process's environment (never written into this one's), so every worker
  writes its values to shared files; a restarted worker drops a dead one's gauges.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from music_platform.config import Settings, environment
from music_platform.serving.service import ServingConfig

log = logging.getLogger(__name__)

APP_TARGET = "music_platform.serving.app:create_app"
DEFAULT_BACKLOG = 8192
EVENT_LOOPS = ("asyncio", "uvloop")
DEFAULT_EVENT_LOOP = "asyncio"
# A worker that does not stop within this many seconds of SIGTERM is killed.
WORKERS_KILL_TIMEOUT_SECONDS = 30


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
    """Fail early, and clearly, if something else listens there."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR lets the probe ignore TIME_WAIT leftovers of a previous run, yet it
        # still fails on a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


def event_loop(env: dict[str, str] | None = None) -> str:
    """asyncio unless MUSIC_PLATFORM_SERVE_LOOP says uvloop."""
    env = os.environ if env is None else env
    chosen = env.get("MUSIC_PLATFORM_SERVE_LOOP", DEFAULT_EVENT_LOOP).strip().lower() or DEFAULT_EVENT_LOOP
    if chosen not in EVENT_LOOPS:
        raise ValueError(f"MUSIC_PLATFORM_SERVE_LOOP must be asyncio or uvloop, got {chosen!r}")
    return chosen


def granian_server(
    host: str, port: int, workers: int, config: ServingConfig, loop: str, backlog: int, target: str = APP_TARGET
):
    """The Granian server object (not started), configured as the module docstring says.

    ``target`` is a factory's import path (the load benchmark serves its bare lookup with the
    same configuration)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings

    return Granian(
        target,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(config.header_timeout_seconds * 1000)), keep_alive=True
        ),
        backlog=backlog,
        loop=Loops(loop),
        respawn_failed_workers=True,
        respawn_interval=1.0,
        workers_kill_timeout=WORKERS_KILL_TIMEOUT_SECONDS,
        log_access=False,  # the app writes its own structured access log (middleware.py)
    )


def run_server(host: str, port: int, workers: int, access_log: bool | None = None) -> None:
    """Check the settings and the port here, then become the Granian server process.

    The server runs in this process (``execve``), so signals reach Granian directly:
    SIGINT/SIGTERM stop the workers gracefully. ``access_log`` overrides
    MUSIC_PLATFORM_ACCESS_LOG for the server (True: stdout, False: off)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    env = environment()  # the server process sees the .env values too
    if access_log is not None:
        env["MUSIC_PLATFORM_ACCESS_LOG"] = "stdout" if access_log else "off"
    # Fail now, with one clear message, rather than once per worker.
    settings = Settings.from_env()
    config = ServingConfig.from_env(env)
    loop = event_loop(env)
    check_port_free(host, port)
    from music_platform.warehouse import connect_warehouse

    connect_warehouse(settings).check_reachable()
    log.info(
        "serving %s on http://%s:%d with %d worker(s) (Granian, %s event loop), checking for new model "
        "versions %s, access log %s",
        settings.target,
        host,
        port,
        workers,
        loop,
        f"every {config.reload_seconds:g} s" if config.reload_seconds else "never (polling off)",
        config.access_log,
    )
    command = [sys.executable, "-m", "music_platform.serving.server", host, str(port), str(workers)]
    if workers > 1 and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share their metric values through files here so /metrics sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="music-platform-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        command += ["--remove-on-exit", metrics_dir]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def main(argv: list[str] | None = None) -> None:
    """The server process (started by ``run_server``)."""
    parser = argparse.ArgumentParser(description="The music_platform recommendation service on Granian.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    parser.add_argument("--remove-on-exit", help="a directory to delete when the server stops")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServingConfig.from_env()
    # Imported once here, inherited by every forked worker. prometheus_client picks its
    # multi-process value files at import, from PROMETHEUS_MULTIPROC_DIR (set by run_server).
    import music_platform.serving.app  # noqa: F401

    server = granian_server(args.host, args.port, args.workers, config, event_loop(), listen_backlog())
    if args.remove_on_exit:
        server.on_shutdown(lambda: shutil.rmtree(args.remove_on_exit, ignore_errors=True))
    server.serve()


if __name__ == "__main__":
    main()
