"""dbt source freshness, judged from the dbt manifest: the same rules `dbt source freshness` applies.

Every dbt source table declares ``loaded_at_field`` and ``freshness`` (``warn_after``,
``error_after``) in ``dbt/models/staging/*/_*__sources.yml``. ``source_freshness_rules`` reads
them from the manifest, so the Dagster checks on the raw assets
(``music_platform/defs/quality/source_freshness.py``) use exactly dbt's windows; ``judge`` compares
the newest ``loaded_at_field`` value of a table with them. Free of Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from music_platform.warehouse.base import Warehouse

_PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _window(threshold: Mapping[str, Any] | None) -> timedelta | None:
    if not threshold or threshold.get("count") is None or threshold.get("period") is None:
        return None
    return threshold["count"] * _PERIODS[threshold["period"]]


@dataclass(frozen=True)
class SourceFreshnessRule:
    """One dbt source table's freshness declaration."""

    asset_key: tuple[str, ...]  # the Dagster asset of the raw table (meta.dagster.asset_key)
    schema: str
    table: str
    loaded_at_field: str
    warn_after: timedelta | None
    error_after: timedelta | None

    def describe(self) -> str:
        windows = [
            f"{name} after {window}"
            for name, window in (("warn", self.warn_after), ("fail", self.error_after))
            if window
        ]
        return f"newest {self.loaded_at_field} of {self.schema}.{self.table}: {', '.join(windows)}"


@dataclass(frozen=True)
class FreshnessVerdict:
    status: str  # "pass" | "warn" | "error" | "empty" (no rows in a warn-only source)
    newest_loaded_at: datetime | None
    age: timedelta | None
    description: str


def source_freshness_rules(manifest: Mapping[str, Any]) -> list[SourceFreshnessRule]:
    """The source tables of a dbt manifest that declare a freshness, in manifest order."""
    rules = []
    for source in manifest.get("sources", {}).values():
        freshness = source.get("freshness") or {}
        warn_after, error_after = _window(freshness.get("warn_after")), _window(freshness.get("error_after"))
        if not source.get("loaded_at_field") or not (warn_after or error_after):
            continue
        asset_key = (source.get("meta") or {}).get("dagster", {}).get("asset_key") or [
            source["source_name"],
            source["name"],
        ]
        rules.append(
            SourceFreshnessRule(
                asset_key=tuple(asset_key),
                schema=source["schema"],
                table=source.get("identifier") or source["name"],
                loaded_at_field=source["loaded_at_field"],
                warn_after=warn_after,
                error_after=error_after,
            )
        )
    return rules


def newest_loaded_at(warehouse: Warehouse, rule: SourceFreshnessRule) -> datetime | None:
    """The newest ``loaded_at_field`` value of the table (UTC), None when it is missing or empty."""
    if not warehouse.table_exists(rule.schema, rule.table):
        return None
    # The row count decides emptiness: some drivers (Snowflake's through pandas) turn the NULL
    # max() of an empty table into the epoch rather than a missing value.
    frame = warehouse.query_df(
        f"select count(*) as row_count, max({rule.loaded_at_field}) as newest "
        f"from {warehouse.qualified(rule.schema, rule.table)}"
    )
    frame.columns = [c.lower() for c in frame.columns]
    value = frame["newest"].iloc[0]
    if int(frame["row_count"].iloc[0]) == 0 or value is None or pd.isna(value):
        return None
    newest = pd.Timestamp(value).to_pydatetime()
    # The raw tables store UTC; a naive timestamp is UTC.
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


def judge(rule: SourceFreshnessRule, newest: datetime | None, now: datetime) -> FreshnessVerdict:
    """dbt's rule: error when older than error_after, else warn when older than warn_after.

    An empty table fails (error) when its source has an error_after; a warn-only source
    (optional or static) may be empty.
    """
    where = f"{rule.schema}.{rule.table}"
    if newest is None:
        if rule.error_after:
            return FreshnessVerdict("error", None, None, f"{where} has no rows: nothing was ever landed")
        # A source that only warns is optional or static (Spotify without credentials, an empty
        # Kaggle drop folder): empty is its normal state, which other checks report, not staleness.
        return FreshnessVerdict("empty", None, None, f"{where} has no rows: an optional source, nothing to judge")
    age = now - newest
    if rule.error_after and age > rule.error_after:
        status, limit = "error", f"older than the fail window {rule.error_after}"
    elif rule.warn_after and age > rule.warn_after:
        status, limit = "warn", f"older than the warn window {rule.warn_after}"
    else:
        status, limit = "pass", "within its windows"
    return FreshnessVerdict(
        status,
        newest,
        age,
        f"{where}: newest {rule.loaded_at_field} {newest:%Y-%m-%d %H:%M} UTC, {_hours(age)} old, {limit}",
    )


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"
