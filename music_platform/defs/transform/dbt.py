"""The dbt project as Dagster assets: staging, intermediate and marts, with dbt tests as checks.

Two ``@dbt_assets`` share the one dbt project:

- ``dbt_daily_models``: the incremental models (``fct_listens``, ``user_track_interactions``),
  incremental by listening day and partitioned like the raw scrobbles. A run (or a single-run
  backfill of many days) passes its partition range to dbt as dbt's time-window flags
  ``--event-time-start/--event-time-end`` (not ``--vars``, which would make dbt re-parse the
  whole project on every run), so a daily run restates one day, not all history.
  ``full_refresh: true`` in the run config
  rebuilds them from all history.
- ``dbt_models``: every other model, unpartitioned (views, dimensions, summaries). It is
  selected by materialisation rather than by excluding the incremental models, because dbt
  drops the tests of excluded models: the relationships of ``fct_listens`` to the dimensions
  are judged here, once the dimensions are rebuilt.

dbt runs in its own process and opens the warehouse itself; each model's table is read back
after dbt has finished (never while dbt holds the DuckDB file) and its row count, column schema,
preview, upstream tables and completeness are attached to the model's materialisation.

Both are built by ``dbt_assets_for(settings)`` (cached per settings)
inside this module's ``@dg.definitions`` function, from the settings the code location is built
from: nothing is read or parsed at import.
"""

from datetime import datetime
from functools import cache

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from music_platform.config import Settings, definitions_settings
from music_platform.lib.metadata import transformed_table_metadata
from music_platform.partitions import daily_partitions
from music_platform.quality.contracts import MART_REQUIRED_FIELDS
from music_platform.resources import WarehouseResource
from music_platform.runs.leases import note_child_process
from music_platform.transformation.project import (
    get_dbt_project,
    invocation_target_path,
    keep_partial_parse,
)
from music_platform.transformation.translator import MusicPlatformDbtTranslator

# The day-partitioned models are tagged "daily" (the incremental models, which accept the vars
# min_date/max_date, and the ledger view that judges their days); every other node is in the
# unpartitioned asset. That one is selected positively, without ``--exclude tag:daily``: dbt
# drops every test touching an excluded model, so the relationships of the daily models to the
# dimensions (attached to the dimensions through ``meta.dagster.ref``) would never be checks.
# The only views outside staging are daily (audit.listen_ledger), hence the path on views.
# test_definitions.py checks that the two selections split the models between them.
DAILY_MODELS_SELECTION = "tag:daily"
# Only materialisations the project uses: a criterion that matches nothing makes dbt print a
# warning on every run (test_definitions.py fails if a new kind of model falls outside both).
OTHER_MODELS_SELECTION = "config.materialized:table config.materialized:view,path:models/staging resource_type:seed"


class DailyDbtConfig(dg.Config):
    """Run configuration of the day-partitioned dbt models."""

    full_refresh: bool = False  # rebuild from all history instead of restating the partition range


def daily_build_args(window_start: datetime, window_end: datetime, full_refresh: bool = False) -> list[str]:
    """``dbt build`` arguments restating the days of a partition time window.

    The window goes to dbt's ``--event-time-start`` (inclusive) and ``--event-time-end``
    (exclusive, Dagster's convention too); the incremental models read it at run time
    (macros/partition_date_range.sql). Run arguments, unlike ``--vars``, leave dbt's partial
    parsing valid from one run to the next. Tests run only where every model they read was built in this invocation
    (``cautious``): a relationship to a dimension is judged when the dimension is rebuilt.
    dbt unit tests are left out: they check the SQL's logic on fixed rows, which a partition
    does not change, so the unpartitioned build (and a standalone ``dbt build``) runs them.
    """
    if window_end <= window_start:
        raise ValueError(f"empty partition window {window_start} .. {window_end}")
    args = [
        "build",
        "--event-time-start", window_start.strftime("%Y-%m-%dT%H:%M:%S"),
        "--event-time-end", window_end.strftime("%Y-%m-%dT%H:%M:%S"),
        "--indirect-selection", "cautious",
        "--exclude-resource-type", "unit_test",
    ]  # fmt: skip
    if full_refresh:
        args.append("--full-refresh")
    return args


@cache
def dbt_assets_for(settings: Settings) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The two dbt asset definitions for ``settings``: (day-partitioned models, the others)."""
    project = get_dbt_project(settings)
    translator = MusicPlatformDbtTranslator(target=settings.target)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        select=DAILY_MODELS_SELECTION,
        name="dbt_daily_models",
        partitions_def=daily_partitions(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="warehouse",
    )
    def dbt_daily_models(
        context: dg.AssetExecutionContext, config: DailyDbtConfig, dbt: DbtCliResource, warehouse: WarehouseResource
    ):
        window = context.partition_time_window
        args = daily_build_args(window.start, window.end, config.full_refresh)
        context.log.info(f"dbt {' '.join(args)}")
        yield from _build(context, dbt, warehouse, args)

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        select=OTHER_MODELS_SELECTION,
        name="dbt_models",
        pool="warehouse",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        yield from _build(context, dbt, warehouse, ["build"])

    return dbt_daily_models, dbt_models


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=list(dbt_assets_for(definitions_settings())))


#: A build that could not open the DuckDB file (another process held it) is retried this often,
#: this many seconds apart; the service's refresh holds it ~1 s every 10 s.
WAREHOUSE_LOCK_RETRIES = 5
WAREHOUSE_LOCK_WAIT_S = 3.0


def warehouse_was_locked(error_text: str) -> bool:
    """Whether dbt failed because DuckDB's file lock was held by another process."""
    return "Could not set lock on file" in error_text


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, args: list[str]):
    # One invocation per asset and run; it starts from the partial-parse state the previous one
    # left and leaves its own for the next (music_platform/transformation/project.py).
    name = context.op_execution_context.op.name
    target_path = invocation_target_path(dbt.project_dir, dbt.target, name, dbt.profiles_dir)
    invocation = dbt.cli(args, context=context, raise_on_error=False, target_path=target_path)
    # dbt outlives a killed Dagster process and would keep the DuckDB file: recorded in the
    # run's lease, it is stopped by the recovery of the next run (music_platform.runs).
    note_child_process(context.run.run_id, invocation.process.pid)
    # Buffer the events so table metadata can be added once dbt has released the warehouse.
    events = list(invocation.stream())
    # A failed invocation keeps its directory (dbt.log, the debug log of every node) for a look.
    keep_partial_parse(dbt.project_dir, dbt.target, target_path, dbt.profiles_dir, remove=invocation.is_successful())
    tables = _table_metadata(context, warehouse, events)
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in tables:
            yield event.with_metadata({**event.metadata, **tables[event.output_name]})
        else:
            yield event
    if not invocation.is_successful():
        error = invocation.get_error()
        if warehouse_was_locked(str(error) if error else "") and not any(isinstance(e, dg.Output) for e in events):
            # DuckDB lets one process write a file and none read it meanwhile: a reader (the
            # service's refresh of recent listens, a load) held it when dbt opened it. Nothing was
            # built: try again in a moment rather than fail the restatement (benchmark, issue 19).
            raise dg.RetryRequested(max_retries=WAREHOUSE_LOCK_RETRIES, seconds_to_wait=WAREHOUSE_LOCK_WAIT_S)
        raise dg.Failure(
            description="dbt build failed: see the failing models and tests above (dbt tests are asset checks).",
            metadata={"dbt_error": dg.MetadataValue.text(str(error) if error else "dbt exited non-zero")},
        )


def _table_metadata(context: dg.AssetExecutionContext, warehouse: WarehouseResource, events: list) -> dict[str, dict]:
    """Per dbt output: the metadata of the table it wrote (see ``transformed_table_metadata``)."""
    outputs = [e for e in events if isinstance(e, dg.Output)]
    if not outputs:
        return {}
    wh = warehouse.get_warehouse()
    metadata: dict[str, dict] = {}
    # One connection for the whole read-back (dbt has exited): on DuckDB, opening the file for each
    # of its hundreds of small queries cost 16 s for 33 tables at load 7, 1.5 s on one connection.
    with wh.session():
        for event in outputs:
            relation = event.metadata.get("dagster_dbt/relation_name") or event.metadata.get("relation_name")
            schema_table = _schema_and_table(relation.value if relation is not None else None, event.output_name)
            if not (schema_table and wh.table_exists(*schema_table)):
                continue
            key = context.assets_def.keys_by_output_name[event.output_name]
            upstream = sorted(dep.to_user_string() for dep in context.assets_def.asset_deps.get(key, ()))
            rules = MART_REQUIRED_FIELDS.get(schema_table[1]) if schema_table[0] == "marts" else None
            metadata[event.output_name] = transformed_table_metadata(wh, *schema_table, upstream=upstream, rules=rules)
    return metadata


def _schema_and_table(relation: str | None, output_name: str) -> tuple[str, str] | None:
    if relation:
        parts = [p.strip('"') for p in str(relation).split(".")]
        if len(parts) >= 2:
            return parts[-2].lower(), parts[-1].lower()
    # output names are the asset key joined with "__" (e.g. marts__dim_tracks)
    if "__" in output_name:
        schema, table = output_name.split("__", 1)
        return schema, table
    return None
