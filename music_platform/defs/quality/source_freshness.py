"""dbt source freshness as asset checks on the raw assets, visible in the Dagster UI.

One ``source_freshness`` check per dbt source table with a freshness (every one): the windows and
the ``loaded_at_field`` come from the dbt manifest (the sources' YAML), so the UI and
``dbt source freshness`` judge alike. Past ``error_after`` the check fails (ERROR), past
``warn_after`` it fails as a WARN; an empty table fails unless its source only warns (Spotify
without credentials, an empty Kaggle drop folder: other checks report those). Freshness worsens
while nothing runs, so the checks are evaluated hourly (automation) besides running with their raw
asset's materialisations. Not blocking: stale raw data is reported, the last good data flows on.
"""

import json
from datetime import UTC, datetime

import dagster as dg

from music_platform.defs.transform.dbt import dbt_project
from music_platform.quality.source_freshness import judge, newest_loaded_at, source_freshness_rules
from music_platform.resources import WarehouseResource

CHECK_NAME = "source_freshness"
HOURLY = dg.AutomationCondition.cron_tick_passed("15 * * * *") & ~dg.AutomationCondition.in_progress()

source_rules = source_freshness_rules(json.loads(dbt_project.manifest_path.read_text()))
_rules_by_key = {dg.AssetKey(list(rule.asset_key)): rule for rule in source_rules}
_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


@dg.multi_asset_check(
    name="raw_source_freshness",
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            description=f"dbt source freshness: {rule.describe()} (dbt/models/staging/*/_*__sources.yml).",
            automation_condition=HOURLY,
        )
        for key, rule in _rules_by_key.items()
    ],
    can_subset=True,
)
def raw_source_freshness(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get_warehouse()
    now = datetime.now(UTC)
    for check_key in context.selected_asset_check_keys:
        rule = _rules_by_key[check_key.asset_key]
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
