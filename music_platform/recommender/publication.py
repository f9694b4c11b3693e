"""Which model version is live: the on-disk registry mirrored into ``ml.model_registry``.

The service serves the latest version whose status is 'published'; rolling back retires the
live version so the previously published one becomes live again (its recommendations are
still in the warehouse under its model_version).
"""

from __future__ import annotations

import pandas as pd

from music_platform.recommender.registry import ModelRegistry, ModelVersion
from music_platform.warehouse import Warehouse

ML = "ml"
REGISTRY_TABLE = "model_registry"


def sync_registry_table(warehouse: Warehouse, registry: ModelRegistry) -> pd.DataFrame:
    """Replace ml.model_registry with the registry's versions (the service polls this table)."""
    table = pd.DataFrame([v.registry_row() for v in registry.list_versions()])
    for column in ("created_at", "published_at"):
        if column in table.columns:
            table[column] = pd.to_datetime(table[column], utc=True).dt.tz_localize(None)
    warehouse.replace_table(ML, REGISTRY_TABLE, table)
    return table


def rollback(warehouse: Warehouse, registry: ModelRegistry) -> tuple[ModelVersion, ModelVersion]:
    """Retire the live version; returns (retired, now live). The service switches on its next poll."""
    live = registry.latest_published()
    previous = registry.rollback()
    sync_registry_table(warehouse, registry)
    return live, previous
