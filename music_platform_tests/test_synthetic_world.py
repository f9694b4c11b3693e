"""Structure of the synthetic listening data: what makes it realistic and learnable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import sparse

from music_platform.sources.synthetic.world import get_world

USERS = 300
SEED = 42
DAYS = [dt.date(2025, 2, 1) + dt.timedelta(days=i) for i in range(30)]


@pytest.fixture(scope="module")
def world():
    return get_world(SEED, USERS)


@pytest.fixture(scope="module")
def listens(world):
    """All listens of 30 days: (user, uts, track), sorted by user then time."""
    days = [world.listens_for_day(d) for d in DAYS]
    user = np.concatenate([d.user for d in days]).astype(np.int64)
    uts = np.concatenate([d.uts for d in days])
    track = np.concatenate([d.track for d in days]).astype(np.int64)
    order = np.lexsort((uts, user))
    return user[order], uts[order], track[order]


def test_popularity_is_zipf_like(world, listens):
    _, _, track = listens
    cat = world.catalogue
    plays = np.sort(np.bincount(track, minlength=cat.n_tracks))[::-1]
    assert plays[: cat.n_tracks // 10].sum() / plays.sum() > 0.5  # top 10% of tracks: most plays
    artist_plays = np.sort(np.bincount(cat.track_artist[track], minlength=cat.n_artists))[::-1]
    assert artist_plays[: cat.n_artists // 10].sum() / artist_plays.sum() > 0.35
    assert (plays > 0).sum() > cat.n_tracks * 0.3  # and a long tail is still heard


def test_each_user_concentrates_on_one_to_three_genres(world, listens):
    user, _, track = listens
    genre = world.catalogue.artist_genre[world.catalogue.track_artist[track]]
    top3_shares = []
    for u in np.unique(user):
        mine = genre[user == u]
        if len(mine) >= 30:
            counts = np.sort(np.bincount(mine, minlength=len(world.catalogue.genres)))[::-1]
            top3_shares.append(counts[:3].sum() / counts.sum())
    assert len(top3_shares) > USERS / 2
    assert np.median(top3_shares) > 0.85 and np.percentile(top3_shares, 10) > 0.7
    # The population as a whole still listens to every genre.
    assert set(np.unique(genre)) == set(range(len(world.catalogue.genres)))


def test_users_replay_their_favourite_tracks(world, listens):
    user, _, track = listens
    key = user * world.catalogue.n_tracks + track
    distinct = len(np.unique(key))
    assert 1 - distinct / len(key) > 0.25  # a large share of listens are repeats
    heavy = [u for u in np.unique(user) if (user == u).sum() >= 100]
    replayed = [np.bincount(track[user == u]).max() for u in heavy]
    assert np.median(replayed) >= 5


def test_sessions_are_consecutive_tracks_that_never_overlap(world, listens):
    user, uts, track = listens
    same_user = user[1:] == user[:-1]
    gap = (uts[1:] - uts[:-1])[same_user]
    duration = (world.catalogue.track_duration_ms[track[:-1]] // 1000)[same_user]
    assert (gap >= duration).all()  # a track is not scrobbled before the previous one has played
    back_to_back = (gap < duration + 20).mean()
    assert back_to_back > 0.5  # most listens follow the previous one within its session


def test_listening_peaks_in_the_evening_local_time(world, listens):
    user, uts, _ = listens
    local_hour = ((uts % 86400) // 3600 + world.listeners.utc_offset_hours[user]) % 24
    share = np.bincount(local_hour, minlength=24) / len(local_hour)
    assert share[18:24].sum() > 1.5 * share[6:12].sum()
    assert share[2:6].sum() < 0.05
    assert int(np.argmax(share)) in range(18, 23)
    # In UTC, listens cover the whole day (users live in several time zones).
    assert (np.bincount((uts % 86400) // 3600, minlength=24) > 0).all()


def test_timestamps_spread_over_every_day_of_the_range(world):
    counts = [world.expected_scrobbles(d) for d in DAYS]
    assert min(counts) > 0.6 * np.mean(counts)


def test_taste_is_learnable_beyond_popularity(world, listens):
    """User-kNN on each user's first 80% of listens finds their next new tracks far better than popularity."""
    user, _, track = listens
    n_tracks = world.catalogue.n_tracks
    train_u, train_t, held_out = [], [], {}
    for u in np.unique(user):
        mine = track[user == u]
        if len(mine) < 10:
            continue
        cut = int(len(mine) * 0.8)
        train_u.append(np.full(cut, u))
        train_t.append(mine[:cut])
        new = set(mine[cut:].tolist()) - set(mine[:cut].tolist())
        if new:
            held_out[int(u)] = new
    rows, cols = np.concatenate(train_u), np.concatenate(train_t)
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(USERS, n_tracks))
    matrix.sum_duplicates()
    matrix.data = np.log1p(matrix.data)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()) + 1e-9
    normalised = sparse.diags(1 / norms) @ matrix
    similarity = (normalised @ normalised.T).toarray()
    np.fill_diagonal(similarity, 0)
    knn_scores = similarity @ matrix.toarray()
    popularity = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(float)

    def recall(scores_of, k=20):
        hits = total = 0
        for u, new in held_out.items():
            scores = scores_of(u).copy()
            scores[matrix[u].indices] = -np.inf  # recommend only unheard tracks
            top = set(np.argpartition(-scores, k)[:k].tolist())
            hits += len(new & top)
            total += min(len(new), k)
        return hits / total

    knn, pop = recall(lambda u: knn_scores[u]), recall(lambda u: popularity)
    assert knn > 2 * pop and knn > 0.05, (knn, pop)
