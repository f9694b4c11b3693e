"""Slowloris against ``music-platform serve`` while a closed-loop load runs (issue 14).

Opens ``--slow`` connections (1,000) that never finish their request head -- half trickle a
header line every second, half never send a byte -- while ``--clients`` keep-alive clients
GET ``/health`` back to back. Prints the ``/health`` latency percentiles and how long the
server took to close each slow connection, and checks the targets: ``/health`` p99 under
100 ms, every slow connection closed within the configured head timeout (plus 1 s of slack).

    .venv/bin/python benchmarks/serve_slowloris.py                       # head timeout 5 s
    .venv/bin/python benchmarks/serve_slowloris.py --header-timeout 10   # the default of serve
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from music_platform.serving.sample_data import write_sample_warehouse  # noqa: E402
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse  # noqa: E402

TARGET_P99_MS = 100
SLACK_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def start_server(db: Path, workdir: Path, port: int, header_timeout: float, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MUSIC_PLATFORM_TARGET": "duckdb",
        "MUSIC_PLATFORM_DUCKDB_PATH": str(db),
        "MUSIC_PLATFORM_DATA_DIR": str(workdir),
        "MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS": str(header_timeout),
        "MUSIC_PLATFORM_ACCESS_LOG": "off",
    }
    command = [sys.executable, "-m", "music_platform.cli", "serve", "--port", str(port), "--workers", str(workers)]
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    time.sleep(2)  # the other worker too
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start; log: {workdir / 'server.log'}")


async def slow_connection(port: int, trickle: bool, give_up: float) -> float | None:
    """Seconds until the server closed this never-finished request (None: it did not)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    started = time.monotonic()
    try:
        if trickle:
            writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\n")
        while time.monotonic() - started < give_up:
            if trickle:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), timeout=1.0) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()


async def health_client(port: int, until: float, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")).split(b":")[1]
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def attack(port: int, slow: int, clients: int, header_timeout: float) -> tuple[list, list, list]:
    give_up = header_timeout + 10
    slow_tasks = [asyncio.create_task(slow_connection(port, i % 2 == 0, give_up)) for i in range(slow)]
    await asyncio.sleep(0.5)  # the slow connections are in place before the load starts
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + header_timeout + 2
    await asyncio.gather(*(health_client(port, until, latencies, errors) for _ in range(clients)))
    closed = await asyncio.gather(*slow_tasks)
    return closed, latencies, errors


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=1000, help="slowloris connections")
    parser.add_argument("--clients", type=int, default=20, help="closed-loop /health clients")
    parser.add_argument("--header-timeout", type=float, default=5.0, help="MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    raise_open_files_limit(4 * args.slow + 1024)
    workdir = Path(tempfile.mkdtemp(prefix="serve-slowloris-"))
    process = None
    try:
        db = workdir / "warehouse.duckdb"
        write_sample_warehouse(DuckDBWarehouse(db), users=2000, artists=200, tracks=3000)
        port = free_port()
        process = start_server(db, workdir, port, args.header_timeout, args.workers)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run")
        print(
            f"music-platform serve --workers {args.workers}, head timeout {args.header_timeout:g} s; "
            f"{args.slow} slowloris connections (half trickling header bytes, half silent), "
            f"{args.clients} closed-loop /health clients"
        )
        closed, latencies, errors = asyncio.run(attack(port, args.slow, args.clients, args.header_timeout))
        print(f"machine: load average {os.getloadavg()[0]:.2f} after the run")
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    times = [t for t in closed if t is not None]
    limit = args.header_timeout + SLACK_SECONDS
    print(
        f"/health: {len(latencies)} requests, p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies, default=0) * 1000:.1f} ms, "
        f"{len(errors)} errors"
    )
    print(
        f"slow connections: {len(times)} of {len(closed)} closed by the server, "
        f"median after {percentile(times, 0.5):.2f} s, max {max(times, default=float('nan')):.2f} s"
    )
    p99_ms = percentile(latencies, 0.99) * 1000
    checks = [
        (f"/health p99 < {TARGET_P99_MS} ms", p99_ms < TARGET_P99_MS and not errors, f"{p99_ms:.1f} ms"),
        (
            f"every slow connection closed within {limit:g} s",
            len(times) == len(closed) and max(times, default=0) <= limit,
            f"{len(times)}/{len(closed)}, max {max(times, default=float('nan')):.2f} s",
        ),
    ]
    for label, ok, detail in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
