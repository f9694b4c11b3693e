"""The service on a real trained model: the recommender's tables and its cold start (issue 7).

A LightFM model is trained on a small world with known taste clusters, saved in the model
registry and its ``user_recommendations`` / ``similar_tracks`` written to the warehouse, as the
``ml`` assets do. The service must serve those rows and answer cold start through the model.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.recommender import (
    ModelRegistry,
    build_dataset,
    recommend_top_k,
    similar_items,
    train_lightfm,
)
from music_platform.recommender.publication import Publication, sync_registry_table, write_display_snapshot
from music_platform.recommender.synthetic import taste_clusters
from music_platform.serving.app import create_app
from music_platform.serving.service import ServingConfig
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

with warnings.catch_warnings():  # starlette suggests httpx2, which is not a dependency here
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:UserWarning")

VERSION = "20260101T000000Z-test01"
PUBLICATION = "20260101T000000000000-test01"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-model")
    settings = Settings(target="duckdb", data_dir=root, duckdb_path=root / "warehouse.duckdb")
    world = taste_clusters(n_users=120, n_clusters=4, unplayed_tracks_per_cluster=2, seed=0)
    dataset = build_dataset(world.interactions, world.tracks, world.artist_tags)
    model = train_lightfm(dataset)
    registry = ModelRegistry(settings.models_dir)
    saved = registry.save(model, status="published", version=VERSION)

    warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
    listens = world.interactions.groupby("track_id")["play_count"].sum()
    tracks = world.tracks.assign(listen_count=world.tracks["track_id"].map(listens).fillna(0).astype("int64"))
    warehouse.replace_table("marts", "dim_tracks", tracks.drop(columns=["cluster", "playable"]))
    artists = tracks.groupby(["artist_id", "artist_name", "genre"], as_index=False)["listen_count"].sum()
    # An artist the warehouse knows but the model does not (no tracks): cold start must still work.
    extra = pd.DataFrame(
        [{"artist_id": "a_new", "artist_name": "Ünknown Newcomer", "genre": "jazz", "listen_count": 0}]
    )
    artists = pd.concat([artists.assign(top_tags=artists["genre"]), extra.assign(top_tags="jazz")], ignore_index=True)
    warehouse.replace_table("marts", "dim_artists", artists)
    generated = datetime.now(UTC)
    recommendations = recommend_top_k(model, dataset, k=10).assign(
        model_version=VERSION, generated_at=generated, publication_id=PUBLICATION
    )
    warehouse.replace_table("ml", "user_recommendations", recommendations)
    warehouse.replace_table("ml", "similar_tracks", similar_items(model, k=10).assign(model_version=VERSION))
    # Published as the pipeline does: display fields copied beside the rows, then the pointer.
    write_display_snapshot(warehouse, PUBLICATION)
    sync_registry_table(warehouse, registry, live=Publication(saved.version, PUBLICATION))
    return settings, world, recommendations


@pytest.fixture(scope="module")
def client(trained):
    settings, _, _ = trained
    with TestClient(create_app(settings, ServingConfig(reload_seconds=0))) as test_client:
        yield test_client


def test_health_says_cold_start_uses_the_model(client):
    health = client.get("/health").json()
    assert health["model_version"] == VERSION
    assert health["cold_start"] == "model"


def test_served_recommendations_are_the_recommenders_rows(client, trained):
    _, _, recommendations = trained
    expected = recommendations[recommendations["user_id"] == "u7"].sort_values("rank")
    body = client.get("/users/u7/recommendations").json()
    assert [i["track_id"] for i in body["recommendations"]] == expected["track_id"].tolist()
    assert [i["reason"] for i in body["recommendations"]] == expected["reason"].tolist()


def test_cold_start_through_the_model_stays_in_the_named_cluster(client, trained):
    _, world, _ = trained
    cluster = world.cluster_of_track()
    answer = client.post("/recommendations?k=8", json={"artists": ["ARTIST 2-1"], "tracks": ["Song 2-3-0"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["strategy"] == "model"
    assert body["fallback"] is False
    recommended = [i["track_id"] for i in body["recommendations"]]
    assert len(recommended) == 8
    assert "t2_3_0" not in recommended
    assert {cluster[t] for t in recommended} == {2}
    assert all(i["reason"] for i in body["recommendations"])


def test_names_the_model_does_not_know_fall_back_to_the_catalogue(client):
    body = client.post("/recommendations?k=5", json={"artists": ["unknown newcomer"]}).json()
    assert body["matched"]["artists"][0]["artist_name"] == "Ünknown Newcomer"
    assert body["strategy"] == "catalogue"
    assert len(body["recommendations"]) == 5
    assert all(i["reason"] == "popular in jazz" for i in body["recommendations"])


def test_without_the_artifact_cold_start_uses_the_catalogue(trained, tmp_path):
    settings, _, _ = trained
    elsewhere = settings.with_overrides(data_dir=tmp_path)  # same warehouse, no models dir
    with TestClient(create_app(elsewhere, ServingConfig(reload_seconds=0))) as other:
        assert other.get("/health").json()["cold_start"] == "catalogue"
        body = other.post("/recommendations", json={"artists": ["Artist 1-1"]}).json()
    assert body["strategy"] == "catalogue" and len(body["recommendations"]) == 10
