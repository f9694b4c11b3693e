"""Atomic publication (issue 14): the service serves only what the registry's pointer names.

The pieces of ``music_platform.recommender.publication`` in the order the ``ml`` assets use them,
with a crash simulated between any two, against a real DuckDB warehouse and the real service.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.recommender import ModelRegistry, build_dataset, train_popularity
from music_platform.recommender.publication import (
    Publication,
    check_publication,
    live_publication,
    new_publication_id,
    publish,
    rollback,
    write_display_snapshot,
)
from music_platform.recommender.synthetic import taste_clusters
from music_platform.serving.sample_data import write_sample_warehouse
from music_platform.serving.service import RecommendationService, ServingConfig
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def model():
    world = taste_clusters(n_users=30, seed=3)
    return train_popularity(build_dataset(world.interactions, world.tracks, world.artist_tags))


class Pipeline:
    """The warehouse, the model registry and what the ml assets write, step by step."""

    def __init__(self, root, model) -> None:
        self.settings = Settings(target="duckdb", data_dir=root, duckdb_path=root / "warehouse.duckdb")
        self.wh = DuckDBWarehouse(self.settings.resolved_duckdb_path)
        self.registry = ModelRegistry(self.settings.models_dir)
        self.model = model
        # marts and template rows (the sample's own ml rows are dropped below)
        write_sample_warehouse(self.wh, users=40, artists=30, tracks=300, model_version="template", with_registry=False)
        self.recs = self.wh.read_table("ml", "user_recommendations")
        self.similar = self.wh.read_table("ml", "similar_tracks")
        for table in ("user_recommendations", "similar_tracks", "published_tracks", "published_artists"):
            self.wh.execute(f"drop table ml.{table}")
        self.minutes = 0

    def train(self) -> str:
        self.minutes += 1
        return self.registry.save(self.model, created_at=T0 + timedelta(minutes=self.minutes)).version

    def recommend(self, version: str, reason: str = "") -> Publication:
        """What ml/user_recommendations and ml/similar_tracks write for ``version``."""
        publication = Publication(version, new_publication_id())
        recs = self.recs.assign(model_version=version, publication_id=publication.publication_id)
        if reason:
            recs["reason"] = reason
        self.wh.replace_partition("ml", "user_recommendations", recs, "publication_id", [publication.publication_id])
        similar = self.similar.assign(model_version=version)
        self.wh.replace_partition("ml", "similar_tracks", similar, "model_version", [version])
        return publication

    def publish(self, publication: Publication) -> None:
        """What ml/model_registry does."""
        write_display_snapshot(self.wh, publication.publication_id)
        verdict = check_publication(self.wh, publication)
        assert verdict.passed, verdict.problems
        publish(self.wh, self.registry, publication)

    def service(self) -> RecommendationService:
        service = RecommendationService(self.settings, ServingConfig(reload_seconds=0))
        assert service.reload().error is None
        return service


def _answer(service: RecommendationService, user: str = "user_0000001") -> dict:
    status, body = service.user_recommendations(user, b"k=10")
    assert status == 200, body
    return json.loads(body)


def _health(service: RecommendationService) -> tuple[int, dict]:
    status, body = service.health()
    return status, json.loads(body)


def test_written_but_unpublished_recommendations_are_never_served(tmp_path, model):
    pipeline = Pipeline(tmp_path, model)
    first = pipeline.recommend(pipeline.train())  # a first build killed before its registry step
    write_display_snapshot(pipeline.wh, first.publication_id)
    assert live_publication(pipeline.wh) is None
    service = pipeline.service()
    status, health = _health(service)
    assert status == 503 and health["status"] == "unavailable"
    assert "no model version is published yet" in health["reason"] and health["model_version"] is None
    assert service.user_recommendations("user_0000001", b"")[0] == 503

    pipeline.publish(first)  # the rerun publishes it
    assert live_publication(pipeline.wh) == first
    service = pipeline.service()
    assert _health(service)[1]["publication_id"] == first.publication_id
    assert _answer(service)["model_version"] == first.model_version


def test_a_crash_before_the_pointer_switch_leaves_the_previous_publication_live(tmp_path, model):
    pipeline = Pipeline(tmp_path, model)
    live = pipeline.recommend(pipeline.train(), reason="live")
    pipeline.publish(live)
    candidate = pipeline.recommend(pipeline.train(), reason="candidate")
    write_display_snapshot(pipeline.wh, candidate.publication_id)
    pipeline.registry.publish(candidate.model_version)  # on disk, then killed before ml.model_registry
    assert live_publication(pipeline.wh) == live
    service = pipeline.service()
    assert {i["reason"] for i in _answer(service)["recommendations"]} == {"live"}

    publish(pipeline.wh, pipeline.registry, candidate)  # the next run
    assert service.reload().reloaded
    answer = _answer(service)
    assert answer["model_version"] == candidate.model_version
    assert {i["reason"] for i in answer["recommendations"]} == {"candidate"}


def test_display_fields_come_from_the_publication_not_the_live_marts(tmp_path, model):
    """Issue 14: 10% of marts.dim_tracks.track_name set to NULL by hand after publication."""
    pipeline = Pipeline(tmp_path, model)
    pipeline.publish(pipeline.recommend(pipeline.train()))
    service = pipeline.service()
    before = {u: _answer(service, u) for u in ("user_0000001", "user_0000007", "user_0000040")}

    pipeline.wh.execute("update marts.dim_tracks set track_name = null where hash(track_id) % 10 = 0")
    assert pipeline.wh.query_df("select count(*) as n from marts.dim_tracks where track_name is null")["n"][0] > 0
    service = pipeline.service()  # a fresh start reads the warehouse again
    status, health = _health(service)
    assert status == 200 and health["status"] == "ok"
    for user, answer in before.items():
        assert _answer(service, user) == answer
        assert all(item["track_name"] for item in answer["recommendations"])


def test_a_publication_with_unnamed_tracks_is_refused_and_the_previous_stays_live(tmp_path, model):
    pipeline = Pipeline(tmp_path, model)
    live = pipeline.recommend(pipeline.train())
    pipeline.publish(live)
    pipeline.wh.execute("update marts.dim_tracks set track_name = null where hash(track_id) % 10 = 0")
    candidate = pipeline.recommend(pipeline.train())
    write_display_snapshot(pipeline.wh, candidate.publication_id)
    verdict = check_publication(pipeline.wh, candidate)
    assert not verdict.passed
    assert any("have no track name" in problem for problem in verdict.problems)
    assert live_publication(pipeline.wh) == live


def test_old_rows_are_removed_and_rollback_returns_to_the_previous_publication(tmp_path, model):
    pipeline = Pipeline(tmp_path, model)
    v1 = pipeline.train()
    first = pipeline.recommend(v1, reason="v1 first")
    pipeline.publish(first)
    refresh = pipeline.recommend(v1, reason="v1 refresh")  # the daily refresh with the same model
    pipeline.publish(refresh)
    abandoned = pipeline.recommend(pipeline.train(), reason="abandoned")  # a run killed before publication
    v3 = pipeline.train()
    latest = pipeline.recommend(v3, reason="v3")
    pipeline.publish(latest)

    stored = set(pipeline.wh.query_df("select distinct publication_id from ml.user_recommendations")["publication_id"])
    # first: superseded by the refresh of its version; abandoned: never published (and older)
    assert stored == {refresh.publication_id, latest.publication_id}
    assert set(pipeline.wh.query_df("select distinct model_version from ml.similar_tracks")["model_version"]) == {
        v1,
        v3,
    }
    assert abandoned.model_version not in stored

    retired, restored = rollback(pipeline.wh, pipeline.registry)
    assert (retired.version, restored.version) == (v3, v1)
    assert live_publication(pipeline.wh) == refresh
    assert {i["reason"] for i in _answer(pipeline.service())["recommendations"]} == {"v1 refresh"}


def test_the_registry_table_names_each_versions_publication(tmp_path, model):
    pipeline = Pipeline(tmp_path, model)
    publication = pipeline.recommend(pipeline.train())
    pipeline.publish(publication)
    table = pipeline.wh.read_table("ml", "model_registry")
    row = table[table["model_version"] == publication.model_version].iloc[0]
    assert row["status"] == "published" and row["publication_id"] == publication.publication_id
    assert pd.notna(row["published_at"])
