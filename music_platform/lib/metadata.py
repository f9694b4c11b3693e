"""Materialisation metadata that answers "can I trust this?" without a query.

Every materialisation records its row count (``dagster/row_count``), its column schema
(``dagster/column_schema``), a markdown preview of a few rows, where the data came from
(``data_source``) and, where a completeness rule exists, the share of valid rows per required
column (``completeness``, ``column_completeness``).
"""

import dagster as dg
import pandas as pd

from music_platform.quality.completeness import CompletenessResult, measure_completeness
from music_platform.sources.schemas import RawTable
from music_platform.warehouse.base import check_identifier

PREVIEW_ROWS = 5


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()])


def preview_markdown(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    if frame.empty:
        return "(no rows)"
    head = frame.head(rows).astype(str).map(lambda v: v if len(v) <= 40 else v[:37] + "...")
    header = "| " + " | ".join(map(str, head.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in head.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def completeness_metadata(result: CompletenessResult) -> dict[str, object]:
    """The completeness verdict as materialisation metadata (plotted over time in the UI)."""
    return {
        "completeness": dg.MetadataValue.float(round(result.share, 6)),
        "column_completeness": dg.MetadataValue.json({c: round(s, 6) for c, s in result.column_shares.items()}),
    }


def table_metadata(
    frame: pd.DataFrame, table: RawTable | None = None, completeness: CompletenessResult | None = None
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(preview_markdown(frame)),
    }
    if "source" in frame.columns and len(frame):
        metadata["data_source"] = dg.MetadataValue.text(", ".join(sorted(map(str, frame["source"].dropna().unique()))))
    if table is not None:
        metadata["dagster/table_name"] = dg.MetadataValue.text(f"raw.{table.name}")
    if completeness is not None:
        metadata.update(completeness_metadata(completeness))
    return metadata


def warehouse_table_metadata(warehouse, schema: str, table: str, rows: int = PREVIEW_ROWS) -> dict[str, object]:
    """Row count, column schema (warehouse types) and a preview of a table read back from the warehouse.

    For tables another process wrote (dbt): call it once that process has exited, never while it
    holds the DuckDB file. Types come from ``information_schema.columns``, which DuckDB, PostgreSQL
    and Snowflake all answer.
    """
    sample = warehouse.query_df(f"select * from {warehouse.qualified(schema, table)} limit {int(rows)}")
    sample.columns = [str(c).lower() for c in sample.columns]  # Snowflake answers in upper case
    columns = warehouse.query_df(
        "select column_name, data_type from information_schema.columns "
        f"where lower(table_schema) = '{schema.lower()}' and lower(table_name) = '{table.lower()}' "
        "order by ordinal_position"
    )
    columns.columns = [str(c).lower() for c in columns.columns]
    schema_value = (
        dg.TableSchema(
            columns=[
                dg.TableColumn(name=str(n).lower(), type=str(t))
                for n, t in zip(columns["column_name"], columns["data_type"], strict=True)
            ]
        )
        if len(columns)
        else column_schema(sample)
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(warehouse.row_count(schema, table)),
        "dagster/column_schema": schema_value,
        "preview": dg.MetadataValue.md(preview_markdown(sample, rows)),
        "dagster/table_name": dg.MetadataValue.text(f"{schema}.{table}"),
    }


def column_non_null_shares(warehouse, schema: str, table: str, columns: list[str]) -> dict[str, float]:
    """Share of non-null values per column, in one scan (for tables without a completeness contract)."""
    if not columns:
        return {}
    # Unquoted names (folded alike on every target) and positional aliases.
    counts = ", ".join(f"count({check_identifier(c)}) as nn_{i}" for i, c in enumerate(columns))
    frame = warehouse.query_df(f"select count(*) as total_rows, {counts} from {warehouse.qualified(schema, table)}")
    frame.columns = [str(c).lower() for c in frame.columns]
    row = frame.fillna(0).iloc[0]
    total = int(row["total_rows"])
    return {c: round(int(row[f"nn_{i}"]) / total, 6) if total else 0.0 for i, c in enumerate(columns)}


def transformed_table_metadata(
    warehouse,
    schema: str,
    table: str,
    *,
    upstream: list[str],
    rules: dict[str, str] | None = None,
) -> dict[str, object]:
    """Metadata of a table a transformation (dbt) wrote, read back once the transformation is done.

    Row count, column schema, preview, the upstream tables it was built from (``data_source``) and
    completeness: against the table's contract where it has one (``completeness``,
    ``column_completeness``), otherwise the share of non-null values per column
    (``column_non_null_share``).
    """
    metadata = warehouse_table_metadata(warehouse, schema, table)
    metadata["data_source"] = dg.MetadataValue.text(", ".join(upstream) if upstream else "(none)")
    if rules:
        metadata.update(completeness_metadata(measure_completeness(warehouse, schema, table, rules)))
    else:
        columns = [c.name for c in metadata["dagster/column_schema"].columns]
        metadata["column_non_null_share"] = dg.MetadataValue.json(
            column_non_null_shares(warehouse, schema, table, columns)
        )
    return metadata
