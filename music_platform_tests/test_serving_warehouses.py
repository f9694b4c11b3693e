"""The service loads the same answers from every warehouse target (issue 7).

The sample world is written to DuckDB, copied table by table to PostgreSQL and to Snowflake
(fakesnow) through the ``Warehouse`` API, and each target's snapshot must answer exactly as
DuckDB's does.
"""

from __future__ import annotations

import pytest

from music_platform.config import Settings
from music_platform.serving.sample_data import write_sample_warehouse
from music_platform.serving.service import RecommendationService, ServingConfig
from music_platform.serving.snapshot import load_snapshot
from music_platform.warehouse import connect_warehouse
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

TABLES = (
    ("marts", "dim_tracks"),
    ("marts", "dim_artists"),
    ("ml", "user_recommendations"),
    ("ml", "similar_tracks"),
    ("ml", "model_registry"),
    ("ml", "published_tracks"),
    ("ml", "published_artists"),
)
USERS = ["user_0000001", "user_0000042", "user_0000080", "someone_unknown"]


@pytest.fixture(scope="module")
def duckdb_world(tmp_path_factory) -> DuckDBWarehouse:
    root = tmp_path_factory.mktemp("serving-targets")
    warehouse = DuckDBWarehouse(root / "warehouse.duckdb")
    write_sample_warehouse(warehouse, users=80, artists=40, tracks=300, model_version="v7")
    return warehouse


def answers(snapshot) -> dict[str, bytes]:
    found = {f"user {u}": snapshot.user_recommendations_json(u, 10) for u in USERS}
    for track_id in snapshot.catalogue.track_ids[:25]:
        found[f"similar {track_id}"] = snapshot.similar_tracks_json(track_id, 10)
    return found


@pytest.mark.parametrize(
    "target",
    [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("snowflake")],
)
def test_every_target_serves_what_duckdb_serves(request, duckdb_world, target, tmp_path):
    if target == "postgres":
        settings = Settings(target="postgres", postgres_url=request.getfixturevalue("postgres_url"), data_dir=tmp_path)
    else:
        settings = request.getfixturevalue("snowflake_settings").with_overrides(data_dir=tmp_path)
    warehouse = connect_warehouse(settings)
    for schema, table in TABLES:
        warehouse.replace_table(schema, table, duckdb_world.read_table(schema, table))

    expected = answers(load_snapshot(duckdb_world, "v7"))
    service = RecommendationService(settings, ServingConfig(reload_seconds=0))
    outcome = service.reload()
    assert outcome.error is None and outcome.model_version == "v7"
    assert answers(service.snapshot) == expected
