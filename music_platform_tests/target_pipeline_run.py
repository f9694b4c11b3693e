"""Run the whole graph once on the configured target and report what it built (test helper).

``test_targets_pipeline.py`` runs this module in a subprocess per target (DuckDB, PostgreSQL,
fakesnow), because the Dagster definitions read ``MUSIC_PLATFORM_TARGET`` when they are
loaded. Usage::

    MUSIC_PLATFORM_TARGET=... python -m music_platform_tests.target_pipeline_run \\
        --users 60 --days 2 --seed 7 --last-day 2025-03-02 --out result.json

It runs ``music-platform demo`` (``run_demo``) with the days pinned, so runs on several
targets use the same days, and LightFM on one thread, so its result depends on the data
only (with two threads Hogwild updates make precision vary run to run, and with it the
model gate). Then it re-runs a raw partition and the other raw loads, and the day-partitioned
dbt models when there are any, and writes row counts before and after as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

RAW = "raw"
INCREMENTAL_MARTS = ("fct_listens", "user_track_interactions")


def _counts(wh, tables: dict[str, list[str]]) -> dict[str, int]:
    return {
        f"{schema}.{table}": wh.row_count(schema, table)
        for schema, names in tables.items()
        for table in names
        if wh.table_exists(schema, table)
    }


def _histogram(wh, table: str, key: str) -> dict[str, int]:
    """How many ``key`` values have n rows, for every n: {"10": 60} = sixty keys with ten rows."""
    if not wh.table_exists("ml", table):
        return {}
    frame = wh.query_df(f"select {key}, count(*) as n from ml.{table} group by {key}")
    return {str(n): keys for n, keys in sorted(Counter(frame["n"].astype(int)).items())}


def _rounded(value) -> float | None:
    return None if value is None or value != value else round(float(value), 6)  # NaN != NaN


def _checks_of(result) -> list[tuple[str, bool]]:
    return [
        (f"{e.asset_key.to_user_string()}:{e.check_name}", bool(e.passed)) for e in result.get_asset_check_evaluations()
    ]


def run(users: int, days: int, seed: int, last_day: date) -> dict:
    from music_platform import demo
    from music_platform.recommender import training

    first_day = last_day - timedelta(days=days - 1)
    demo.demo_days = lambda days, today=None: (first_day, last_day)  # the same days on every target
    # The pipeline's LightFM params are built by training.ProductionConfig (ModelConfig.production());
    # refits reuse the stored params, so one thread holds for every fit.
    pipeline_params = training.ProductionConfig.lightfm_params
    training.ProductionConfig.lightfm_params = lambda self: dataclasses.replace(pipeline_params(self), num_threads=1)

    stages: list = []
    run_stage = demo._run_stage

    def recording_stage(*args, **kwargs):
        outcome = run_stage(*args, **kwargs)
        stages.append(outcome)
        return outcome

    demo._run_stage = recording_stage
    exit_code = demo.run_demo(users=users, days=days, seed=seed)

    import dagster as dg

    from music_platform.config import Settings
    from music_platform.definitions import build_defs
    from music_platform.warehouse import connect_warehouse

    wh = connect_warehouse(Settings.from_env())
    tables = {schema: list(names) for schema, names in demo.SUMMARY_TABLES.items()}
    report: dict = {
        "target": wh.target,
        "days": [first_day.isoformat(), last_day.isoformat()],
        "exit_code": exit_code,
        "stages": [{"name": o.name, "success": o.success, "error": o.error} for o in stages],
        "failed_checks": sorted({name for o in stages for name, passed, *_ in o.checks if not passed}),
        "counts": _counts(wh, tables),
        "recommendations_per_user": _histogram(wh, "user_recommendations", "user_id"),
        "similar_per_track": _histogram(wh, "similar_tracks", "track_id"),
    }
    if wh.table_exists("ml", "model_evaluation"):
        evaluation = wh.query_df(
            "select metric, value, baseline_value from ml.model_evaluation where coalesce(selected, true)"
        )
        report["evaluation"] = {
            r.metric: [_rounded(r.value), _rounded(r.baseline_value)] for r in evaluation.itertuples()
        }

    # Re-run: one raw partition, every unpartitioned raw load, then the day-partitioned dbt models,
    # through the definitions the demo built (its own settings: the synthetic world's size and seed).
    definitions = build_defs(demo.demo_settings(Settings.from_env(), users, seed, first_day))
    job = definitions.resolve_implicit_global_asset_job_def()
    graph = definitions.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    materializable = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    raw_partitioned = [k for k in materializable if k.path[0] == RAW and graph.get(k).partitions_def is not None]
    raw_whole = [
        k for k in materializable if graph.get(k).group_name == "ingestion" and graph.get(k).partitions_def is None
    ]
    reruns = []
    partition = first_day.isoformat()
    for selection, partition_key in ((raw_partitioned, partition), (raw_whole, None)):
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            partition_key=partition_key,
            run_config=demo.QUIET_LOGS,
            raise_on_error=False,
        )
        reruns.append(
            {
                "assets": sorted(k.to_user_string() for k in selection),
                "success": result.success,
                "failed_checks": sorted(n for n, ok in _checks_of(result) if not ok),
            }
        )
    report["counts_after_raw_rerun"] = _counts(wh, {RAW: tables[RAW]})

    marts = [dg.AssetKey(["marts", name]) for name in INCREMENTAL_MARTS]
    partitioned_marts = [k for k in marts if graph.has(k) and graph.get(k).partitions_def is not None]
    if partitioned_marts:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=partitioned_marts,
            partition_key=partition,
            run_config=demo.QUIET_LOGS,
            raise_on_error=False,
        )
        reruns.append(
            {
                "assets": sorted(k.to_user_string() for k in partitioned_marts),
                "success": result.success,
                "failed_checks": sorted(n for n, ok in _checks_of(result) if not ok),
            }
        )
        report["counts_after_marts_rerun"] = _counts(wh, {"marts": list(INCREMENTAL_MARTS)})
    report["reruns"] = reruns
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--last-day", type=date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = run(args.users, args.days, args.seed, args.last_day)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
