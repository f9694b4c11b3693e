"""Asset-check building blocks: completeness as a blocking check, key uniqueness.

The rules and their verdicts live in ``music_platform.quality`` (pure, free of Dagster); this
module only turns them into Dagster ``AssetCheckSpec``s and ``AssetCheckResult``s with metadata an
operator can act on (which column, which partition). The ingestion assets use these specs for
their own checks; ``marts.py``, ``ledger.py``, ``track_resolution.py`` and
``source_freshness.py`` beside it define the checks that stand alone.
"""

from collections.abc import Mapping, Sequence

import dagster as dg

from music_platform.quality.completeness import DEFAULT_THRESHOLD, CompletenessResult, measure_completeness
from music_platform.quality.keys import duplicate_key_count
from music_platform.resources import WarehouseResource
from music_platform.warehouse import Warehouse

COMPLETENESS = "completeness"
KEY_UNIQUE = "key_unique"


def completeness_spec(asset_key: dg.AssetKey | Sequence[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        COMPLETENESS,
        asset=asset_key,
        blocking=True,
        description=f"At least {DEFAULT_THRESHOLD:.0%} of rows have every required field present and valid "
        "(per partition for partitioned assets). Blocking: nothing downstream is built from bad data.",
    )


def key_unique_spec(asset_key: dg.AssetKey | Sequence[str], key: Sequence[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(KEY_UNIQUE, asset=asset_key, blocking=True, description=f"({', '.join(key)}) is unique.")


def completeness_result(
    result: CompletenessResult,
    *,
    asset_key: dg.AssetKey | None = None,
    allow_empty: bool = False,
) -> dg.AssetCheckResult:
    passed = result.passed or (allow_empty and result.total_rows == 0)
    metadata: dict[str, object] = {
        "completeness": dg.MetadataValue.float(round(result.share, 6)),
        "threshold": dg.MetadataValue.float(result.threshold),
        "rows_checked": dg.MetadataValue.int(result.total_rows),
        "valid_rows": dg.MetadataValue.int(result.valid_rows),
        "column_completeness": dg.MetadataValue.json({c: round(s, 6) for c, s in result.column_shares.items()}),
        "summary": dg.MetadataValue.text(result.describe()),
    }
    if result.failing_columns:
        metadata["failing_columns"] = dg.MetadataValue.json({c: round(s, 6) for c, s in result.failing_columns.items()})
    if result.failing_partitions:
        metadata["failing_partitions"] = dg.MetadataValue.json(
            {p: round(s, 6) for p, s in result.failing_partitions.items()}
        )
    return dg.AssetCheckResult(
        check_name=COMPLETENESS,
        asset_key=asset_key,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=result.describe(),
    )


def key_unique_result(
    warehouse: Warehouse,
    schema: str,
    table: str,
    key: Sequence[str],
    *,
    where: str | None = None,
    asset_key: dg.AssetKey | None = None,
) -> dg.AssetCheckResult:
    duplicates = duplicate_key_count(warehouse, schema, table, key, where)
    return dg.AssetCheckResult(
        check_name=KEY_UNIQUE,
        asset_key=asset_key,
        passed=duplicates == 0,
        metadata={"duplicated_keys": dg.MetadataValue.int(duplicates), "key": dg.MetadataValue.text(", ".join(key))},
        description=f"{duplicates} duplicated ({', '.join(key)}) values",
    )


def build_table_completeness_check(
    asset_key: dg.AssetKey,
    schema: str,
    table: str,
    rules: Mapping[str, str],
    *,
    description: str | None = None,
) -> dg.AssetChecksDefinition:
    """A blocking completeness check on a whole table (for unpartitioned assets and marts)."""

    @dg.asset_check(
        asset=asset_key,
        name=COMPLETENESS,
        blocking=True,
        description=description
        or f"At least {DEFAULT_THRESHOLD:.0%} of {schema}.{table} rows have every required field "
        f"({', '.join(rules)}) present and valid. Blocking.",
    )
    def _completeness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        wh = warehouse.get_warehouse()
        if not wh.table_exists(schema, table):
            return dg.AssetCheckResult(passed=False, description=f"{schema}.{table} does not exist")
        return completeness_result(measure_completeness(wh, schema, table, rules))

    return _completeness
