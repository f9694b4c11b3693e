"""``music-platform demo``: the whole asset graph, end to end, on synthetic data.

Runs the same definitions the Dagster UI shows, in this process and in stages (ingest,
transform, train and publish), then prints what was built: rows per table, every check's
verdict, the model's metrics beside the popularity baseline and sample recommendations.
Runs land in the Dagster instance at DAGSTER_HOME when it is set (``make demo`` sets it), so
``make dev`` shows them afterwards.

The demo reads the settings once (the environment over ``.env``), changes what it needs in its
own copy (``demo_settings``: the synthetic source, its size and seed, partitions that cover the
days it loads) and builds the definitions from that copy; it writes no environment variable.
It records the first day it loaded in the data dir (``partitions.json``), from which the
settings of every later process (``make dev``) start the daily partitions, unless
MUSIC_PLATFORM_PARTITIONS_START says otherwise.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.table import Table

from music_platform.config import Settings, record_partitions_start

COLUMNS_WHEN_PIPED = 400

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class StageOutcome:
    name: str
    seconds: float
    success: bool
    checks: list[tuple[str, bool, str, str]] = field(default_factory=list)  # (check, passed, severity, description)
    error: str | None = None


def demo_days(days: int, today: date | None = None) -> tuple[date, date]:
    """The last ``days`` complete UTC days: [today - days, today - 1]."""
    if days < 1:
        raise ValueError("--days must be at least 1")
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=days), today - timedelta(days=1)


def demo_settings(settings: Settings, users: int, seed: int, first_day: date) -> Settings:
    """The settings the demo runs with: the synthetic source at the given size and seed, and
    daily partitions that start no later than ``first_day``; the target stays as configured.
    Records ``first_day`` in the data dir (``record_partitions_start``)."""
    if users < 1:
        raise ValueError("--users must be at least 1")
    recorded = date.fromisoformat(record_partitions_start(settings.data_dir, first_day))
    configured = date.fromisoformat(settings.partitions_start_date)
    start = min(configured, first_day) if settings.partitions_start_configured else recorded
    return settings.with_overrides(
        source_mode="synthetic",
        synthetic_users=users,
        synthetic_seed=seed,
        partitions_start_date=start.isoformat(),
    )


def _instance():
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _run_stage(name, job, instance, selection, tags=None, run_id=None) -> StageOutcome:
    started = time.perf_counter()
    try:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags=tags or {},
            run_config=QUIET_LOGS,
            raise_on_error=False,
            run_id=run_id,
        )
    except Exception as exc:  # a definition or resource error: report it, do not hide it
        return StageOutcome(name, time.perf_counter() - started, False, error=f"{type(exc).__name__}: {exc}")
    checks = [
        (
            f"{e.asset_key.to_user_string()}:{e.check_name}",
            e.passed,
            e.severity.value,
            (e.description or "")[:160],
        )
        for e in result.get_asset_check_evaluations()
    ]
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        messages = [(e.step_failure_data.error.message if e.step_failure_data.error else "").strip() for e in failures]
        error = "; ".join(f"{e.step_key}: {m[:300]}" for e, m in zip(failures, messages, strict=True)) or "run failed"
    return StageOutcome(name, time.perf_counter() - started, result.success, checks, error)


def run_demo(users: int = 2000, days: int = 30, seed: int = 42) -> int:
    from music_platform.runs.progress import DBT_LOG_NAME, DemoProgress, console_for

    # snowflake-connector's vendored requests warns about the urllib3 it finds, at import time:
    # nothing an operator can act on, and the demo does not use Snowflake unless configured to.
    warnings.filterwarnings("ignore", message=r"urllib3 \(.*\) or chardet .* doesn't match a supported version")

    # Piped output (make demo | cat, a log file) gets no terminal width: tables then take the
    # width their content needs, so check names are never cut. The console keeps the real
    # stdout: while a stage runs, stdout is dbt's log file (music_platform.runs.progress).
    console = console_for(sys.stdout, COLUMNS_WHEN_PIPED)
    first_day, last_day = demo_days(days)
    if users < 1:
        raise ValueError("--users must be at least 1")
    settings = Settings.from_env()
    dbt_log = settings.data_dir / "logs" / DBT_LOG_NAME
    _rotate(dbt_log)
    console.print(
        f"[bold]music_platform demo[/]: {users} synthetic listeners, {days} days ({first_day} .. {last_day}), "
        f"seed {seed}; dbt's log: {dbt_log}",
        highlight=False,
    )
    with DemoProgress(console, dbt_log) as progress:
        code = _run_stages(progress, settings, users, seed, first_day, last_day)
    return code


def _rotate(log: Path) -> None:
    """Each demo starts a fresh dbt log; the previous demo's is kept beside it (``.1``)."""
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))


def _run_stages(progress, settings, users: int, seed: int, first_day: date, last_day: date) -> int:
    with progress.phase("starting: loading the definitions"):
        import dagster as dg

        from music_platform.definitions import build_defs
        from music_platform.runs.dagster_instance import storage_root
        from music_platform.runs.guard import RunGuard
        from music_platform.runs.recovery import report
        from music_platform.runs.sqlite_keeper import SqliteKeeper
        from music_platform.warehouse import connect_warehouse

        warehouse = connect_warehouse(settings)
        warehouse.check_reachable()  # an unreachable warehouse is one line before any run starts
        progress.print(f"warehouse {warehouse.describe()}", highlight=False)
        # Recorded once the warehouse answered: the data dir then says where its partitions start.
        settings = demo_settings(settings, users, seed, first_day)
        definitions = build_defs(settings)
        job = definitions.resolve_implicit_global_asset_job_def()
        instance = _instance()
        progress.instance = instance
        graph = definitions.resolve_asset_graph()
        group_of = {
            key: graph.get(key).group_name for key in graph.get_all_asset_keys() if graph.get(key).is_materializable
        }
    scrobbles = dg.AssetKey(["raw", "lastfm_scrobbles"])
    # The day-partitioned assets (scrobbles, then the incremental dbt models) run over the range ingested.
    ingested_range = {
        "dagster/asset_partition_range_start": first_day.isoformat(),
        "dagster/asset_partition_range_end": last_day.isoformat(),
    }
    stages = [
        ("ingest: scrobbles", [scrobbles], ingested_range),
        (
            "ingest: profiles, tags, charts, catalogue",
            [k for k, g in group_of.items() if g == "ingestion" and k != scrobbles],
            {},
        ),
        (
            "transform: dbt staging, intermediate, marts",
            [k for k, g in group_of.items() if g == "transform"],
            ingested_range,
        ),
        ("ml: train, evaluate, gate, publish", [k for k, g in group_of.items() if g == "ml"], {}),
    ]
    outcomes: list[StageOutcome] = []
    started = time.perf_counter()
    # Runs left behind by a killed demo are marked failed and their pool slots freed first;
    # Ctrl-C or SIGTERM then stops the current run cleanly (music_platform.runs.guard).
    guard = RunGuard(instance)
    # The instance's SQLite files stay open while the runs write their events: each of Dagster's
    # commits then appends to the file's log instead of ending WAL mode (music_platform.runs.sqlite_keeper).
    with SqliteKeeper(storage_root(instance)) as keeper:
        with progress.phase("starting: recovering runs a killed demo left behind"):
            report(guard.recover(), progress.print)
        for number, (name, selection, tags) in enumerate(stages, start=1):
            label = f"[{number}/{len(stages)}] {name}"

            def execute(run_id, label=label, selection=selection, tags=tags):
                keeper.keep_run(run_id)
                progress.watch_run(run_id)
                return _run_stage(label, job, instance, selection, tags, run_id)

            with progress.stage(label):
                outcome = guard.execute(execute)
            outcome.name = name
            outcomes.append(outcome)
            progress.stage_done(label, outcome.success, outcome.seconds)
            if not outcome.success:
                break
    total = time.perf_counter() - started
    with progress.phase("summary: counting rows, reading checks and recommendations"):
        _print_summary(progress, settings, outcomes, total)
    # A failed WARN check is advice (e.g. the gate holding a model that is not clearly better than
    # the live one, which keeps serving); only ERROR checks fail the demo.
    failed_checks = [c for o in outcomes for c in o.checks if not c[1] and c[2] != "WARN"]
    warned = [c[0] for o in outcomes for c in o.checks if not c[1] and c[2] == "WARN"]
    ok = all(o.success for o in outcomes) and len(outcomes) == len(stages) and not failed_checks
    progress.print(f"dbt's log (every dbt line of these runs): {progress.dbt_log_path}", highlight=False)
    progress.print(
        f"\n[bold {'green' if ok else 'red'}]{'demo succeeded' if ok else 'demo FAILED'}[/] in {total:.1f}s"
        + (
            ""
            if ok
            else f": {len(failed_checks)} failed check(s), " + ", ".join(o.name for o in outcomes if not o.success)
        )
        + (f" ({len(warned)} warning(s): {', '.join(warned)})" if warned else "")
    )
    return 0 if ok else 1


def _print_summary(progress, settings, outcomes: list[StageOutcome], total: float) -> None:
    from music_platform.warehouse import connect_warehouse

    console = progress  # prints through the progress display (its heartbeat keeps going meanwhile)
    wh = connect_warehouse(settings)
    with wh.session():  # the runs are over: one connection for the summary's many small queries
        _print_tables(console, wh, outcomes, total)


def _print_tables(console, wh, outcomes: list[StageOutcome], total: float) -> None:
    from music_platform.recommender.publication import live_publication, publication_row_counts, sql_text

    for outcome in outcomes:
        if outcome.error:
            console.print(f"[red]{outcome.name} failed:[/] {outcome.error}")

    rows = Table(title="Rows per table")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for schema, tables in SUMMARY_TABLES.items():
        for table in tables:
            if wh.table_exists(schema, table):
                rows.add_row(f"{schema}.{table}", f"{wh.row_count(schema, table):,}")
    # What the service serves: the live publication's rows (earlier publications are kept for rollback).
    live = live_publication(wh)
    if live is not None:
        for table, count in publication_row_counts(wh, live).items():
            rows.add_row(f"ml.{table} (live)", f"{count:,}")
    console.print(rows)

    checks = Table(title="Asset checks")
    checks.add_column("check", overflow="fold")  # shown in full, folded on a narrow terminal
    checks.add_column("result")
    checks.add_column("detail", overflow="fold")
    for outcome in outcomes:
        for name, passed, severity, description in outcome.checks:
            verdict = "[green]PASS[/]" if passed else f"[red]FAIL ({severity})[/]"
            checks.add_row(name, verdict, description)
    console.print(checks)

    _print_ledger(console, wh, outcomes)

    if wh.table_exists("ml", "model_evaluation"):
        evaluation = wh.query_df(
            "select metric, k, value, baseline_value from ml.model_evaluation "
            "where model_version = (select max(model_version) from ml.model_evaluation) "
            "and coalesce(selected, true) order by metric"
        )
        table = Table(title="Model evaluation (held-out split)")
        for col in ("metric", "k", "model", "popularity baseline"):
            table.add_column(col)
        for r in evaluation.itertuples(index=False):
            baseline = (
                "" if r.baseline_value is None or r.baseline_value != r.baseline_value else f"{r.baseline_value:.4f}"
            )
            cutoff = "" if r.k is None or r.k != r.k else str(int(r.k))  # no cut-off (AUC): blank, not nan
            table.add_row(str(r.metric), cutoff, f"{r.value:.4f}", baseline)
        console.print(table)

    if live is not None:  # as the service shows them: the live publication and its display fields
        pid = sql_text(live.publication_id)
        sample = wh.query_df(
            f"with users as (select distinct user_id from ml.user_recommendations where publication_id = {pid} "
            "order by user_id limit 3) "
            "select r.user_id, r.rank, t.track_name, t.artist_name, r.reason "
            "from ml.user_recommendations r join users u on r.user_id = u.user_id "
            f"join ml.published_tracks t on r.track_id = t.track_id and t.publication_id = {pid} "
            f"where r.publication_id = {pid} and r.rank <= 5 order by r.user_id, r.rank"
        )
        for user_id, recs in sample.groupby("user_id", sort=True):
            table = Table(title=f"Recommendations for {user_id}")
            for col in ("#", "track", "artist", "why"):
                table.add_column(col)
            for r in recs.itertuples(index=False):
                table.add_row(str(r.rank), str(r.track_name), str(r.artist_name), str(r.reason))
            console.print(table)
    console.print("stages: " + ", ".join(f"{o.name} {o.seconds:.1f}s" for o in outcomes) + f"; total {total:.1f}s")


def _print_ledger(console, wh, outcomes: list[StageOutcome]) -> None:
    """One line per layer: what it received, kept and set aside with a reason."""
    from music_platform.quality.ledger import layer_totals

    lines = [
        f"{'[green]ok[/]' if passed else '[red]FAIL[/]'} {description}"
        for outcome in outcomes
        for name, passed, _, description in outcome.checks
        if name.endswith((":scrobbles_accounted_for", ":rows_accounted_for"))
    ]
    totals = layer_totals(wh)
    lines += [f"{'[green]ok[/]' if ledger.passes() else '[red]FAIL[/]'} {ledger.describe()}" for ledger in totals]
    if not lines:
        return
    console.print("[bold]Ledger[/] (every row received = kept + set aside with a reason)")
    for line in lines:
        console.print("  " + line, soft_wrap=True)
    shares = [ledger.accounted_share for ledger in totals if ledger.accounted_share is not None]
    if shares:
        console.print(f"  rows accounted for: {min(shares):.2%} (the lowest share of any layer)", soft_wrap=True)


SUMMARY_TABLES = {
    "raw": [
        "lastfm_scrobbles",
        "lastfm_users",
        "lastfm_artist_tags",
        "lastfm_tag_top_tracks",
        "lastfm_chart_top_tracks",
        "kaggle_tracks",
        "kaggle_tracks_rejected",
        "ingestion_rejects",
    ],
    "audit": ["listens_set_aside", "listen_ledger", "source_ledger"],
    "marts": [
        "dim_users",
        "dim_artists",
        "dim_tracks",
        "artist_tags",
        "fct_listens",
        "user_track_interactions",
        "genre_summary",
    ],
    "ml": ["model_registry", "model_evaluation", "user_recommendations", "similar_tracks"],
}
