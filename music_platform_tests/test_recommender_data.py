"""Dataset building, features, splits and metrics of the recommender (no model training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from music_platform.recommender import DatasetError, build_dataset, dataset_stats, split_holdout, split_users
from music_platform.recommender.evaluation import auc_per_user, ranking_metrics
from music_platform.recommender.features import FeatureConfig
from music_platform.recommender.scoring import top_k
from music_platform.recommender.synthetic import taste_clusters


@pytest.fixture(scope="module")
def world():
    return taste_clusters(n_users=80, unplayed_tracks_per_cluster=2, seed=3)


@pytest.fixture(scope="module")
def dataset(world):
    return build_dataset(world.interactions, world.tracks, world.artist_tags, world.users)


def test_ids_matrices_and_unplayed_items(world, dataset):
    assert dataset.n_users == 80
    assert dataset.n_items == len(world.tracks)  # unplayed tracks are items too
    assert dataset.n_interactions == len(world.interactions)
    played = set(world.interactions["track_id"])
    unplayed = [i for i, t in enumerate(dataset.item_ids) if t not in played]
    assert unplayed and dataset.item_user_counts[unplayed].sum() == 0
    matrix = dataset.interactions
    assert matrix.shape == (80, len(world.tracks)) and set(np.unique(matrix.data)) == {1.0}
    row = world.interactions.iloc[0]
    u, i = dataset.user_index[row["user_id"]], dataset.item_index[row["track_id"]]
    assert dataset.play_counts[u, i] == row["play_count"]
    assert dataset.confidence(alpha=2.0)[u, i] == pytest.approx(1 + 2.0 * np.log1p(row["play_count"]))


def test_bad_rows_are_quarantined_with_reasons_and_duplicates_merged(world):
    frame = world.interactions.head(20).copy()
    bad = pd.DataFrame(
        {
            "user_id": [None, "u1", "u2", " "],
            "track_id": ["t0_0_0", None, "t0_0_1", "t0_0_2"],
            "play_count": [3, 3, 0, 2],
            "first_played_at": frame["first_played_at"].iloc[0],
            "last_played_at": frame["last_played_at"].iloc[0],
        }
    )
    duplicate = frame.head(1)
    ds = build_dataset(pd.concat([frame, bad, duplicate], ignore_index=True), world.tracks)
    assert sorted(ds.rejected["reason"]) == sorted(
        ["missing user_id", "missing user_id", "missing track_id", "play_count missing or below 1"]
    )
    assert ds.n_interactions == 20  # the duplicate row is merged, not a second interaction
    u, i = ds.user_index[duplicate["user_id"].iloc[0]], ds.item_index[duplicate["track_id"].iloc[0]]
    assert ds.play_counts[u, i] == 2 * duplicate["play_count"].iloc[0]
    assert dataset_stats(ds)["rejected_rows"] == 4


def test_missing_columns_and_empty_input_are_clear_errors(world):
    with pytest.raises(DatasetError, match="play_count"):
        build_dataset(world.interactions.drop(columns=["play_count"]))
    with pytest.raises(DatasetError, match="no usable interactions"):
        build_dataset(world.interactions.assign(play_count=0))


def test_item_features_identity_tags_genre_audio(world, dataset):
    names = list(dataset.item_feature_names)
    features = dataset.item_features
    assert np.allclose(np.asarray(features.sum(axis=1)).ravel(), 1.0)  # rows L1-normalised
    item = dataset.item_index["t1_2_0"]
    row = features[item]
    active = {names[j]: v for j, v in zip(row.indices, row.data, strict=True)}
    assert "item:t1_2_0" in active
    assert "artist:a1_2" in active and "genre:jazz" in active
    assert "tag:jazz" in active and "tag:style-a1_2" in active
    assert active["tag:jazz"] > active["tag:style-a1_2"] > active["tag:seen live"]  # weighted by tag_weight
    assert any(n.startswith("audio:tempo:") for n in active)
    # A null audio value gives no feature at all (rather than a fake bucket).
    missing = world.tracks[world.tracks["energy"].isna()]["track_id"].iloc[0]
    row = features[dataset.item_index[missing]]
    assert not any(names[j].startswith("audio:energy:") for j in row.indices)
    assert dataset.user_features is not None and dataset.user_features.shape[0] == dataset.n_users


def test_identity_weight_controls_share_of_own_id(world):
    heavy = build_dataset(
        world.interactions, world.tracks, world.artist_tags, feature_config=FeatureConfig(identity_weight=3.0)
    )
    light = build_dataset(
        world.interactions, world.tracks, world.artist_tags, feature_config=FeatureConfig(identity_weight=0.5)
    )
    item = heavy.item_index["t0_0_0"]
    assert heavy.item_features[item, item] > light.item_features[item, item]


def test_random_split_is_per_user_disjoint_and_keeps_training_items(dataset):
    train, test = split_holdout(dataset, "random", test_fraction=0.25, seed=1)
    assert train.n_interactions + test.n_interactions == dataset.n_interactions
    assert (train.interactions.multiply(test.interactions)).nnz == 0
    per_user_total = np.diff(dataset.interactions.indptr)
    per_user_test = np.diff(test.interactions.indptr)
    assert np.array_equal(per_user_test, np.minimum(np.rint(per_user_total * 0.25), per_user_total - 1))
    assert (np.diff(train.interactions.indptr) >= 1).all()
    again, _ = split_holdout(dataset, "random", test_fraction=0.25, seed=1)
    assert np.array_equal(again.item_idx, train.item_idx)  # seeded


def test_time_split_holds_out_the_most_recently_started_items(dataset):
    train, test = split_holdout(dataset, "time", test_fraction=0.25, seed=0)
    started_train = pd.Series(train.first_played_at).groupby(train.user_idx).max()
    started_test = pd.Series(test.first_played_at).groupby(test.user_idx).min()
    both = started_test.index.intersection(started_train.index)
    assert len(both) > 0 and (started_test[both] >= started_train[both]).all()

    by_days, recent = split_holdout(dataset, "time", holdout_days=3, seed=0)
    last = pd.Series(dataset.first_played_at).groupby(dataset.user_idx).max()
    cutoff = last[recent.user_idx].to_numpy() - np.timedelta64(3, "D")
    assert (recent.first_played_at > cutoff).all()
    assert (np.diff(by_days.interactions.indptr) >= 1).all()


def test_time_split_needs_timestamps(world):
    plain = build_dataset(world.interactions[["user_id", "track_id", "play_count"]])
    with pytest.raises(DatasetError, match="first_played_at"):
        split_holdout(plain, "time")


def test_split_users_holds_out_whole_users(dataset):
    kept, held = split_users(dataset, fraction=0.1, seed=0)
    held_users = set(held.user_idx)
    assert len(held_users) == 8
    assert held_users.isdisjoint(set(kept.user_idx))


def test_ranking_metrics_match_hand_computed_values():
    # user 0: relevant {1, 3}; recommended [1, 2, 3] → hits at ranks 1 and 3.
    # user 1: relevant {4}; recommended [0, 4, -1] → hit at rank 2 (list shorter than k).
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    items = np.array([[1, 2, 3], [0, 4, -1]])
    m = ranking_metrics(items, relevant, k=3)
    assert m["precision"] == pytest.approx([2 / 3, 1 / 3])
    assert m["recall"] == pytest.approx([1.0, 1.0])
    dcg0 = 1 + 1 / np.log2(4)
    assert m["ndcg"] == pytest.approx([dcg0 / (1 + 1 / np.log2(3)), (1 / np.log2(3)) / 1.0])
    assert m["map"] == pytest.approx([(1 + 2 / 3) / 2, (1 / 2) / 1])


def test_auc_matches_pairwise_definition():
    scores = np.array([[0.9, 0.1, 0.5, 0.7, 0.3, -np.inf]], dtype=np.float32)
    train = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0]], dtype=np.float32))  # item 1 is heard: left out
    test = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 1]], dtype=np.float32))  # positives 2 and 5 (unscorable)
    # negatives: 0 (0.9), 3 (0.7), 4 (0.3). Item 2 (0.5) beats 1 of 3; item 5 (-inf) beats none.
    assert auc_per_user(scores, train, test)[0] == pytest.approx((1 + 0) / (2 * 3))


@pytest.mark.parametrize("n_items", [500, 5003])  # a full scan, and the grouped pre-selection (+ remainder)
def test_top_k_matches_brute_force_and_excludes(n_items):
    rng = np.random.default_rng(0)
    scores = rng.random((300, n_items)).astype(np.float32)
    scores[7, : n_items - 4] = -np.inf  # a row with only four recommendable items
    exclude = sp.random(300, n_items, density=0.05, format="csr", random_state=1)
    reference = scores.copy()
    reference[exclude.toarray() != 0] = -np.inf
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :10]
    expected_values = np.take_along_axis(reference, expected, axis=1)
    expected[~np.isfinite(expected_values)] = -1
    items, values = top_k(scores.copy(), 10, exclude=exclude, num_threads=2)
    assert np.array_equal(items, expected)
    assert (items[7, :4] >= 0).all() and (items[7, 4:] == -1).all()
    assert np.allclose(values, expected_values)
    # More requested than recommendable: padded with -1, never an excluded item.
    small = np.array([[0.2, -np.inf, 0.7]], dtype=np.float32)
    items, _ = top_k(small, 5)
    assert items.tolist() == [[2, 0, -1, -1, -1]]
