"""The Kaggle "Spotify Tracks Dataset" CSV, written from the synthetic catalogue.

Same header and quirks as the real file (``dataset.csv``, maharshipandya): a leading unnamed
index column, rows grouped by ``track_genre``, ``artists`` joined with ``;``, quoted fields
with commas and doubled quotes, the same ``track_id`` under two genres, the same
artist/title again under another id (a reissue), popularity 0 for many rows, a few tempo 0
rows, values rounded to three significant digits. Only ~85% of the catalogue is in it, and
some titles differ from Last.fm's ("feat.", "- Remastered", capitalisation), so matching
the two sources is real work, as it is with the real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from music_platform.audio_features import AUDIO_UNIT_FEATURES
from music_platform.sources.synthetic.world import DEFAULT_USERS, SyntheticWorld, get_world

# fmt: off
KAGGLE_HEADER = (
    "Unnamed: 0", "track_id", "artists", "album_name", "track_name", "popularity", "duration_ms", "explicit",
    "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
    "liveness", "valence", "tempo", "time_signature", "track_genre",
)
# fmt: on
_REISSUE_ALBUMS = ("Greatest Hits", "The Essential Collection", "Anthology", "Best Of")


def round_significant(values: np.ndarray, digits: int = 3) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    out = values.copy()
    nonzero = values != 0
    magnitude = np.floor(np.log10(np.abs(values[nonzero])))
    factor = 10.0 ** (digits - 1 - magnitude)
    out[nonzero] = np.round(values[nonzero] * factor) / factor
    return out


def kaggle_tracks_frame(world: SyntheticWorld) -> pd.DataFrame:
    """The CSV's rows as a DataFrame with the real header (index column included)."""
    cat = world.catalogue
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 0x6A66, cat.n_tracks]))
    base = np.flatnonzero(cat.track_in_kaggle)
    second = base[cat.track_kaggle_second_genre[base] >= 0]
    reissue = base[cat.track_kaggle_reissue[base]]
    rows = np.concatenate([base, second, reissue])
    kind = np.concatenate([np.zeros(len(base), int), np.ones(len(second), int), np.full(len(reissue), 2)])

    genre_id = cat.artist_genre[cat.track_artist[rows]].copy()
    genre_id[kind == 1] = cat.track_kaggle_second_genre[second]
    track_id = cat.track_spotify_id[rows].copy()
    track_id[kind == 2] = cat.track_reissue_spotify_id[reissue]
    album = np.array([cat.album_names[b] for b in cat.track_album[rows]], dtype=object)
    album[kind == 2] = [_REISSUE_ALBUMS[int(i)] for i in rng.integers(0, len(_REISSUE_ALBUMS), len(reissue))]
    popularity = cat.track_popularity[rows].copy()
    popularity[kind == 2] = np.maximum(popularity[kind == 2] - rng.integers(5, 30, len(reissue)), 0)

    feats = cat.track_features
    frame = pd.DataFrame(
        {
            "track_id": track_id,
            "artists": np.asarray(cat.track_kaggle_artists, dtype=object)[rows],
            "album_name": album,
            "track_name": np.asarray(cat.track_kaggle_name, dtype=object)[rows],
            "popularity": popularity,
            "duration_ms": cat.track_duration_ms[rows],
            "explicit": cat.track_explicit[rows],
            **{name: round_significant(feats[name][rows]) for name in AUDIO_UNIT_FEATURES},
            "key": feats["key"][rows],
            "loudness": np.round(feats["loudness"][rows], 3),
            "mode": feats["mode"][rows],
            "tempo": np.round(feats["tempo"][rows], 3),
            "time_signature": feats["time_signature"][rows],
            "track_genre": np.asarray(cat.genres, dtype=object)[genre_id],
        }
    )
    # Grouped by genre like the real file, in a shuffled order inside each genre.
    frame = frame[list(KAGGLE_HEADER[1:])]  # the real file's column order
    frame["_shuffle"] = rng.permutation(len(frame))
    frame = frame.sort_values(["track_genre", "_shuffle"], kind="stable").drop(columns="_shuffle")
    frame.insert(0, "Unnamed: 0", np.arange(len(frame)))
    return frame.reset_index(drop=True)[list(KAGGLE_HEADER)]


def synthetic_kaggle_csv(
    path: Path, n_users: int = DEFAULT_USERS, seed: int = 42, n_artists: int | None = None
) -> Path:
    """Write the Kaggle-shaped CSV of the world (seed, n_users) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a process killed mid-write never leaves a short file to be reused.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    kaggle_tracks_frame(get_world(seed, n_users, n_artists)).to_csv(partial, index=False, encoding="utf-8")
    os.replace(partial, path)
    return path
