"""Materialisation metadata that answers "can I trust this?" without a query."""


import dagster as dg
import pandas as pd

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


def table_metadata(frame: pd.DataFrame, table: RawTable | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": column_schema(frame),
        "preview": dg.MetadataValue.md(preview_markdown(frame)),
    }
    if "source" in frame.columns and len(frame):
        metadata["data_source"] = dg.MetadataValue.text(", ".join(sorted(map(str, frame["source"].dropna().unique()))))
    if table is not None:
        metadata["dagster/table_name"] = dg.MetadataValue.text(f"raw.{table.name}")
    return metadata
