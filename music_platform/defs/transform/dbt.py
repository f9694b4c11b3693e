"""The dbt project as Dagster assets: staging, intermediate and marts, with dbt tests as checks.

dbt runs in its own process and opens the warehouse itself; row counts are read after it has
finished (never while dbt holds the DuckDB file) and attached to each model's materialisation.
"""


import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from music_platform.config import Settings
from music_platform.resources import WarehouseResource
from music_platform.transformation.project import get_dbt_project
from music_platform.transformation.translator import MusicPlatformDbtTranslator

_settings = Settings.from_env()
dbt_project = get_dbt_project(_settings.target)
translator = MusicPlatformDbtTranslator(target=_settings.target)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    name="dbt_models",
    pool="warehouse",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    invocation = dbt.cli(["build"], context=context, raise_on_error=False)
    # Buffer the events so row counts can be added once dbt has released the warehouse.
    events = list(invocation.stream())
    counts = _row_counts(warehouse, events)
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in counts:
            yield event.with_metadata({**event.metadata, "dagster/row_count": dg.MetadataValue.int(counts[event.output_name])})
        else:
            yield event
    if not invocation.is_successful():
        error = invocation.get_error()
        raise dg.Failure(
            description="dbt build failed: see the failing models and tests above (dbt tests are asset checks).",
            metadata={"dbt_error": dg.MetadataValue.text(str(error) if error else "dbt exited non-zero")},
        )


def _row_counts(warehouse: WarehouseResource, events: list) -> dict[str, int]:
    outputs = [e for e in events if isinstance(e, dg.Output)]
    if not outputs:
        return {}
    wh = warehouse.get_warehouse()
    counts: dict[str, int] = {}
    for event in outputs:
        relation = event.metadata.get("dagster_dbt/relation_name") or event.metadata.get("relation_name")
        schema_table = _schema_and_table(relation.value if relation is not None else None, event.output_name)
        if schema_table and wh.table_exists(*schema_table):
            counts[event.output_name] = wh.row_count(*schema_table)
    return counts


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
