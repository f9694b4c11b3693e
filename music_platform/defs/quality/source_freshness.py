"""dbt source freshness as asset checks on the raw assets, visible in the Dagster UI.

One ``source_freshness`` check per dbt source table with a freshness (every one): the windows and
the ``loaded_at_field`` come from the dbt manifest (the sources' YAML), so the UI and
``dbt source freshness`` judge alike. Past ``error_after`` the check fails (ERROR), past
``warn_after`` it fails as a WARN; an empty table fails unless its source only warns (Spotify
without credentials, an empty Kaggle drop folder: other checks report those). Freshness worsens
while nothing runs, so the checks are evaluated hourly (automation) besides running with their raw
asset's materialisations. Not blocking: stale raw data is reported, the last good data flows on.

Built from the dbt manifest of the settings the code location is built from
(``freshness_check_for``), in this module's ``@dg.definitions`` function: nothing at import.
"""

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import dagster as dg

from music_platform.config import Settings, definitions_settings
from music_platform.quality.source_freshness import SourceFreshnessRule, judge, newest_loaded_at, source_freshness_rules
from music_platform.resources import WarehouseResource
from music_platform.transformation.project import get_dbt_project

CHECK_NAME = "source_freshness"
HOURLY = dg.AutomationCondition.cron_tick_passed("15 * * * *") & ~dg.AutomationCondition.in_progress()
_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


def freshness_check_for(settings: Settings) -> tuple[dg.AssetChecksDefinition, list[SourceFreshnessRule]]:
    """The ``raw_source_freshness`` checks and the rules they apply, from the manifest of ``settings``."""
    return _freshness_check(get_dbt_project(settings).manifest_path)


@cache
def _freshness_check(manifest_path: Path):
    source_rules = source_freshness_rules(json.loads(manifest_path.read_text()))
    rules_by_key = {dg.AssetKey(list(rule.asset_key)): rule for rule in source_rules}

    @dg.multi_asset_check(
        name="raw_source_freshness",
        specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description=f"dbt source freshness: {rule.describe()} (dbt/models/staging/*/_*__sources.yml).",
                automation_condition=HOURLY,
            )
            for key, rule in rules_by_key.items()
        ],
        can_subset=True,
    )
    def raw_source_freshness(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        yield from _judge_sources(context, warehouse, rules_by_key)

    return raw_source_freshness, source_rules


@dg.definitions
def defs() -> dg.Definitions:
    check, _ = freshness_check_for(definitions_settings())
    return dg.Definitions(asset_checks=[check])


def _judge_sources(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, rules_by_key: dict):
    wh = warehouse.get_warehouse()
    now = datetime.now(UTC)
    for check_key in context.selected_asset_check_keys:
        rule = rules_by_key[check_key.asset_key]
        verdict = judge(rule, newest_loaded_at(wh, rule), now)
        metadata = {
            "loaded_at_field": dg.MetadataValue.text(rule.loaded_at_field),
            "status": dg.MetadataValue.text(verdict.status),
        }
        if verdict.newest_loaded_at is not None:
            metadata["newest_loaded_at"] = dg.MetadataValue.timestamp(verdict.newest_loaded_at)
            metadata["age_hours"] = dg.MetadataValue.float(round(verdict.age.total_seconds() / 3600, 2))
        for name, window in (("warn_after_hours", rule.warn_after), ("error_after_hours", rule.error_after)):
            if window is not None:
                metadata[name] = dg.MetadataValue.float(window.total_seconds() / 3600)
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=CHECK_NAME,
            passed=verdict.status in ("pass", "empty"),
            severity=_SEVERITY.get(verdict.status, dg.AssetCheckSeverity.WARN),
            metadata=metadata,
            description=verdict.description,
        )
