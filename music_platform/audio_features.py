"""The audio features every source and the recommender share, declared once.

Spotify's audio features (the API and the Kaggle Spotify Tracks file) that lie in ``[0, 1]``;
``tempo`` (beats per minute, > 0 in the marts) and ``loudness`` (dB) have ranges of their own.
The raw contracts (``sources.schemas``), the parsers, the synthetic Kaggle file and the
recommender's item features take the list from here. The dbt models name the columns in SQL;
their range tests are in ``dbt/models/marts/_marts__models.yml``.
"""

from __future__ import annotations

AUDIO_UNIT_FEATURES: tuple[str, ...] = (
    "danceability",
    "energy",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
)
