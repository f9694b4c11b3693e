"""Model registry on disk: save, load, list, publish, rollback, prune."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from music_platform.cli import app
from music_platform.recommender import ModelRegistry, RegistryError, build_dataset, recommend_top_k, train_popularity
from music_platform.recommender.gate import HOLD, PUBLISH, REJECT, paired_gate
from music_platform.recommender.registry import describe_versions
from music_platform.recommender.synthetic import taste_clusters

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def dataset():
    world = taste_clusters(n_users=40, seed=5)
    return build_dataset(world.interactions, world.tracks, world.artist_tags)


def save(registry, dataset, minutes, status="candidate", precision=0.1):
    model = train_popularity(dataset)
    return registry.save(
        model,
        metrics={"precision@10": precision},
        data_snapshot_id=dataset.snapshot_id(),
        status=status,
        created_at=T0 + timedelta(minutes=minutes),
    )


def test_save_writes_the_version_files_and_loads_back(tmp_path, dataset):
    registry = ModelRegistry(tmp_path / "models")
    version = save(registry, dataset, 0)
    folder = tmp_path / "models" / version.version
    assert sorted(p.name for p in folder.iterdir()) == [
        "mappings.json",
        "meta.json",
        "metrics.json",
        "model.pkl",
        "params.json",
    ]
    mappings = json.loads((folder / "mappings.json").read_text())
    assert mappings["item_ids"] == list(dataset.item_ids) and mappings["user_ids"] == list(dataset.user_ids)
    assert version.status == "candidate" and version.data_snapshot_id == dataset.snapshot_id()
    loaded = registry.load(version.version)
    assert loaded.version == version.version
    assert recommend_top_k(loaded, dataset, k=3).equals(recommend_top_k(train_popularity(dataset), dataset, k=3))
    row = version.registry_row()
    assert set(row) == {
        "model_version",
        "created_at",
        "status",
        "published_at",
        "params",
        "data_snapshot_id",
        "artifact_path",
        "metrics",
    }
    assert json.loads(row["metrics"]) == {"precision@10": 0.1}
    assert not list((tmp_path / "models").glob(".tmp-*"))  # staging directory renamed away


def test_publish_rollback_and_load_last(tmp_path, dataset):
    registry = ModelRegistry(tmp_path)
    v1, v2, v3 = (save(registry, dataset, m) for m in (0, 10, 20))
    assert registry.latest_published() is None
    registry.publish(v1.version, at=T0 + timedelta(hours=1))
    registry.publish(v2.version, at=T0 + timedelta(hours=2))
    registry.reject(v3.version)
    assert registry.latest_published().version == v2.version
    assert registry.previous_published().version == v1.version
    assert [v.version for v in registry.list_versions()] == [v1.version, v2.version, v3.version]
    assert [v.version for v in registry.list_versions("rejected")] == [v3.version]
    last = registry.load_last(2)
    assert [v.version for v, _ in last] == [v2.version, v1.version]
    assert all(model.version == v.version for v, model in last)

    live = registry.rollback()
    assert live.version == v1.version
    assert registry.latest_published().version == v1.version
    assert registry.get(v2.version).status == "retired"
    with pytest.raises(RegistryError, match="no earlier published version"):
        registry.rollback()


def test_registry_errors_are_clear(tmp_path, dataset):
    registry = ModelRegistry(tmp_path)
    assert registry.list_versions() == [] and registry.load_latest_published() is None
    with pytest.raises(RegistryError, match="not found"):
        registry.load("nope")
    version = save(registry, dataset, 0)
    with pytest.raises(RegistryError, match="status must be one of"):
        registry.set_status(version.version, "live")
    with pytest.raises(RegistryError, match="already exists"):
        registry.save(train_popularity(dataset), version=version.version)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


def test_prune_keeps_recent_and_published_versions(tmp_path, dataset):
    registry = ModelRegistry(tmp_path)
    versions = [save(registry, dataset, m) for m in range(6)]
    registry.publish(versions[0].version)
    deleted = registry.prune(keep_last=3)
    assert deleted == [v.version for v in versions[1:4]]
    assert [v.version for v in registry.list_versions()] == [
        versions[0].version,
        versions[4].version,
        versions[5].version,
    ]


def test_paired_gate_publishes_holds_and_rejects():
    rng = np.random.default_rng(3)
    popularity = rng.uniform(0.0, 0.2, 500)
    live = popularity + 0.2 + rng.normal(0, 0.05, 500)
    same = live + rng.normal(0, 0.05, 500)  # no real difference from the live model
    better = live + 0.03 + rng.normal(0, 0.05, 500)
    worse = live - 0.03 + rng.normal(0, 0.05, 500)

    first = paired_gate(same, popularity, None)
    assert first.decision == PUBLISH and "no live model" in first.reason
    assert paired_gate(better, popularity, live).decision == PUBLISH
    held = paired_gate(same, popularity, live)
    assert held.decision == HOLD and "not clearly better" in held.reason
    live_cmp = held.comparisons["live"]
    assert live_cmp.ci_low < 0 < live_cmp.ci_high and live_cmp.users == 500
    assert paired_gate(same, popularity, live, hold_unless_better=False).decision == PUBLISH
    rejected = paired_gate(worse, popularity, live)
    assert rejected.decision == REJECT and "clearly worse" in rejected.reason
    # Barely above popularity on average but not by the minimum lift: rejected.
    assert paired_gate(popularity + 0.001, popularity, None).decision == REJECT
    # A minimum lift over the live model turns a small real gain into a hold.
    assert paired_gate(better, popularity, live, min_lift_vs_live=0.5).decision == HOLD


def test_model_list_shows_live_version_metrics_and_gate(tmp_path, dataset):
    registry = ModelRegistry(tmp_path / "models")
    live = save(registry, dataset, 0)
    registry.update_metrics(
        live.version,
        {
            "selection": {
                "winner": "blend",
                "metric": "ndcg@10",
                "candidates": {"lightfm": {"ndcg@10": 0.21}, "blend": {"ndcg@10": 0.24}},
            },
            "holdout": {"precision@10": 0.2, "ndcg@10": 0.24},
            "popularity": {"ndcg@10": 0.08},
            "gate": {"decision": "publish", "reason": "candidate beats popularity; no live model yet"},
        },
    )
    registry.publish(live.version, at=T0 + timedelta(minutes=1))
    held = save(registry, dataset, 5)
    registry.update_metrics(
        held.version, {"gate": {"decision": "hold", "reason": "not clearly better than the live model"}}
    )
    out = CliRunner().invoke(app, ["model", "list"], env={"MUSIC_PLATFORM_DATA_DIR": str(tmp_path)})
    lines = describe_versions(registry)
    assert lines[0].split()[:3] == ["version", "kind", "status"]
    live_line = next(line for line in lines if live.version in line)
    assert live_line.startswith("* ") and "0.2400" in live_line and "blend of " in live_line
    assert "lightfm 0.2100" in live_line
    assert any("LIVE" in line and "gate: publish" in line for line in lines)
    assert any("gate: hold: not clearly better" in line for line in lines)
    assert registry.get(held.version).metrics["precision@10"] == 0.1  # merged, not replaced
    assert out.exit_code == 0
