"""Training is reused only when its inputs are the same by content (music_platform/defs/ml/training_reuse.py):
any change of the data, the features, the configuration or the training code trains again."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import music_platform.recommender as recommender_package
from music_platform.defs.ml.training_reuse import (
    EVALUATION_RECORD_KEY,
    RECORD_KEY,
    evaluation_key,
    reusable_version,
    standing_evaluation,
    training_fingerprint,
    training_record,
)
from music_platform.recommender import ModelRegistry, build_dataset, train_popularity
from music_platform.recommender.synthetic import taste_clusters

CONFIG = {"model_kind": "auto", "max_epochs": 30, "no_components": 32}


@pytest.fixture(scope="module")
def world():
    return taste_clusters(n_users=40, seed=5)


def dataset_of(world, interactions=None, artist_tags=None):
    return build_dataset(
        world.interactions if interactions is None else interactions,
        world.tracks,
        world.artist_tags if artist_tags is None else artist_tags,
    )


def test_the_same_inputs_give_the_same_fingerprint_whenever_they_are_built(world):
    assert training_fingerprint(dataset_of(world), CONFIG) == training_fingerprint(dataset_of(world), dict(CONFIG))


def test_one_play_more_changes_the_fingerprint(world):
    interactions = world.interactions.copy()
    interactions.loc[interactions.index[0], "play_count"] += 1
    assert training_fingerprint(dataset_of(world, interactions), CONFIG) != training_fingerprint(
        dataset_of(world), CONFIG
    )


def test_a_feature_change_with_the_same_interactions_changes_the_fingerprint(world):
    # the data snapshot id covers the interactions only; the hybrid model also learns from features
    fewer_tags = world.artist_tags.iloc[1:]
    changed, same = dataset_of(world, artist_tags=fewer_tags), dataset_of(world)
    assert changed.snapshot_id() == same.snapshot_id()
    assert not np.array_equal(changed.item_features.toarray(), same.item_features.toarray())
    assert training_fingerprint(changed, CONFIG) != training_fingerprint(same, CONFIG)


def test_a_configuration_change_changes_the_fingerprint(world):
    dataset = dataset_of(world)
    assert training_fingerprint(dataset, {**CONFIG, "no_components": 16}) != training_fingerprint(dataset, CONFIG)


def test_a_change_of_the_training_code_changes_the_fingerprint(world, tmp_path):
    code = tmp_path / "recommender"
    shutil.copytree(Path(recommender_package.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    dataset = dataset_of(world)
    before = training_fingerprint(dataset, CONFIG, code_dir=code)
    assert before == training_fingerprint(dataset, CONFIG)  # the copy is the package, byte for byte
    training = code / "training.py"
    training.write_text(training.read_text() + "\n# a change\n")
    # a fresh directory name: the code digest is cached per directory for a process's lifetime
    changed = tmp_path / "recommender2"
    shutil.copytree(code, changed)
    assert training_fingerprint(dataset, CONFIG, code_dir=changed) != before


def _save(registry, dataset, fingerprint, status, stopped_by="early_stopping"):
    version = registry.save(
        train_popularity(dataset),
        metrics={RECORD_KEY: training_record(fingerprint, {"lightfm": {"stopped_by": stopped_by}})},
        status=status,
    )
    return version.version


def test_the_live_version_is_reused_first_then_a_held_candidate_never_a_rejected_one(world, tmp_path):
    dataset = dataset_of(world)
    fingerprint = training_fingerprint(dataset, CONFIG)
    registry = ModelRegistry(tmp_path / "models")
    assert reusable_version(registry, fingerprint) is None  # nothing trained yet

    rejected = _save(registry, dataset, fingerprint, "rejected")
    retired = _save(registry, dataset, fingerprint, "retired")
    assert reusable_version(registry, fingerprint) is None
    assert {rejected, retired}.isdisjoint({v.version for v in registry.list_versions("candidate")})

    held = _save(registry, dataset, fingerprint, "candidate")
    assert reusable_version(registry, fingerprint).version == held
    other = _save(registry, dataset, "another fingerprint", "published")
    assert reusable_version(registry, fingerprint).version == held  # the live one was trained on other inputs
    assert reusable_version(registry, "another fingerprint").version == other

    live = _save(registry, dataset, fingerprint, "published")
    assert reusable_version(registry, fingerprint).version == live
    assert reusable_version(registry, "inputs never trained on") is None


def test_a_model_whose_epoch_search_hit_the_time_budget_is_not_reused(world, tmp_path):
    dataset = dataset_of(world)
    fingerprint = training_fingerprint(dataset, CONFIG)
    registry = ModelRegistry(tmp_path / "models")
    _save(registry, dataset, fingerprint, "published", stopped_by="time_budget")
    assert registry.latest_published().metrics[RECORD_KEY]["stopped_by"] == "time_budget"
    assert reusable_version(registry, fingerprint) is None


def test_an_evaluation_stands_only_for_the_same_training_inputs_and_evaluation_code(world, tmp_path):
    dataset = dataset_of(world)
    fingerprint = training_fingerprint(dataset, CONFIG)
    code = tmp_path / "assets.py"
    code.write_text("# the evaluation asset\n")
    key = evaluation_key(fingerprint, code)
    assert key == evaluation_key(training_fingerprint(dataset_of(world), dict(CONFIG)), code)
    assert key != evaluation_key(training_fingerprint(dataset, {**CONFIG, "gate_confidence": 0.99}), code)
    changed = tmp_path / "assets2.py"
    changed.write_text("# the evaluation asset, changed\n")
    assert key != evaluation_key(fingerprint, changed)

    registry = ModelRegistry(tmp_path / "models")
    live = registry.get(_save(registry, dataset, fingerprint, "published"))
    assert standing_evaluation(live, key) is None  # never evaluated against popularity alone
    record = {"key": key, "evaluated_at": "2026-12-07T21:00:00+00:00", "decision": "publish", "reason": "r"}
    live = registry.update_metrics(live.version, {EVALUATION_RECORD_KEY: record})
    assert standing_evaluation(live, key) == record
    assert standing_evaluation(live, evaluation_key(fingerprint, changed)) is None
