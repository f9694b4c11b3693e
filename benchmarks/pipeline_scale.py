"""The whole asset graph at scale: millions of synthetic scrobbles end to end on DuckDB.

    .venv/bin/python benchmarks/pipeline_scale.py --scrobbles 1000000,10000000 [--users 5000]
        [--json FILE] [--max-epochs N] [--no-components N] [--keep-dir DIR]

For each size N, a fresh process and a fresh temporary data directory: the synthetic world of
``--users`` listeners (a fixed audience listening for more days, the way a deployment grows)
is given as many days as it takes to hold N scrobbles, then the same Dagster definitions as
``music-platform demo`` materialise everything, in stages:

- generate: the synthetic world (catalogue, listeners) and its Kaggle CSV;
- load: raw scrobbles of every day (one single-run backfill: Last.fm JSON pages, the shared
  parser, the audit trail, a week of days per write), then profiles, tags, charts and the
  catalogue;
- dbt: staging, intermediate and marts, the incremental models over the whole range;
- train: training data (from marts.user_track_interactions), the LightFM model, its evaluation
  (the pipeline's ModelConfig unless ``--max-epochs``/``--no-components`` override it; printed:
  epochs trained, epochs kept and what ended the search -- early stopping, the epoch limit or
  the training time budget);
- score: recommendations for every user, similar tracks, the registry;
- daily: one more day, the way the schedule runs it: the new scrobble partition, then the
  partitioned dbt models (fct_listens, user_track_interactions) for that day only.

Printed per stage: wall seconds, CPU seconds of the process tree (this process, its threads
and its dbt subprocesses: a figure the machine's other load does not inflate much), peak RSS
of the process tree (sampled every 50 ms). Then the totals, the ratio of the largest size's
time to the smallest's, and the 1-minute load average before and after each size (the machine
may be shared). ``--json`` writes, per size, ``{"scrobbles", "total_seconds", "peak_rss_bytes",
"stages": {name: seconds}, "training", "daily_incremental_seconds", ...}``.

Targets on 2 cores: 10M scrobbles end to end <= 15 min, peak RSS <= 4 GiB, time(10M)/time(1M)
<= 12, the daily incremental run after the 10M backfill <= 6 s (issue 16; its dbt part is also
printed: dbt's fixed cost per invocation is measured by benchmarks/dbt_startup.py).

The child builds the definitions from explicit ``Settings`` (``build_defs``), as the demo does:
nothing is written to the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil

TARGET_TOTAL_SECONDS_10M = 15 * 60
TARGET_PEAK_RSS_BYTES = 4 * 2**30
TARGET_RATIO = 12.0
TARGET_DAILY_SECONDS = 6.0
STAGES = ("generate", "load", "dbt", "train", "score")


# -- measuring ------------------------------------------------------------------------------------


class TreeMemorySampler:
    """Peak RSS of this process and all its descendants (dbt runs as a subprocess)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def tree_rss(self) -> int:
        total = 0
        # with --dbt-server, dbt runs as a child of the warm dbt server, not of this process
        for root in (self.process, *_dbt_servers()):
            try:
                total += root.memory_info().rss
                children = root.children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # the child ended between listing and reading
                    pass
        return total

    def reset(self) -> None:
        self.peak = self.tree_rss()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.tree_rss())

    def __enter__(self) -> TreeMemorySampler:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of its finished subprocesses, and of
    the warm dbt server with the dbt processes it forked (--dbt-server)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    from music_platform.transformation.dbt_server import server_cpu_seconds

    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + server_cpu_seconds()


def _dbt_servers() -> list[psutil.Process]:
    from music_platform.transformation.dbt_server import runtime_dir

    servers = []
    for pid_file in runtime_dir().glob("*.pid"):
        try:
            servers.append(psutil.Process(int(pid_file.read_text())))
        except (OSError, ValueError, psutil.Error):
            pass
    return servers


@dataclass
class StageFigures:
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    detail: dict = field(default_factory=dict)


@dataclass
class SizeFigures:
    scrobbles: int
    scrobbles_loaded: int
    users: int
    days: int
    first_day: str
    last_day: str
    stages: dict[str, StageFigures]
    daily: StageFigures
    load_average_before: float
    load_average_after: float
    rows: dict[str, int]
    failed_checks: list[str]

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages.values())

    @property
    def total_cpu_seconds(self) -> float:
        return sum(s.cpu_seconds for s in self.stages.values())

    @property
    def peak_rss_bytes(self) -> int:
        return max(s.peak_rss_bytes for s in [*self.stages.values(), self.daily])

    def to_json(self) -> dict:
        return {
            "scrobbles": self.scrobbles,
            "scrobbles_loaded": self.scrobbles_loaded,
            "users": self.users,
            "days": self.days,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "total_seconds": round(self.total_seconds, 2),
            "total_cpu_seconds": round(self.total_cpu_seconds, 2),
            "peak_rss_bytes": self.peak_rss_bytes,
            "stages": {name: round(s.seconds, 2) for name, s in self.stages.items()},
            "stages_cpu_seconds": {name: round(s.cpu_seconds, 2) for name, s in self.stages.items()},
            "stages_peak_rss_bytes": {name: s.peak_rss_bytes for name, s in self.stages.items()},
            "training": self.stages["train"].detail if "train" in self.stages else None,
            "daily_incremental_seconds": round(self.daily.seconds, 2),
            "daily_incremental_cpu_seconds": round(self.daily.cpu_seconds, 2),
            "daily_incremental_detail": self.daily.detail,
            "load_average_before": self.load_average_before,
            "load_average_after": self.load_average_after,
            "rows": self.rows,
            "failed_checks": self.failed_checks,
        }


# -- one size, in its own process -------------------------------------------------------------------


def plan_days(users: int, seed: int, scrobbles: int, last_day: date) -> list[date]:
    """The fewest consecutive days ending on ``last_day`` whose listens add up to ``scrobbles``."""
    from music_platform.sources.synthetic.world import get_world

    world = get_world(seed, users)
    days, total = [], 0
    day = last_day
    while total < scrobbles:
        total += world.expected_scrobbles(day)
        days.append(day)
        day -= timedelta(days=1)
        if len(days) > 20 * 365:
            raise ValueError(f"{users} users do not reach {scrobbles:,} scrobbles in 20 years: add --users")
    return sorted(days)


def run_one_size(
    scrobbles: int, users: int, seed: int, data_dir: Path, run_config: dict, env: dict[str, str]
) -> SizeFigures:
    """Materialise the whole graph for ``scrobbles``, with the settings of ``env``."""
    import dagster as dg

    load_before = os.getloadavg()[0]
    today = datetime.now(UTC).date()
    new_day = today - timedelta(days=1)  # the daily run loads the last complete day
    sampler = TreeMemorySampler()
    stages: dict[str, StageFigures] = {}
    failed_checks: list[str] = []

    @contextmanager
    def stage(name: str, into: dict | None = None):
        sampler.reset()
        started, cpu = time.perf_counter(), tree_cpu_seconds()
        figures = StageFigures(0.0, 0.0, 0)
        yield figures
        figures.seconds = time.perf_counter() - started
        figures.cpu_seconds = tree_cpu_seconds() - cpu
        figures.peak_rss_bytes = sampler.peak
        if into is not None:
            into[name] = figures
        print(
            f"  {name:<9} {figures.seconds:8.1f} s wall {figures.cpu_seconds:8.1f} s CPU "
            f"{figures.peak_rss_bytes / 2**30:6.2f} GiB peak RSS  {figures.detail or ''}",
            file=sys.stderr,  # stdout carries dbt's own log lines (shown with --verbose)
            flush=True,
        )

    with sampler:
        with stage("generate", stages) as figures:
            days = plan_days(users, seed, scrobbles, new_day - timedelta(days=1))
            from music_platform.config import Settings
            from music_platform.definitions import build_defs
            from music_platform.resources import build_resources

            settings = Settings.from_env({**env, "MUSIC_PLATFORM_PARTITIONS_START": days[0].isoformat()})
            build_resources(settings)["kaggle"].resolve()  # writes the synthetic Kaggle CSV
            figures.detail = {"days": len(days), "first_day": days[0].isoformat(), "last_day": days[-1].isoformat()}

        definitions = build_defs(settings)
        job = definitions.resolve_implicit_global_asset_job_def()
        graph = definitions.resolve_asset_graph()
        instance = dg.DagsterInstance.ephemeral()
        group_of = {k: graph.get(k).group_name for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
        scrobbles_key = dg.AssetKey(["raw", "lastfm_scrobbles"])
        daily_dbt = [k for k in group_of if graph.get(k).partitions_def is not None and group_of[k] == "transform"]
        backfill = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        }

        def materialise(selection, tags=None, config=None):
            result = job.execute_in_process(
                instance=instance,
                asset_selection=selection,
                tags=tags or {},
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}, **(config or {})},
                raise_on_error=False,
            )
            for evaluation in result.get_asset_check_evaluations():
                if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                    failed_checks.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
            if not result.success:
                failures = [e for e in result.all_events if e.is_step_failure]
                detail = "; ".join(
                    f"{e.step_key}: {(e.step_failure_data.error.message if e.step_failure_data.error else '')[:400]}"
                    for e in failures
                )
                raise RuntimeError(f"run failed: {detail or 'see the Dagster events'}")
            return result

        ml_train = [dg.AssetKey(["ml", n]) for n in ("training_data", "lightfm_model", "model_evaluation")]
        ml_score = [k for k, g in group_of.items() if g == "ml" and k not in ml_train]

        with stage("load", stages):
            materialise([scrobbles_key], backfill)
            materialise([k for k, g in group_of.items() if g == "ingestion" and k != scrobbles_key])
        with stage("dbt", stages):
            materialise([k for k, g in group_of.items() if g == "transform"], backfill)
        with stage("train", stages) as train:
            train.detail = training_detail(materialise(ml_train, config=run_config))
        with stage("score", stages):
            materialise(ml_score)

        partition = {"dagster/partition": new_day.isoformat()}
        with stage("daily") as daily:
            started = time.perf_counter()
            materialise([scrobbles_key], partition)
            ingest_seconds = time.perf_counter() - started
            materialise(daily_dbt, partition)
            daily.detail = {
                "day": new_day.isoformat(),
                "ingest_seconds": round(ingest_seconds, 2),
                "dbt_seconds": round(time.perf_counter() - started - ingest_seconds, 2),
            }

    from music_platform.warehouse import connect_warehouse

    wh = connect_warehouse(settings)
    rows = {
        f"{schema}.{table}": wh.row_count(schema, table)
        for schema, table in [
            ("raw", "lastfm_scrobbles"),
            ("marts", "fct_listens"),
            ("marts", "user_track_interactions"),
            ("marts", "dim_tracks"),
            ("marts", "dim_users"),
            ("ml", "user_recommendations"),
            ("ml", "similar_tracks"),
        ]
        if wh.table_exists(schema, table)
    }
    backfilled = f"scrobble_date <= cast('{days[-1].isoformat()}' as date)"
    loaded = int(wh.query_df(f"select count(*) as n from raw.lastfm_scrobbles where {backfilled}").iloc[0, 0])
    return SizeFigures(
        scrobbles=scrobbles,
        scrobbles_loaded=loaded,
        users=users,
        days=len(days),
        first_day=days[0].isoformat(),
        last_day=days[-1].isoformat(),
        stages=stages,
        daily=daily,
        load_average_before=round(load_before, 2),
        load_average_after=round(os.getloadavg()[0], 2),
        rows=rows,
        failed_checks=failed_checks,
    )


def training_detail(result) -> dict:
    """How LightFM's epoch search ended, from the ``ml/lightfm_model`` materialisation's metadata."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.path == ["ml", "lightfm_model"]:
            metadata = materialization.metadata
            keys = ("epochs", "epochs_trained", "stopped_by", "fit_seconds")
            return {key: metadata[key].value for key in keys if key in metadata}
    return {}


def child_main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    env = {
        "MUSIC_PLATFORM_DATA_DIR": str(data_dir),
        "MUSIC_PLATFORM_TARGET": "duckdb",
        "MUSIC_PLATFORM_SOURCE": "synthetic",
        "MUSIC_PLATFORM_SYNTHETIC_USERS": str(args.users),
        "MUSIC_PLATFORM_SEED": str(args.seed),
        "MUSIC_PLATFORM_DBT_SERVER": "true" if args.dbt_server else "false",
    }
    figures = run_one_size(args.run_one, args.users, args.seed, data_dir, json.loads(args.run_config or "{}"), env)
    Path(args.result_file).write_text(json.dumps(figures.to_json(), indent=2))
    return 0


# -- the driver ------------------------------------------------------------------------------------


def _model_run_config(max_epochs: int | None, no_components: int | None) -> dict:
    """Run config for the ML assets that take ModelConfig (only what was asked to change)."""
    config = {k: v for k, v in (("max_epochs", max_epochs), ("no_components", no_components)) if v is not None}
    if not config:
        return {}
    return {"ops": {op: {"config": config} for op in ("ml__lightfm_model", "ml__model_evaluation")}}


def run_size(args: argparse.Namespace, scrobbles: int) -> dict:
    if args.keep_dir:  # the warehouse, models and audit trail stay for inspection
        Path(args.keep_dir).mkdir(parents=True, exist_ok=True)
        context = nullcontext(tempfile.mkdtemp(prefix=f"mp_scale_{scrobbles}_", dir=args.keep_dir))
    else:
        context = tempfile.TemporaryDirectory(prefix=f"mp_scale_{scrobbles}_")
    with context as tmp:
        result_file = Path(tmp) / "figures.json"
        command = [
            sys.executable, __file__, "--run-one", str(scrobbles), "--users", str(args.users), "--seed", str(args.seed),
            "--data-dir", str(Path(tmp) / "data"), "--result-file", str(result_file),
            "--run-config", json.dumps(_model_run_config(args.max_epochs, args.no_components)),
            *(["--dbt-server"] if args.dbt_server else []),
        ]  # fmt: skip
        completed = subprocess.run(command, stdout=None if args.verbose else subprocess.DEVNULL)
        if completed.returncode != 0:
            raise SystemExit(f"the {scrobbles:,}-scrobble run failed (exit {completed.returncode})")
        return json.loads(result_file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrobbles", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--users", type=int, default=5000, help="synthetic listeners (days follow from the size)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--max-epochs", type=int, help="LightFM epoch budget (run config; default: ModelConfig's)")
    parser.add_argument("--no-components", type=int, help="LightFM factors (run config; default: ModelConfig's)")
    parser.add_argument("--keep-dir", help="keep each size's data directory (warehouse, models) under this folder")
    parser.add_argument("--verbose", action="store_true", help="show dbt's and Dagster's output")
    parser.add_argument(
        "--dbt-server",
        action="store_true",
        help="run dbt through the warm dbt server (the default on Linux); without it each dbt invocation is a new "
        "process, as in the figures measured before it. Either way its CPU and memory are counted",
    )
    # internal: one size in a child process
    parser.add_argument("--run-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--run-config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return child_main(args)

    sizes = sorted(int(s.replace("_", "")) for s in args.scrobbles.split(",") if s.strip())
    print(
        f"pipeline scale benchmark: {', '.join(f'{s:,}' for s in sizes)} scrobbles, {args.users:,} users, "
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = []
    for scrobbles in sizes:
        print(f"\n{scrobbles:,} scrobbles", flush=True)
        results.append(run_size(args, scrobbles))
        report(results[-1])
    ok = verdict(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": results, "targets_met": ok}, indent=2))
        print(f"figures written to {args.json}")
    return 0 if ok else 1


def report(figures: dict) -> None:
    print(
        f"  {figures['scrobbles_loaded']:,} scrobbles loaded ({figures['users']:,} users x {figures['days']} days, "
        f"{figures['first_day']} .. {figures['last_day']})"
    )
    print(
        f"  total     {figures['total_seconds']:8.1f} s wall {figures['total_cpu_seconds']:8.1f} s CPU "
        f"{figures['peak_rss_bytes'] / 2**30:6.2f} GiB peak RSS; load average {figures['load_average_before']} "
        f"-> {figures['load_average_after']}"
    )
    daily = figures["daily_incremental_seconds"]
    print(
        f"  daily incremental run: {daily:.1f} s (target <= {TARGET_DAILY_SECONDS:.0f} s; "
        f"{figures['daily_incremental_detail']})"
    )
    print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in figures["rows"].items()))
    if figures["failed_checks"]:
        print(f"  FAILED CHECKS: {', '.join(figures['failed_checks'])}")


def verdict(results: list[dict]) -> bool:
    ok = all(not r["failed_checks"] for r in results)
    for r in results:
        if r["peak_rss_bytes"] > TARGET_PEAK_RSS_BYTES:
            print(f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB at {r['scrobbles']:,} exceeds 4 GiB")
            ok = False
    largest = results[-1]
    if largest["scrobbles"] >= 10_000_000:
        for name, value, target in (
            ("total seconds", largest["total_seconds"], TARGET_TOTAL_SECONDS_10M),
            ("daily incremental seconds", largest["daily_incremental_seconds"], TARGET_DAILY_SECONDS),
        ):
            met = value <= target
            ok &= met
            print(f"{largest['scrobbles']:,}: {name} {value:.1f} (target <= {target:.0f}) {'ok' if met else 'MISSED'}")
    if len(results) > 1:
        smallest = results[0]
        ratio = largest["total_seconds"] / smallest["total_seconds"]
        cpu_ratio = largest["total_cpu_seconds"] / smallest["total_cpu_seconds"]
        met = ratio <= TARGET_RATIO
        ok &= met
        print(
            f"time({largest['scrobbles']:,}) / time({smallest['scrobbles']:,}) = {ratio:.2f} wall, {cpu_ratio:.2f} CPU "
            f"(target <= {TARGET_RATIO:.0f}) {'ok' if met else 'MISSED'}"
        )
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
