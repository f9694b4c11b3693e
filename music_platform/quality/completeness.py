"""Completeness of a table: the share of rows whose required fields are present and valid.

Pure SQL generation and evaluation, free of Dagster, so the same rule serves the asset
checks, the demo summary and the tests. A table (or any one partition of it) passes when at
least ``threshold`` of its rows are valid in every required field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from music_platform.sources.schemas import NOW_UTC

DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True)
class CompletenessResult:
    total_rows: int
    valid_rows: int
    column_shares: dict[str, float]
    threshold: float
    failing_columns: dict[str, float] = field(default_factory=dict)
    failing_partitions: dict[str, float] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.valid_rows / self.total_rows if self.total_rows else 0.0

    @property
    def passed(self) -> bool:
        return self.total_rows > 0 and self.share >= self.threshold and not self.failing_partitions

    def describe(self) -> str:
        if self.total_rows == 0:
            return "no rows to check"
        parts = [f"{self.share:.2%} of {self.total_rows} rows complete (threshold {self.threshold:.0%})"]
        if self.failing_columns:
            cols = ", ".join(f"{c} {s:.2%}" for c, s in sorted(self.failing_columns.items(), key=lambda kv: kv[1]))
            parts.append(f"columns below threshold: {cols}")
        if self.failing_partitions:
            parts.append(
                "partitions below threshold: "
                + ", ".join(f"{p} {s:.2%}" for p, s in sorted(self.failing_partitions.items()))
            )
        return "; ".join(parts)


def completeness_sql(
    qualified_table: str,
    rules: Mapping[str, str],
    where: str | None = None,
    group_by: str | None = None,
) -> str:
    """One query counting valid rows per required column and overall (optionally per group)."""
    if not rules:
        raise ValueError(f"no required columns given for {qualified_table}")
    per_column = [f"sum(case when {rule} then 1 else 0 end) as valid__{col}" for col, rule in rules.items()]
    all_valid = " and ".join(rules.values())
    select = [
        *([f"cast({group_by} as varchar) as partition_value"] if group_by else []),
        "count(*) as total_rows",
        f"sum(case when {all_valid} then 1 else 0 end) as valid_rows",
        *per_column,
    ]
    sql = f"select {', '.join(select)} from {qualified_table}"
    if where:
        sql += f" where {where}"
    if group_by:
        sql += f" group by {group_by}"
    return sql.replace(NOW_UTC, now_utc_literal())


def now_utc_literal(skew: timedelta = timedelta(hours=1)) -> str:
    """The current UTC time plus allowed clock skew, as a portable SQL timestamp literal."""
    moment = datetime.now(UTC).replace(tzinfo=None) + skew
    return f"cast('{moment.isoformat(sep=' ', timespec='seconds')}' as timestamp)"


def evaluate_completeness(
    counts: pd.DataFrame, columns: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> CompletenessResult:
    """Turn the counts of ``completeness_sql`` into a verdict (per partition when grouped)."""
    counts = counts.copy()
    counts.columns = [c.lower() for c in counts.columns]  # Snowflake answers in upper case
    numeric = counts.drop(columns=["partition_value"], errors="ignore").fillna(0).astype("int64")
    total = int(numeric["total_rows"].sum())
    valid = int(numeric["valid_rows"].sum())
    shares = {c: (int(numeric[f"valid__{c}"].sum()) / total if total else 0.0) for c in columns}
    failing_columns = {c: s for c, s in shares.items() if s < threshold}
    failing_partitions: dict[str, float] = {}
    if "partition_value" in counts.columns:
        for label, row in zip(counts["partition_value"], numeric.itertuples(index=False), strict=True):
            share = row.valid_rows / row.total_rows if row.total_rows else 0.0
            if share < threshold:
                failing_partitions[str(label)] = share
                # name the guilty columns of a failing partition even when the whole table passes
                for c in columns:
                    col_share = getattr(row, f"valid__{c}") / row.total_rows
                    if col_share < threshold:
                        failing_columns[c] = min(col_share, failing_columns.get(c, 1.0))
    return CompletenessResult(
        total_rows=total,
        valid_rows=valid,
        column_shares=shares,
        threshold=threshold,
        failing_columns=failing_columns,
        failing_partitions=failing_partitions,
    )


def measure_completeness(
    warehouse,
    schema: str,
    table: str,
    rules: Mapping[str, str],
    *,
    where: str | None = None,
    group_by: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> CompletenessResult:
    """Run the completeness query on a ``Warehouse`` and evaluate it."""
    counts = warehouse.query_df(completeness_sql(warehouse.qualified(schema, table), rules, where, group_by))
    return evaluate_completeness(counts, list(rules), threshold)
