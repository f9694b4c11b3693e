"""How dbt nodes become Dagster assets: keys mirror the warehouse schemas.

Models get ``[schema, name]`` keys (``marts/dim_tracks``), sources keep the raw asset keys
named in their ``meta.dagster.asset_key``, every model carries a freshness policy, owners,
kinds and an automation condition that rebuilds it when upstream data changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from music_platform.policies import (
    OWNERS,
    REALTIME_ASSET_KEYS,
    REALTIME_PARTITIONS,
    absorbs_realtime,
    freshness_for_layer,
)

_LAYER_GROUPS = {"staging": "transform", "intermediate": "transform", "marts": "transform"}


class MusicPlatformDbtTranslator(DagsterDbtTranslator):
    def __init__(self, target: str = "duckdb"):
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True))
        self.target = target

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id) or {}
        if node.get("resource_type") not in ("model", "seed"):
            return spec
        layer = node.get("config", {}).get("schema") or "marts"
        return spec.replace_attributes(
            key=dg.AssetKey([layer, node["name"]]),
            group_name=_LAYER_GROUPS.get(layer, "transform"),
            owners=OWNERS["transform"],
            freshness_policy=freshness_for_layer(layer),
            automation_condition=self._automation_condition(manifest, node),
            kinds={"dbt", self.target},
        )

    def _automation_condition(self, manifest: Mapping[str, Any], node: Mapping[str, Any]) -> dg.AutomationCondition:
        """Real time (issue 19): the day-partitioned models (tag daily) follow today's raw data within
        minutes; an unpartitioned model reading them or the raw scrobbles rebuilds daily, once the
        day has settled, instead of every few minutes; the rest is eager."""
        if "daily" in (node.get("tags") or ()):
            return REALTIME_PARTITIONS
        realtime = {tuple(key.path) for key in REALTIME_ASSET_KEYS}
        for parent_id in (node.get("depends_on") or {}).get("nodes", ()):
            parent = manifest["nodes"].get(parent_id) or manifest["sources"].get(parent_id) or {}
            if parent.get("resource_type") == "source":
                key = tuple(((parent.get("meta") or {}).get("dagster") or {}).get("asset_key") or ())
            else:
                key = ((parent.get("config") or {}).get("schema") or "marts", parent.get("name"))
            if key in realtime:
                return absorbs_realtime()
        return dg.AutomationCondition.eager()
