"""The synthetic world's data: its catalogue and its listeners (built by ``world``).

A module of its own so that ``listens`` (which draws a day from them) and ``world`` (which
builds them and caches the days) both depend on it and not on each other.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np


def day_start_uts(day: dt.date) -> int:
    return calendar.timegm(day.timetuple())


@dataclass(eq=False)
class Catalogue:
    genres: tuple[str, ...]
    # artists (index = artist id)
    artist_names: list[str]
    artist_mbids: np.ndarray
    artist_genre: np.ndarray
    artist_secondary_genres: list[tuple[int, ...]]
    artist_vocal: list[str]
    artist_weight: np.ndarray  # Zipf popularity, sums to 1
    artist_track_start: np.ndarray
    artist_track_count: np.ndarray
    artist_tags: list[tuple[tuple[str, int], ...]]  # artist.getTopTags, count-ordered
    # albums
    album_names: list[str]
    album_mbids: np.ndarray
    album_image_hashes: list[str]  # "" = no cover
    # tracks (index = track id; tracks of one artist are contiguous)
    track_artist: np.ndarray
    track_album: np.ndarray
    track_lastfm_name: list[str]
    track_kaggle_name: list[str]
    track_kaggle_artists: list[str]
    track_mbid: np.ndarray
    track_spotify_id: np.ndarray
    track_album_visible: np.ndarray  # False: Last.fm sends "album": {"#text": ""}
    track_duration_ms: np.ndarray
    track_weight: np.ndarray  # global popularity, sums to 1
    track_in_kaggle: np.ndarray
    track_kaggle_second_genre: np.ndarray  # genre id or -1
    track_kaggle_reissue: np.ndarray  # bool: one more Kaggle row with its own id
    track_reissue_spotify_id: np.ndarray
    track_popularity: np.ndarray
    track_explicit: np.ndarray
    track_features: dict[str, np.ndarray]
    # samplers
    within_artist_key: np.ndarray  # artist id + cumulative share inside the artist
    genre_track_ids: list[np.ndarray]
    genre_track_cdf: list[np.ndarray]
    genre_favourite_cdf: list[np.ndarray]  # flatter than popularity: favourites are personal
    genre_artist_ids: list[np.ndarray]
    genre_artist_favourite_cdf: list[np.ndarray]
    global_track_cdf: np.ndarray

    @property
    def n_artists(self) -> int:
        return len(self.artist_names)

    @property
    def n_tracks(self) -> int:
        return len(self.track_artist)

    def sample_track_of_artists(self, artists: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One track per given artist, by the artist's own (Zipf) track popularity."""
        idx = np.searchsorted(self.within_artist_key, artists + u, side="right")
        return np.minimum(idx, self.artist_track_start[artists] + self.artist_track_count[artists] - 1)


@dataclass(eq=False)
class Listeners:
    names: list[str]
    real_names: list[str]
    countries: list[str]  # "None" when hidden, as Last.fm sends it
    utc_offset_hours: np.ndarray
    ages: np.ndarray  # 0 = not disclosed
    genders: list[str]  # m / f / n
    subscriber: np.ndarray
    registered_uts: np.ndarray
    image_hashes: list[str]
    lifetime_playcount: np.ndarray
    activity: np.ndarray  # mean listens per day
    active_day_share: np.ndarray  # share of days with any listening
    mode_cdf: np.ndarray  # (n, 3): favourite track | favourite artist | exploration | (rest: genre)
    affinity: np.ndarray  # (n, G) genre taste, rows sum to 1
    affinity_cdf: np.ndarray
    favourite_tracks: np.ndarray  # (n, FAVOURITE_TRACKS), most loved first
    favourite_artists: np.ndarray  # (n, FAVOURITE_ARTISTS)

    def __len__(self) -> int:
        return len(self.names)
