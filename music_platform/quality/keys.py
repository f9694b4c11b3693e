"""Key uniqueness of a table: how many key values occur more than once.

Pure SQL, free of Dagster (the asset checks in ``defs/quality/checks.py`` wrap it).
"""

from __future__ import annotations

from collections.abc import Sequence

from music_platform.warehouse.base import Warehouse


def duplicate_key_count(
    warehouse: Warehouse, schema: str, table: str, key: Sequence[str], where: str | None = None
) -> int:
    """Key values held by more than one row of ``schema.table`` (optionally filtered by ``where``)."""
    cols = ", ".join(key)
    filter_sql = f" where {where}" if where else ""
    sql = (
        f"select count(*) as n from (select {cols} from {warehouse.qualified(schema, table)}{filter_sql} "
        f"group by {cols} having count(*) > 1) as duplicated"
    )
    frame = warehouse.query_df(sql)
    return int(frame.iloc[0, 0])
