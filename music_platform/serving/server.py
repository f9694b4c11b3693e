"""``music-platform serve``: uvicorn tuned for many concurrent keep-alive clients.

Settings that matter at 1000 connections on two cores: uvloop + httptools, a listen backlog
as deep as the kernel allows (a burst of new connections must queue, not be dropped into a
SYN retry that shows up as a timeout), no access log (a line per request costs more than the
lookup) and keep-alive long enough that clients do not reconnect between requests.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from music_platform.config import Settings
from music_platform.serving.service import ServingConfig

log = logging.getLogger(__name__)

APP_FACTORY = "music_platform.serving.app:create_app"
DEFAULT_BACKLOG = 8192
KEEP_ALIVE_SECONDS = 30


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


def run_server(host: str, port: int, workers: int) -> None:
    """Serve the recommendation API until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Fail now, in the parent, on a malformed setting rather than once per worker.
    settings = Settings.from_env()
    config = ServingConfig.from_env()
    if workers < 1:
        raise ValueError("workers must be >= 1")
    log.info(
        "serving %s on http://%s:%d with %d worker(s), reload every %ss",
        settings.target,
        host,
        port,
        workers,
        config.reload_seconds or "never (polling off)",
    )
    metrics_dir: str | None = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share their metric values through files here so /metrics sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="music-platform-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            backlog=listen_backlog(),
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            access_log=False,
            server_header=False,
            log_level="info",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
