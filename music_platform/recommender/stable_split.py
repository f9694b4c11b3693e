"""A holdout split that stays the same from one model version to the next.

Each (user, track) interaction is assigned to test by a hash of its ids, not by a random
draw, so two versions trained on successive snapshots agree on which old interactions are
held out: the published model never trained on the candidate's test interactions, and the
gate can compare both honestly on the same split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from music_platform.recommender.dataset import RecDataset

# Users with fewer interactions keep them all in training (nothing meaningful to hold out).
MIN_INTERACTIONS_TO_HOLD_OUT = 3


def stable_holdout(
    dataset: RecDataset, test_fraction: float = 0.2, salt: str = "music_platform"
) -> tuple[RecDataset, RecDataset]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    keys = (
        pd.Series(dataset.user_ids[dataset.user_idx]).astype(str)
        + "|"
        + pd.Series(dataset.item_ids[dataset.item_idx]).astype(str)
    )
    hashed = pd.util.hash_array(keys.to_numpy(dtype=object), hash_key=(salt * 2)[:16].ljust(16, "0"))
    in_test = (hashed % np.uint64(10_000)).astype(np.float64) < test_fraction * 10_000
    per_user = np.bincount(dataset.user_idx, minlength=dataset.n_users)
    in_test &= per_user[dataset.user_idx] >= MIN_INTERACTIONS_TO_HOLD_OUT
    # Never hold out everything a user has: keep each user's first interaction in training.
    first_of_user = np.r_[True, dataset.user_idx[1:] != dataset.user_idx[:-1]]
    in_test &= ~first_of_user
    return dataset.with_interactions(~in_test), dataset.with_interactions(in_test)
