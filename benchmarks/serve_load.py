"""Load and start-up benchmark of the recommendation service (issues 7 and 15).

Load (default): writes a DuckDB warehouse of ``--users`` listeners (2,000, as the demo) into a
temp dir and drives three servers one after the other with wrk, 1000 concurrent connections,
``--duration`` seconds each, on ``/users/<random user>/recommendations?k=10``:

1. the **ceiling**: a bare lookup on the same server (Granian, RSGI, same settings) answering
   from a dict of the service's own answers (``benchmarks/bare_lookup.py``);
2. ``music-platform serve --workers 2`` as configured by default (structured access log on);
3. the same with ``--no-access-log``.

Every server is started first; ``--rounds N`` then goes round them N times (interleaved runs,
steadier on a shared machine); ``--baseline-ref REF`` adds the service as it was at git
revision ``REF`` (e.g. ``076baed``, before the Granian redesign) to the same run.

Prints requests/s, p50/p99 latency, socket errors, timeouts, non-2xx answers and the server's
CPU per request of each, the service's share of the ceiling, and checks the targets
(>= 90 % of the ceiling, >= 57,534 requests/s: the figure of the service before this design
on the reference machine, so that one is only meaningful on a quiet two-core machine).

    .venv/bin/python benchmarks/serve_load.py                     # 2,000 users, 15 s per server
    .venv/bin/python benchmarks/serve_load.py --rounds 2 --baseline-ref 076baed
    .venv/bin/python benchmarks/serve_load.py --startup-only      # 1M users x MAX_K: start-up time, RSS

Start-up (``--startup-only``): writes 1,000,000 users x ``MAX_K`` recommendations, starts the
server and reports the seconds until every worker answers ``/health`` with ``ok`` and each
worker's peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from music_platform.serving.sample_data import write_sample_warehouse  # noqa: E402
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse  # noqa: E402

TARGET_RPS = 57_534  # the service before this design, same benchmark, reference machine, quiet
TARGET_P99_MS = 250
TARGET_SHARE_OF_CEILING = 0.90
TARGET_STARTUP_SECONDS = 20
TARGET_RSS_GIB = 1.5

# wrk calls request() for every request: paths are prepared once in init() and picked at
# random, so the load generator spends its share of the two cores on sending, not on Lua.
LUA_TEMPLATE = textwrap.dedent(
    """
    local paths = {}
    init = function(args)
      math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
      for i = 1, 20000 do
        paths[i] = wrk.format("GET", PATH_EXPRESSION)
      end
    end
    request = function()
      return paths[math.random(#paths)]
    end
    done = function(summary, latency, requests)
      io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
        '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
        summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
        summary.errors.write, summary.errors.status, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
    end
    """
)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package (apt-get install -y wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "wrk (the HTTP load generator) is not installed. Install it with your package manager, "
        "e.g. `sudo apt-get install wrk` on Debian/Ubuntu or `brew install wrk` on macOS, then rerun."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_port(args: argparse.Namespace, index: int) -> int:
    """``--port`` + index (each server of a run on its own port, inside a range given to you on
    a shared machine), or a free port the kernel picks."""
    return args.port + index if args.port else free_port()


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Server:
    """``music-platform serve`` in a child process, with its environment pointing at ``db``."""

    def __init__(
        self,
        db: Path,
        data_dir: Path,
        port: int,
        workers: int,
        extra_args: tuple[str, ...] = (),
        code_dir: Path | None = None,
    ):
        """``code_dir``: run the ``music_platform`` package found there (another revision's,
        extracted by ``extract_revision``) instead of the installed one."""
        self.port = port
        self.workers = workers
        env = {
            **os.environ,
            "MUSIC_PLATFORM_TARGET": "duckdb",
            "MUSIC_PLATFORM_DUCKDB_PATH": str(db),
            "MUSIC_PLATFORM_DATA_DIR": str(data_dir),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if code_dir is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code_dir), env.get("PYTHONPATH", "")) if p)
        self.command = [
            sys.executable,
            "-m",
            "music_platform.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra_args,
        ]
        if extra_args == ("bare",):  # the ceiling: benchmarks/bare_lookup.py on the same server
            self.command = [sys.executable, str(Path(__file__).with_name("bare_lookup.py")), str(port), str(workers)]
        self.log_path = data_dir / f"server-{port}.log"
        self.started_at = time.perf_counter()
        # ``python -m`` puts the working directory first on sys.path: another revision's server
        # must start in its own directory, or it would import this checkout's music_platform.
        self.process = subprocess.Popen(
            self.command,
            env=env,
            cwd=code_dir,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_processes(self) -> list[psutil.Process]:
        """Granian's workers (children of the server process, which ``serve`` became)."""
        parent = psutil.Process(self.process.pid)
        return [
            c
            for c in parent.children(recursive=True)
            if "multiprocessing.resource_tracker" not in " ".join(c.cmdline())
        ]

    def wait_until_answering(self, path: str, timeout: float) -> None:
        """For the bare lookup (no /health): a 200 on ``path``, then time for every worker."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as response:
                    if response.status == 200 and len(self.worker_processes()) >= self.workers:
                        time.sleep(2)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the bare lookup did not answer within {timeout:.0f} s; log: {self.log_path}")

    def wait_until_ready(self, timeout: float) -> float:
        """Seconds from launch until every worker has answered /health with status ok."""
        seen_pids: set[int] = set()
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; log: {self.log_path}")
            try:
                status, health = get_json(self.base_url + "/health", timeout=2)
                if status == 200 and health.get("status") == "ok":
                    seen_pids.add(health["worker_pid"])
                    if len(seen_pids) >= self.workers:
                        return time.perf_counter() - self.started_at
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"not every worker was ready after {timeout:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def peak_rss_bytes(process: psutil.Process) -> int:
    """VmHWM: the most resident memory the process ever had (Linux)."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process.memory_info().rss


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def run_wrk(
    wrk: str,
    url: str,
    path_expression: str,
    args: argparse.Namespace,
    workdir: Path,
    name: str,
    workers: list[psutil.Process],
) -> dict:
    script = workdir / f"{name}.lua"
    script.write_text(LUA_TEMPLATE.replace("PATH_EXPRESSION", path_expression))
    command = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        f"--timeout={args.timeout}s",
        "-s",
        str(script),
        url,
    ]
    print("$", " ".join(command), flush=True)
    cpu_before = cpu_seconds(workers)
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    server_cpu = cpu_seconds(workers) - cpu_before
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    result = json.loads(line[len("WRK_JSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["socket_errors"] = result["connect"] + result["read"] + result["write"]
    # CPU the workers spent per answer: unlike requests/s it does not depend on who else
    # shares the machine, so it shows the route's own cost.
    result["cpu_us"] = server_cpu / result["requests"] * 1e6 if result["requests"] else 0.0
    result["command"] = " ".join(command)
    return result


def print_results(rows: list[tuple[str, dict]]) -> None:
    columns = ("req/s", "p50 ms", "p99 ms", "max ms", "sock err", "timeouts", "non-2xx", "CPU µs/req")
    header = f"{'server':<44} " + " ".join(f"{c:>8}" for c in columns[:-1]) + f" {columns[-1]:>10}"
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<44} {r['rps']:>8.0f} {r['p50_us'] / 1000:>8.1f} {r['p99_us'] / 1000:>8.1f} "
            f"{r['max_us'] / 1000:>8.1f} {r['socket_errors']:>8d} {r['timeout']:>8d} {r['status']:>8d} "
            f"{r['cpu_us']:>10.0f}"
        )


def check(label: str, ok: bool, detail: str) -> bool:
    print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}")
    return ok


def prepare_warehouse(args: argparse.Namespace, workdir: Path) -> Path:
    """Write the sample warehouse (or reuse ``--warehouse``) and print what it holds."""
    if args.warehouse:
        db = args.warehouse
        warehouse = DuckDBWarehouse(db)
        users = warehouse.query_df("select count(distinct user_id) as n from ml.user_recommendations")["n"].iloc[0]
        args.users = int(users)
        rows = warehouse.row_count("ml", "user_recommendations")
        print(f"warehouse: reusing {db} ({args.users:,} users, {rows:,} recommendations)")
        return db
    db = workdir / "warehouse.duckdb"
    started = time.perf_counter()
    summary = write_sample_warehouse(DuckDBWarehouse(db), users=args.users, artists=args.artists, tracks=args.tracks)
    print(
        f"warehouse: {summary.users:,} users, {summary.recommendations:,} recommendations, {summary.tracks:,} tracks, "
        f"{summary.artists:,} artists, {summary.similar_pairs:,} similar pairs, {db.stat().st_size / 2**20:.0f} MiB "
        f"({time.perf_counter() - started:.1f} s to write)"
    )
    return db


def extract_revision(ref: str, workdir: Path) -> Path:
    """``music_platform/`` as it was at git revision ``ref``, in a directory of its own."""
    repo = Path(__file__).resolve().parent.parent
    target = workdir / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "music_platform"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def merge_rounds(rounds: list[dict]) -> dict:
    """One server's wrk runs as one: requests/s and CPU per request over all of them, the
    median round's latencies, errors summed."""
    if len(rounds) == 1:
        return rounds[0]
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["duration_us"] for r in rounds) / 1e6
    cpu = sum(r["cpu_us"] * r["requests"] for r in rounds) / 1e6
    merged = {
        "requests": requests,
        "rps": requests / seconds if seconds else 0.0,
        "cpu_us": cpu / requests * 1e6 if requests else 0.0,
        "rounds_rps": [r["rps"] for r in rounds],
        "rounds_cpu_us": [r["cpu_us"] for r in rounds],
        "load": rounds[-1]["load"],
    }
    for key in ("connect", "read", "write", "status", "timeout", "socket_errors"):
        merged[key] = sum(r[key] for r in rounds)
    for key in ("p50_us", "p90_us", "p99_us", "mean_us"):
        merged[key] = statistics.median(r[key] for r in rounds)
    merged["max_us"] = max(r["max_us"] for r in rounds)
    return merged


def run_load(args: argparse.Namespace, workdir: Path) -> int:
    wrk = ensure_wrk()
    db = prepare_warehouse(args, workdir)
    user_path = f'string.format("/users/user_%07d/recommendations?k=10", math.random({args.users}))'
    runs: list[tuple[str, tuple[str, ...], Path | None]] = [
        ("bare lookup on Granian (ceiling)", ("bare",), None),
        ("music-platform serve (access log on)", (), None),
        ("music-platform serve --no-access-log", ("--no-access-log",), None),
    ]
    if args.baseline_ref:
        # The service as it was at another revision (e.g. before the Granian redesign), run by
        # this interpreter with this warehouse: "never less than today's figure" on this machine.
        runs.append((f"music-platform serve at {args.baseline_ref}", (), extract_revision(args.baseline_ref, workdir)))
    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()} before the runs; wrk shares the CPUs")
    # Every server is started (and idle) before the first run, and the runs go round the
    # servers --rounds times: a neighbour's job that starts mid-benchmark weighs on every
    # server alike, not on whichever ran last.
    servers: list[Server] = []
    try:
        for index, (_label, extra, code_dir) in enumerate(runs):
            server = Server(db, workdir, server_port(args, index), args.workers, extra, code_dir)
            servers.append(server)
            if extra == ("bare",):
                server.wait_until_answering("/users/user_0000001/recommendations?k=10", timeout=120)
            else:
                ready = server.wait_until_ready(timeout=120)
                print(f"server: {args.workers} workers ready in {ready:.1f} s ({' '.join(server.command[1:])})")
        rounds: list[list[dict]] = [[] for _ in runs]
        for round_index in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_index + 1} of {args.rounds}")
            for index, ((_label, extra, _code), server) in enumerate(zip(runs, servers, strict=True)):
                result = run_wrk(wrk, server.base_url, user_path, args, workdir, "users", server.worker_processes())
                result["load"] = load_average()
                rounds[index].append(result)
                if extra != ("bare",):
                    status, health = get_json(server.base_url + "/health")
                    if status != 200 or health.get("status") != "ok":
                        print(f"server unhealthy after the run: {status} {health}")
    finally:
        for server in servers:
            server.stop()
    results = [(label, merge_rounds(server_rounds)) for (label, *_), server_rounds in zip(runs, rounds, strict=True)]

    print()
    print(
        f"{args.connections} connections, {args.threads} wrk threads, {args.duration} s per server and round, "
        f"{args.rounds} round(s), {args.users:,} users, /users/{{random}}/recommendations?k=10, "
        f"wrk timeout {args.timeout} s, {args.workers} workers"
    )
    print_results(results)
    print("load average (1, 5, 15 min) after each server's last run: " + "; ".join(f"{r['load']}" for _, r in results))
    ceiling, service, quiet = (r for _, r in results[:3])
    share = service["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    quiet_share = quiet["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    if args.rounds > 1:
        for name, r in results:
            print(
                f"  {name}: req/s by round {', '.join(f'{v:.0f}' for v in r['rounds_rps'])}; "
                f"CPU µs/req by round {', '.join(f'{v:.1f}' for v in r['rounds_cpu_us'])}"
            )
    print(
        f"server CPU per request against the ceiling's: {ceiling['cpu_us'] / service['cpu_us']:.2f}x with the "
        f"access log, {ceiling['cpu_us'] / quiet['cpu_us']:.2f}x without (the steadier figure on a busy machine); "
        f"the access log's cost: {service['cpu_us'] - quiet['cpu_us']:+.1f} µs per request"
    )
    print()
    checks = [
        check(
            "errors",
            all(r["socket_errors"] == 0 and r["status"] == 0 for r in (service, quiet)),
            f"{service['socket_errors']} socket errors, {service['status']} non-2xx",
        ),
        check("timeouts", service["timeout"] == 0, f"{service['timeout']}"),
        check(
            "p99 latency",
            service["p99_us"] / 1000 < TARGET_P99_MS,
            f"{service['p99_us'] / 1000:.1f} ms (target < {TARGET_P99_MS} ms)",
        ),
        check(
            "share of the ceiling",
            share >= TARGET_SHARE_OF_CEILING,
            f"{share:.0%} with the access log, {quiet_share:.0%} without (target >= {TARGET_SHARE_OF_CEILING:.0%})",
        ),
        check(
            "throughput",
            service["rps"] >= TARGET_RPS,
            f"{service['rps']:.0f} requests/s (target >= {TARGET_RPS}, on a quiet 2-core machine)",
        ),
    ]
    if args.baseline_ref:
        baseline = results[3][1]
        checks.append(
            check(
                f"not below the service at {args.baseline_ref} in the same run",
                service["rps"] >= baseline["rps"],
                f"{service['rps']:.0f} against {baseline['rps']:.0f} requests/s "
                f"({service['cpu_us']:.0f} against {baseline['cpu_us']:.0f} µs of server CPU per request)",
            )
        )
    return 0 if all(checks) else 1


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def run_startup(args: argparse.Namespace, workdir: Path) -> int:
    db = prepare_warehouse(args, workdir)
    server = Server(db, workdir, server_port(args, 0), args.workers)
    try:
        ready = server.wait_until_ready(timeout=300)
        status, health = get_json(server.base_url + "/health")
        workers = server.worker_processes()
        peaks = [peak_rss_bytes(p) for p in workers]
        current = [p.memory_info().rss for p in workers]
        # CPU each worker used to start: what start-up costs when it has a core to itself.
        cpu = [sum(p.cpu_times()[:2]) for p in workers]
    finally:
        server.stop()
    print(f"server: {' '.join(server.command[1:])}")
    print(
        f"start-up until every worker answers /health ok: {ready:.1f} s "
        f"(snapshot load in one worker: {health['load_seconds']:.1f} s)"
    )
    for index, (peak, now, seconds) in enumerate(zip(peaks, current, cpu, strict=True), 1):
        print(
            f"worker {index}: peak RSS {peak / 2**30:.2f} GiB, RSS after start-up {now / 2**30:.2f} GiB, "
            f"CPU time to start {seconds:.1f} s"
        )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} after start-up")
    print()
    results = [
        check(
            "start-up time", ready <= TARGET_STARTUP_SECONDS, f"{ready:.1f} s (target <= {TARGET_STARTUP_SECONDS} s)"
        ),
        check(
            "memory per worker",
            max(peaks) <= TARGET_RSS_GIB * 2**30,
            f"peak {max(peaks) / 2**30:.2f} GiB (target <= {TARGET_RSS_GIB} GiB)",
        ),
    ]
    return 0 if all(results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--startup-only", action="store_true", help="measure start-up time and memory, no load")
    parser.add_argument(
        "--users", type=int, default=None, help="listeners (default 2,000; 1,000,000 with --startup-only)"
    )
    parser.add_argument("--artists", type=int, default=5000)
    parser.add_argument("--tracks", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="first port to serve on (one per server: PORT, PORT+1, PORT+2); default: free ports",
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per server (and round)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="go round the servers this many times (interleaved runs: steadier on a shared machine)",
    )
    parser.add_argument("--timeout", type=int, default=2, help="wrk's request timeout in seconds")
    parser.add_argument(
        "--baseline-ref",
        help="also run the service as it was at this git revision (e.g. 076baed, the last one before the "
        "Granian redesign) in the same run; its port is PORT+3",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (warehouse, server log)")
    parser.add_argument(
        "--warehouse",
        type=Path,
        help="reuse this DuckDB file (written by an earlier --keep run) instead of writing one",
    )
    args = parser.parse_args()
    if args.users is None:
        args.users = 1_000_000 if args.startup_only else 2_000
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        return run_startup(args, workdir) if args.startup_only else run_load(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
