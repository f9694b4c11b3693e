"""``music-platform serve`` in a child process, for tests that need the real server (Granian)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from music_platform.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """The service exactly as an operator starts it, on a free port, with ``settings``'s
    warehouse and extra MUSIC_PLATFORM_* variables (``reload_seconds=0`` and the access log
    off unless given)."""

    def __init__(self, settings: Settings, *, workers: int = 1, log_name: str = "serve.log", **env: str) -> None:
        self.port = free_port()
        self.workers = workers
        self.env = {
            **os.environ,
            "MUSIC_PLATFORM_TARGET": "duckdb",
            "MUSIC_PLATFORM_DUCKDB_PATH": str(settings.resolved_duckdb_path),
            "MUSIC_PLATFORM_DATA_DIR": str(settings.data_dir),
            "MUSIC_PLATFORM_RELOAD_SECONDS": "0",
            "MUSIC_PLATFORM_ACCESS_LOG": "off",
            **{f"MUSIC_PLATFORM_{name.upper()}": str(value) for name, value in env.items()},
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log_path = Path(settings.data_dir) / log_name
        self.command = [
            sys.executable,
            "-m",
            "music_platform.cli",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServeProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"music-platform serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"music-platform serve did not answer within 90 s:\n{self.log()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:  # whatever is left of the process group (workers), so no test leaks a server
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
