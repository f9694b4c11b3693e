"""Instructions per request the access log costs at full speed, counted by valgrind (callgrind).

``serve_instructions.py`` counts a real Granian worker, but under valgrind a worker answers a few
hundred requests a second, so the log's once-a-second costs (the flush task, a batch's fixed
cost) are shared by a few hundred lines, not by the 1,024 of a full buffer at full speed. This
script counts the Python side alone, at full batches: it builds the service in process on a
2,000-user DuckDB warehouse (as the demo), warms it, then sends ``--requests`` hot GETs of
random users' recommendations straight through ``ServiceApp.__rsgi__`` (a request object with
plain attributes: Granian's own getters for the client address and user agent are not
counted), with counting switched on only around that loop (``callgrind_control -i``).

    .venv/bin/python benchmarks/access_log_instructions.py            # access log on and off
    .venv/bin/python benchmarks/access_log_instructions.py --ref 849072b  # also another revision

It prints instructions per request for the service with the access log off, on, and on at
``--ref``, and what the log adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WARM_REQUESTS = 3000


class _Scope:
    """An RSGI HTTP scope with plain attributes."""

    __slots__ = ("client", "headers", "method", "path", "query_string")

    def __init__(self, path: str, client: str) -> None:
        self.method, self.path, self.query_string, self.client = "GET", path, "k=10", client
        self.headers = {"host": "127.0.0.1:8600", "user-agent": "wrk/4.1.0"}


class _Proto:
    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        return None


def drive(access_log: str, requests: int, workdir: Path) -> None:
    """In the process valgrind runs: build the service and send the requests."""
    from music_platform.config import Settings  # noqa: PLC0415 -- from the revision on sys.path
    from music_platform.serving.app import create_app  # noqa: PLC0415
    from music_platform.serving.sample_data import write_sample_warehouse  # noqa: PLC0415
    from music_platform.serving.service import ServingConfig  # noqa: PLC0415
    from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse  # noqa: PLC0415

    db = workdir / "warehouse.duckdb"
    write_sample_warehouse(DuckDBWarehouse(db), users=2000, artists=300, tracks=3000, similar_per_track=5)
    settings = Settings.from_env(
        {
            "MUSIC_PLATFORM_TARGET": "duckdb",
            "MUSIC_PLATFORM_DUCKDB_PATH": str(db),
            "MUSIC_PLATFORM_DATA_DIR": str(workdir / "data"),
        }
    )
    config = ServingConfig(reload_seconds=0, recent_listens_seconds=0, access_log=access_log)
    app = create_app(settings, config)
    app.startup()
    rng = random.Random(42)
    scopes = [
        _Scope(f"/users/user_{rng.randrange(1, 2001):07d}/recommendations", f"127.0.0.1:{40000 + n % 100}")
        for n in range(requests)
    ]
    proto = _Proto()

    async def run() -> None:
        for scope in scopes[:WARM_REQUESTS]:
            await app.__rsgi__(scope, proto)
        if app.access_log is not None:
            app.access_log.flush()
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=False)
        for scope in scopes:
            await app.__rsgi__(scope, proto)
        if app.access_log is not None:
            app.access_log.flush()
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=False)

    asyncio.run(run())


def count(code_dir: Path, access_log: str, requests: int, workdir: Path) -> int:
    """Instructions of ``requests`` requests through the service at ``code_dir``."""
    out = workdir / f"callgrind.{access_log.replace('/', '_')}.{code_dir.name}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--drive",
        access_log,
        "--requests",
        str(requests),
        "--workdir",
        str(workdir / f"{code_dir.name}-{access_log.replace('/', '_')}"),
    ]
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    match = re.search(r"Collected : (\d+)", completed.stderr)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"valgrind run failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--ref", help="also count another git revision's service (its music_platform/ extracted)")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        drive(args.drive, args.requests, args.workdir)
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind)")
    workdir = Path(tempfile.mkdtemp(prefix="access-log-instructions-"))
    try:
        here = count(REPO, "off", args.requests, workdir) / args.requests
        print(f"access log off: {here:,.0f} instructions per request")
        logged = count(REPO, os.devnull, args.requests, workdir) / args.requests
        print(f"access log on:  {logged:,.0f} instructions per request (the log: +{logged - here:,.0f})")
        if args.ref:
            sys.path.insert(0, str(REPO))
            from benchmarks.serve_load import extract_revision  # noqa: PLC0415

            code_dir = extract_revision(args.ref, workdir)
            before = count(code_dir, os.devnull, args.requests, workdir) / args.requests
            added = before - here
            print(f"access log on at {args.ref}: {before:,.0f} instructions per request (the log: +{added:,.0f})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
