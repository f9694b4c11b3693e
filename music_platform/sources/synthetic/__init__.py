"""Synthetic source: a deterministic, Faker-based music world shaped exactly like the real APIs.

It is the default of every raw asset when no API key is configured. Entry points:

- ``SyntheticLastfmSource``: the Last.fm client's methods (recent tracks, user info, tags, charts);
- ``synthetic_kaggle_csv`` / ``kaggle_tracks_frame``: the Kaggle Spotify Tracks CSV;
- ``export_fake_data``: everything as files (``music-platform generate-fake-data``);
- ``get_world``: the cached catalogue and listeners behind them.

See docs/data-source/synthetic.md.
"""

from music_platform.sources.lastfm.protocol import day_bounds
from music_platform.sources.synthetic.export import export_fake_data
from music_platform.sources.synthetic.kaggle import KAGGLE_HEADER, kaggle_tracks_frame, synthetic_kaggle_csv
from music_platform.sources.synthetic.source import SyntheticLastfmSource
from music_platform.sources.synthetic.world import SyntheticWorld, get_world

__all__ = [
    "KAGGLE_HEADER",
    "SyntheticLastfmSource",
    "SyntheticWorld",
    "day_bounds",
    "export_fake_data",
    "get_world",
    "kaggle_tracks_frame",
    "synthetic_kaggle_csv",
]
