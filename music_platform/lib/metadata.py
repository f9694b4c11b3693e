"""Materialisation metadata that answers "can I trust this?" without a query.

Every materialisation records its row count (``dagster/row_count``), its column schema
(``dagster/column_schema``), a markdown preview of a few rows, where the data came from
(``data_source``) and, where a completeness rule exists, the share of valid rows per required
column (``completeness``, ``column_completeness``).
"""


import dagster as dg
import pandas as pd

from music_platform.quality.completeness import CompletenessResult
from music_platform.sources.schemas import RawTable

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
