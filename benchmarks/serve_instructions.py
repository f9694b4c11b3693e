"""Instructions per request of one serving worker, counted by valgrind (callgrind).

Server CPU time per request moves by +-20 % with whatever else shares the machine (batching in
the kernel and in Granian changes with the load), so a difference of a few microseconds -- the
access log's cost -- is lost in it. The instructions a worker executes per request are the
same whatever the load: this script counts them, for the service as configured
(``--access-log``: stdout, or off) and optionally for another revision (``--ref``):

1. writes a small DuckDB warehouse (2,000 users, as the demo);
2. starts ``python -m music_platform.serving.server 127.0.0.1 PORT 1`` (one Granian worker,
   polling off) under ``valgrind --tool=callgrind --instr-atstart=no``;
3. once ``/health`` is ok, warms the answer cache with wrk, switches counting on in the worker
   (``callgrind_control -i on``), drives ``--seconds`` of wrk load (``--connections``, random
   users' ``/users/{id}/recommendations?k=10``), switches it off and dumps;
4. prints the worker's instructions (user space: Python, Granian's Rust, libc; not the
   kernel) divided by the requests wrk completed.

    .venv/bin/python benchmarks/serve_instructions.py --port 8650                   # access log on
    .venv/bin/python benchmarks/serve_instructions.py --port 8651 --no-access-log
    .venv/bin/python benchmarks/serve_instructions.py --port 8652 --ref a6ae317     # another revision
    .venv/bin/python benchmarks/serve_instructions.py --port 8653 --keep-dumps /tmp/dumps  # then callgrind_annotate

Needs valgrind and wrk. Under valgrind a worker answers a few hundred requests a second, so
the access log is written by the once-a-second flush (batches of a few hundred lines).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serve_load import extract_revision, get_json  # noqa: E402
from music_platform.serving.sample_data import write_sample_warehouse  # noqa: E402
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse  # noqa: E402

LUA = """
local paths = {}
init = function(args)
  math.randomseed(42)
  for i = 1, 20000 do
    paths[i] = wrk.format("GET", string.format("/users/user_%07d/recommendations?k=10", math.random(2000)))
  end
end
request = function() return paths[math.random(#paths)] end
"""


def wrk(port: int, connections: int, seconds: int, script: Path) -> int:
    """Requests completed."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in", out)
    if match is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--ref", help="count another git revision's service (its music_platform/ extracted)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--keep-dumps",
        type=Path,
        help="copy the worker's callgrind dumps here (read them with callgrind_annotate)",
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="serve-instructions-"))
    repo = Path(__file__).resolve().parent.parent
    code_dir = extract_revision(args.ref, workdir) if args.ref else repo
    db = workdir / "warehouse.duckdb"
    write_sample_warehouse(DuckDBWarehouse(db), users=2000, artists=300, tracks=3000, similar_per_track=5)
    env = {
        **os.environ,
        "MUSIC_PLATFORM_TARGET": "duckdb",
        "MUSIC_PLATFORM_DUCKDB_PATH": str(db),
        "MUSIC_PLATFORM_DATA_DIR": str(workdir / "data"),
        "MUSIC_PLATFORM_ACCESS_LOG": "off" if args.no_access_log else "stdout",
        "MUSIC_PLATFORM_RELOAD_SECONDS": "0",
        "MUSIC_PLATFORM_RECENT_LISTENS_SECONDS": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if args.ref:
        env["PYTHONPATH"] = str(code_dir)
    out_pattern = workdir / "callgrind.%p.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_pattern}",
        sys.executable,
        "-m",
        "music_platform.serving.server",
        "127.0.0.1",
        str(args.port),
        "1",
    ]
    script = workdir / "users.lua"
    script.write_text(LUA)
    # ``python -m`` puts the working directory first on sys.path: start in the code's own.
    server = subprocess.Popen(
        command,
        cwd=code_dir,
        env=env,
        stdout=(workdir / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if get_json(f"http://127.0.0.1:{args.port}/health", timeout=5)[1].get("status") == "ok":
                    break
            except OSError:
                pass
            if server.poll() is not None:
                sys.exit(f"the server exited; log: {workdir / 'server.log'}")
            time.sleep(1)
        else:
            sys.exit("the server did not become healthy within 10 minutes")
        wrk(args.port, 20, 5, script)  # fills the answer cache, as a running service has it
        pids = [
            int(p)
            for p in subprocess.run(["pgrep", "-s", str(server.pid)], capture_output=True, text=True).stdout.split()
        ]
        for pid in pids:
            subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
        requests = wrk(args.port, args.connections, args.seconds, script)
        for pid in pids:
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
            subprocess.run(["callgrind_control", "-d", "load", str(pid)], capture_output=True)
        time.sleep(2)
        totals = []
        for dump in workdir.glob("callgrind.*.out.*"):
            match = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
            if match and int(match.group(1)):
                totals.append(int(match.group(1)))
                if args.keep_dumps is not None:
                    args.keep_dumps.mkdir(parents=True, exist_ok=True)
                    shutil.copy(dump, args.keep_dumps / dump.name)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    label = f"service at {args.ref}" if args.ref else "service"
    log_state = "off" if args.no_access_log else "on"
    print(
        f"{label}, access log {log_state}: {requests:,} requests, {sum(totals):,} instructions in the worker, "
        f"{sum(totals) / requests:,.0f} per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
