"""dbt's fixed cost per invocation, as a Dagster run pays it: before (a git ref, main by default)
and after (this tree, with dbt in a new process per invocation and with the warm dbt server).

    .venv/bin/python benchmarks/dbt_startup.py [--invocations N] [--baseline REF | --no-baseline]
                                               [--baseline-python PATH] [--no-server-side]

Each invocation is what one run of the day-partitioned dbt asset (``dbt_daily_models``) does in
a fresh process, on DuckDB: build the dbt resource the way the code location builds it, then
``DbtCliResource.cli(...)`` for one day's window, with a selection that matches no node, so that
the figure is the fixed cost and nothing else: dagster-dbt's version check and in-process
adapter handle, dbt's start-up, profile and project loading, and parsing (full or partial). The
day changes from one invocation to the next, as it does from one daily run to the next. The
code location's own start-up (building the definitions) is not counted.

The baseline is ``git archive REF`` unpacked in a temporary directory and run with this
interpreter, or with ``--baseline-python`` (e.g. the environment of a checkout installed before
``make install`` compiled it to bytecode); it parses its own dbt project there. Printed per
side: the first invocation (a fresh dbt project: a full parse either way), the median of the
others, and how many of them re-parsed the whole project ("Unable to do partial parsing" in
dbt's log), in wall seconds and in CPU seconds of the process and its dbt subprocess (user +
system; on a shared machine the wall time grows with the load, the CPU time much less), the
warm dbt server's included (``server_cpu_seconds``: its own and its reaped children's, so the
first invocation of that side carries the server's start-up). Target:
<= 3 s per invocation (issue 16). The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 3.0
# Matches no node (the project has no snapshots): dbt starts, parses and finds nothing to do.
NOTHING = "tag:daily,resource_type:snapshot"

# Run in a fresh interpreter per invocation; argv: day offset. Prints one JSON line.
_AFTER = r"""
import json, resource, sys, time
from datetime import datetime, timedelta
from music_platform.config import Settings
from music_platform.defs.transform.dbt import daily_build_args
from music_platform.transformation.project import dbt_cli_resource, invocation_target_path, keep_partial_parse
try:  # the warm dbt server's CPU, children included (a tree without it has none)
    from music_platform.transformation.dbt_server import server_cpu_seconds
except ImportError:
    server_cpu_seconds = lambda: 0.0

start = datetime(2026, 1, 1) + timedelta(days=int(sys.argv[1]))
settings = Settings.from_env()
dbt = dbt_cli_resource(settings)  # parses the project if its manifest is stale (not timed)
args = [*daily_build_args(start, start + timedelta(days=1)), "--select", sys.argv[2]]
target_path = invocation_target_path(dbt.project_dir, dbt.target, "dbt_startup", dbt.profiles_dir)
cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime")) + server_cpu_seconds()
began, began_cpu = time.perf_counter(), cpu()
invocation = dbt.cli(args, raise_on_error=False, target_path=target_path)
invocation.wait()
seconds, cpu_seconds = time.perf_counter() - began, cpu() - began_cpu
log = (target_path / "dbt.log").read_text(errors="replace") if (target_path / "dbt.log").exists() else ""
keep_partial_parse(dbt.project_dir, dbt.target, target_path, dbt.profiles_dir)
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "full_parse": "Unable to do partial parsing" in log,
                  "ok": invocation.process.returncode == 0}))
"""

# The same against the baseline tree, the way its code location and run processes did it: the dbt
# module (which parsed the project at import) first, then the resource (which set the environment).
_BEFORE = r"""
import json, resource, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from music_platform.config import Settings
import music_platform.defs.transform.dbt as transform
from music_platform.transformation.project import dbt_cli_resource

start = datetime(2026, 1, 1) + timedelta(days=int(sys.argv[1]))
dbt = dbt_cli_resource(Settings.from_env())
args = [*transform.daily_build_args(start, start + timedelta(days=1)), "--select", sys.argv[2]]
cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for f in ("ru_utime", "ru_stime"))
began, began_cpu = time.perf_counter(), cpu()
invocation = dbt.cli(args, raise_on_error=False)
invocation.wait()
seconds, cpu_seconds = time.perf_counter() - began, cpu() - began_cpu
log_path = Path(invocation.target_path) / "dbt.log"
log = log_path.read_text(errors="replace") if log_path.exists() else ""
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "full_parse": "Unable to do partial parsing" in log,
                  "ok": invocation.process.returncode == 0}))
"""


def _clean_env(data_dir: Path, pythonpath: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MUSIC_PLATFORM_", "SNOWFLAKE_", "LASTFM_", "SPOTIFY_", "DBT_", "DAGSTER_"))
    }
    env.update(MUSIC_PLATFORM_DATA_DIR=str(data_dir), PYTHONPATH=str(pythonpath), PYTHONWARNINGS="ignore")
    return env


def measure(
    script: str, tree: Path, data_dir: Path, invocations: int, python: str = sys.executable, server: bool = True
) -> list[dict]:
    """``invocations`` fresh processes, one after the other. Each side has its own temporary
    directory (TMPDIR), so the warm dbt server of a tree that has one starts cold in the first
    invocation and is stopped at the end (it is this benchmark's)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir.with_name(data_dir.name + "-tmp")
    tmp.mkdir(exist_ok=True)
    env = {**_clean_env(data_dir, tree), "TMPDIR": str(tmp), "MUSIC_PLATFORM_DBT_SERVER": str(server).lower()}
    results = []
    try:
        for day in range(invocations):
            results.append(_invoke(script, tree, day, env, python))
    finally:
        for pid_file in tmp.glob("music_platform-dbt-server-*/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
    return results


def _invoke(script: str, tree: Path, day: int, env: dict[str, str], python: str) -> dict:
    done = subprocess.run(
        [python, "-c", script, str(day), NOTHING], cwd=tree, env=env, capture_output=True, text=True, timeout=1800
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"invocation failed in {tree}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    print(f"  {tree.name}: invocation {day + 1}: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU"
          f"{' (full re-parse)' if result['full_parse'] else ''}", flush=True)  # fmt: skip
    return result


def _baseline_tree(ref: str, into: Path) -> Path:
    archive = into / "baseline.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=out, check=True)
    tree = into / f"baseline-{ref.replace('/', '_')}"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def summary(name: str, results: list[dict]) -> str:
    first, rest = results[0], results[1:]
    wall = statistics.median(r["seconds"] for r in rest)
    cpu = statistics.median(r["cpu_seconds"] for r in rest)
    reparsed = sum(r["full_parse"] for r in rest)
    return (
        f"{name:<22} {first['seconds']:>7.1f} {first['cpu_seconds']:>7.1f} {wall:>10.1f} {cpu:>9.1f}"
        f" {reparsed:>8}/{len(rest)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=4, help="invocations per side (the first is cold)")
    parser.add_argument("--baseline", default="main", help="git ref measured as 'before' (default: main)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    parser.add_argument(
        "--no-server-side",
        action="store_true",
        help="skip this tree with MUSIC_PLATFORM_DBT_SERVER=false (dbt in a new process per invocation)",
    )
    parser.add_argument(
        "--baseline-python", default=sys.executable, help="interpreter of the 'before' side (default: this one)"
    )
    options = parser.parse_args()
    if options.invocations < 2:
        parser.error("--invocations must be at least 2 (the first one is cold)")

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dbt_startup_") as tmp:
        work = Path(tmp)
        if not options.no_baseline:
            tree = _baseline_tree(options.baseline, work)
            # A baseline that already carries the partial-parse state from one invocation to the
            # next is measured the way this tree is; an older one the way its runs did it.
            project = (tree / "music_platform" / "transformation" / "project.py").read_text()
            script = _AFTER if "def invocation_target_path" in project else _BEFORE
            rows.append(
                summary(
                    f"before ({options.baseline})",
                    measure(script, tree, work / "data-before", options.invocations, options.baseline_python),
                )
            )
        if options.no_server_side is False:
            rows.append(
                summary(
                    "this tree, no server",
                    measure(_AFTER, ROOT, work / "data-plain", options.invocations, server=False),
                )
            )
        rows.append(summary("this tree (dbt server)", measure(_AFTER, ROOT, work / "data-after", options.invocations)))
    load_after = os.getloadavg()[0]

    print("\ndbt fixed cost per invocation (a daily dbt run selecting nothing), seconds")
    print(f"{'':<22} {'first':>7} {'':>7} {'median of the others':>20} {'full':>10}")
    print(f"{'':<22} {'wall':>7} {'CPU':>7} {'wall':>10} {'CPU':>9} {'re-parses':>10}")
    for row in rows:
        print(row)
    print(f"target: <= {TARGET_SECONDS:.0f} s per invocation; load average (1 min) {load_before:.2f} before, "
          f"{load_after:.2f} after, on {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
