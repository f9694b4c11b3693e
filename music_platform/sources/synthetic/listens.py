"""One UTC day of listens for every user, drawn vectorised from a (seed, day) generator.

A day depends only on the world and the day, never on other days or on call order, so any
daily partition can be generated alone, identically, in time proportional to its listens.

Model of a day:
1. a user listens on a share of days (``active_day_share``), weekends a bit more;
2. an active user starts ~Poisson sessions, each of ~4 tracks (geometric length), at local
   hours drawn from an evening-peaked profile, shifted to UTC by the user's offset;
3. each listen is a favourite track, a track of a favourite artist, an exploration of the
   global chart, or a track of a genre drawn from the user's taste (Zipf inside the genre);
   later listens of a session often stay with the session's first artist;
4. tracks follow each other their duration (plus a short gap) apart; a user's sessions are
   pushed back so they never overlap, and listens that would not end before midnight UTC are
   dropped (so the day holds exactly what its partition should, and days never overlap).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from music_platform.sources.synthetic.model import Catalogue, Listeners, day_start_uts
from music_platform.sources.synthetic.profiles import HOUR_PROFILE

MEAN_SESSION_LENGTH = 4.0
MAX_SESSION_LENGTH = 40
SAME_ARTIST_IN_SESSION = 0.3
WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.95, 1.0, 1.1, 1.15, 1.1])  # Monday..Sunday
_LISTEN_STREAM = 0x11573
_DAY = 86400
_HOUR_CDF = np.cumsum(HOUR_PROFILE)
_HOUR_CDF[-1] = 1.0
# Slot k of a user's favourites is loved ~1/(k+1): the first favourite comes back most.
_FAVOURITE_TRACK_CDF: dict[int, np.ndarray] = {}


def _slot_cdf(slots: int) -> np.ndarray:
    cdf = _FAVOURITE_TRACK_CDF.get(slots)
    if cdf is None:
        weights = 1.0 / (np.arange(slots) + 1.0)
        cdf = np.cumsum(weights) / weights.sum()
        cdf[-1] = 1.0
        _FAVOURITE_TRACK_CDF[slots] = cdf
    return cdf


@dataclass(frozen=True, eq=False)
class DayListens:
    """Listens of one UTC day, sorted by user then time (arrays of equal length)."""

    day: dt.date
    user: np.ndarray  # int32 user index
    uts: np.ndarray  # int64 unix seconds of the listen start
    track: np.ndarray  # int32 track index
    user_offsets: np.ndarray  # listens of user i are [user_offsets[i], user_offsets[i+1])

    def __len__(self) -> int:
        return len(self.uts)

    def for_user(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.user_offsets[user], self.user_offsets[user + 1]
        return self.uts[lo:hi], self.track[lo:hi]


def _group_exclusive_cumsum(values: np.ndarray, group_start: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` before each element, restarting at each group."""
    total = np.cumsum(values) - values
    return total - total[group_start][group_of]


def generate_day(seed: int, cat: Catalogue, users: Listeners, day: dt.date) -> DayListens:
    """Every listen of the UTC ``day`` in the world of ``seed`` (its catalogue and listeners)."""
    n_users = len(users)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _LISTEN_STREAM, day.toordinal()]))
    start = day_start_uts(day)

    # 1-2. Who listens, how many sessions, when.
    factor = WEEKDAY_FACTOR[day.weekday()]
    registered = users.registered_uts < start + _DAY
    active = (rng.random(n_users) < np.minimum(users.active_day_share * factor, 1.0)) & registered
    per_active_day = users.activity / users.active_day_share
    n_sessions = np.where(active, rng.poisson(per_active_day / MEAN_SESSION_LENGTH), 0)
    session_user = np.repeat(np.arange(n_users), n_sessions)
    ns = len(session_user)
    hour = np.searchsorted(_HOUR_CDF, rng.random(ns), side="right")
    local_second = hour * 3600 + rng.integers(0, 3600, ns)
    session_start = (local_second - users.utc_offset_hours[session_user] * 3600) % _DAY
    order = np.lexsort((session_start, session_user))
    session_user, session_start = session_user[order], session_start[order].astype(np.int64)
    session_len = np.minimum(rng.geometric(1.0 / MEAN_SESSION_LENGTH, ns), MAX_SESSION_LENGTH)

    # 3. Which tracks.
    n = int(session_len.sum())
    listen_session = np.repeat(np.arange(ns), session_len)
    session_first = (np.cumsum(session_len) - session_len).astype(np.int64)
    listen_user = session_user[listen_session]
    first_in_session = np.zeros(n, dtype=bool)
    first_in_session[session_first] = True

    track = np.empty(n, dtype=np.int64)
    u_mode, u_pick = rng.random(n), rng.random(n)
    continues_artist = ~first_in_session & (rng.random(n) < SAME_ARTIST_IN_SESSION)
    mode = (u_mode[:, None] >= users.mode_cdf[listen_user]).sum(axis=1)  # 0 fav track, 1 fav artist, 2 explore, 3 genre
    mode[continues_artist] = 4

    fav_track = mode == 0
    slots = users.favourite_tracks.shape[1]
    slot = np.minimum(np.searchsorted(_slot_cdf(slots), u_pick[fav_track], side="right"), slots - 1)
    track[fav_track] = users.favourite_tracks[listen_user[fav_track], slot]

    fav_artist = mode == 1
    slots = users.favourite_artists.shape[1]
    u_slot = rng.random(int(fav_artist.sum()))
    slot = np.minimum(np.searchsorted(_slot_cdf(slots), u_slot, side="right"), slots - 1)
    track[fav_artist] = cat.sample_track_of_artists(
        users.favourite_artists[listen_user[fav_artist], slot], u_pick[fav_artist]
    )

    explore = mode == 2
    track[explore] = np.minimum(np.searchsorted(cat.global_track_cdf, u_pick[explore], side="right"), cat.n_tracks - 1)

    by_genre = np.flatnonzero(mode == 3)
    genre = (rng.random((len(by_genre), 1)) < users.affinity_cdf[listen_user[by_genre]]).argmax(axis=1)
    for g in range(len(cat.genres)):
        rows = by_genre[genre == g]
        if len(rows):
            pos = np.minimum(
                np.searchsorted(cat.genre_track_cdf[g], u_pick[rows], side="right"), len(cat.genre_track_ids[g]) - 1
            )
            track[rows] = cat.genre_track_ids[g][pos]

    # A session's first listen is never a continuation, so its track is known by now.
    cont = np.flatnonzero(continues_artist)
    anchor_artist = cat.track_artist[track[session_first[listen_session[cont]]]]
    track[cont] = cat.sample_track_of_artists(anchor_artist, u_pick[cont])

    # 4. When: tracks a duration plus a short gap apart; sessions of a user never overlap.
    step = cat.track_duration_ms[track] // 1000 + rng.integers(0, 20, n)
    offset_in_session = _group_exclusive_cumsum(step, session_first, listen_session)
    session_total = np.add.reduceat(step, session_first) if ns else np.zeros(0, dtype=np.int64)
    user_first_session = np.searchsorted(session_user, session_user, side="left")
    before = _group_exclusive_cumsum(session_total, user_first_session, np.arange(ns))
    # start_i' = before_i + max_{j <= i, same user} (start_j - before_j): a running max per user,
    # made global by lifting each user's values above every earlier user's.
    lift = session_user.astype(np.int64) * 10**10
    running = np.maximum.accumulate(session_start - before + lift) - lift
    session_start = before + running

    uts = start + session_start[listen_session] + offset_in_session
    # A listen must end before midnight: the next day's sessions then never overlap it.
    keep = uts + cat.track_duration_ms[track] // 1000 < start + _DAY
    listen_user, uts, track = listen_user[keep], uts[keep], track[keep]
    user_offsets = np.searchsorted(listen_user, np.arange(n_users + 1), side="left")
    return DayListens(
        day=day,
        user=listen_user.astype(np.int32),
        uts=uts.astype(np.int64),
        track=track.astype(np.int32),
        user_offsets=user_offsets,
    )
