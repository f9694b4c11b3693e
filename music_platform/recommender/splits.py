"""Hold-out splits. Train and test keep the full id mappings, so their matrices line up.

- ``random``: per user, a random ``test_fraction`` of their interactions (rounded; a user always
  keeps at least one training interaction, so users with one interaction are never tested).
- ``time``: per user, the interactions they *started* most recently — either those first played
  within the last ``holdout_days`` of the user's own activity, or the latest ``test_fraction`` by
  ``first_played_at``. Since recommenders exclude heard items, the question a time split asks is
  "which new tracks did the listener pick up next".
- ``split_users``: whole users held out, for the cold-start protocol.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from music_platform.recommender.dataset import DatasetError, RecDataset


def _within_user_rank(user_idx: np.ndarray, sort_key: np.ndarray) -> np.ndarray:
    """0-based position of each interaction among its user's interactions ordered by ``sort_key``."""
    order = np.lexsort((sort_key, user_idx))
    sorted_users = user_idx[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    run_lengths = np.diff(np.r_[starts, len(order)])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, run_lengths)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    return rank


def _test_counts(dataset: RecDataset, test_fraction: float) -> np.ndarray:
    per_user = np.bincount(dataset.user_idx, minlength=dataset.n_users)
    return np.minimum(np.rint(per_user * test_fraction).astype(np.int64), np.maximum(per_user - 1, 0))


def split_holdout(
    dataset: RecDataset,
    method: Literal["random", "time"] = "random",
    test_fraction: float = 0.2,
    seed: int = 0,
    holdout_days: float | None = None,
) -> tuple[RecDataset, RecDataset]:
    """Split interactions into (train, test) per user; see the module docstring for the methods."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    tie_break = rng.random(dataset.n_interactions)
    if method == "random":
        rank = _within_user_rank(dataset.user_idx, tie_break)
        in_test = rank < _test_counts(dataset, test_fraction)[dataset.user_idx]
    elif method == "time":
        if dataset.first_played_at is None:
            raise DatasetError("a time split needs first_played_at in the interactions")
        started = dataset.first_played_at.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        unknown = np.isnat(dataset.first_played_at)
        started[unknown] = -np.inf  # undated interactions count as old: they stay in training
        # Latest first: rank 0 is the interaction the user started most recently.
        rank = _within_user_rank(dataset.user_idx, -started + tie_break * 1e-3)
        if holdout_days is None:
            in_test = rank < _test_counts(dataset, test_fraction)[dataset.user_idx]
        else:
            last_activity = np.full(dataset.n_users, -np.inf)
            np.maximum.at(last_activity, dataset.user_idx, started)
            cutoff = last_activity[dataset.user_idx] - holdout_days * 86_400e9
            per_user = np.bincount(dataset.user_idx, minlength=dataset.n_users)
            recent = started > cutoff
            # Never take a user's last training interaction: keep the oldest one in train.
            in_test = recent & (rank < per_user[dataset.user_idx] - 1)
    else:
        raise ValueError(f"unknown split method {method!r}; use 'random' or 'time'")
    return dataset.with_interactions(~in_test), dataset.with_interactions(in_test)


def split_users(dataset: RecDataset, fraction: float = 0.1, seed: int = 0) -> tuple[RecDataset, RecDataset]:
    """(interactions of the kept users, interactions of a random ``fraction`` of users held out whole)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(np.bincount(dataset.user_idx, minlength=dataset.n_users) > 0)
    n_out = max(1, int(round(len(active) * fraction)))
    held_out = np.zeros(dataset.n_users, dtype=bool)
    held_out[rng.choice(active, size=n_out, replace=False)] = True
    in_held = held_out[dataset.user_idx]
    return dataset.with_interactions(~in_held), dataset.with_interactions(in_held)
