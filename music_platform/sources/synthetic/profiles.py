"""Static knowledge the synthetic world is drawn from: genres, countries, daily rhythm.

Genre names are real Kaggle ``track_genre`` values and double as the Last.fm genre tags, so
the same genre reads identically on both sides of the track resolution. Audio-feature means
were read off the real Kaggle sample (``spotify_tracks_sample.csv``) genre by genre and
rounded; the world adds per-artist and per-track spread around them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenreProfile:
    name: str
    share: float  # share of artists (and roughly of listens) in this genre
    related: tuple[str, ...]  # genres its listeners and artists also lean to
    descriptive_tags: tuple[str, ...]  # Last.fm-style non-genre tags common for the genre
    artist_styles: tuple[tuple[str, float], ...]  # name styles (see names.py) and weights
    danceability: float
    energy: float
    speechiness: float
    acousticness: float
    instrumental_share: float  # share of clearly instrumental tracks (instrumentalness > 0.5)
    liveness: float
    valence: float
    tempo: float
    loudness: float
    duration_s: float
    explicit_share: float


# One line of sound per genre, in field order: danceability energy speechiness acousticness
# instrumental_share liveness valence tempo loudness duration_s explicit_share.
# fmt: off
GENRES: tuple[GenreProfile, ...] = (
    GenreProfile(
        "rock", 0.14, ("indie", "metal", "folk", "pop"),
        ("classic rock", "alternative", "hard rock", "alternative rock", "Grunge", "guitar", "80s", "90s",
         "seen live"),
        (("band_the", 0.35), ("two_words", 0.35), ("solo", 0.2), ("one_word", 0.1)),
        0.52, 0.72, 0.05, 0.15, 0.05, 0.19, 0.50, 125, -7.0, 235, 0.06,
    ),
    GenreProfile(
        "pop", 0.14, ("r-n-b", "electronic", "latin", "indie"),
        ("female vocalists", "dance", "00s", "10s", "catchy", "love", "synthpop", "Pop Rock"),
        (("solo", 0.65), ("one_word", 0.15), ("two_words", 0.1), ("band_the", 0.1)),
        0.64, 0.65, 0.06, 0.25, 0.02, 0.16, 0.55, 120, -6.5, 210, 0.10,
    ),
    GenreProfile(
        "hip-hop", 0.11, ("r-n-b", "pop", "electronic"),
        ("rap", "Hip-Hop", "hip hop", "underground hip-hop", "trap", "east coast rap", "west coast", "Gangsta Rap"),
        (("rap", 0.55), ("solo", 0.3), ("one_word", 0.15)),
        0.76, 0.66, 0.20, 0.15, 0.03, 0.20, 0.48, 115, -6.5, 200, 0.45,
    ),
    GenreProfile(
        "electronic", 0.11, ("pop", "hip-hop", "indie"),
        ("electronica", "house", "techno", "ambient", "chillout", "idm", "dance", "trance", "Downtempo"),
        (("invented", 0.45), ("dj", 0.2), ("two_words", 0.2), ("solo", 0.15)),
        0.66, 0.78, 0.07, 0.08, 0.45, 0.20, 0.42, 126, -6.5, 260, 0.05,
    ),
    GenreProfile(
        "indie", 0.09, ("rock", "folk", "pop", "electronic"),
        ("indie rock", "indie pop", "alternative", "lo-fi", "shoegaze", "dream pop", "seen live"),
        (("band_the", 0.3), ("two_words", 0.4), ("solo", 0.2), ("one_word", 0.1)),
        0.54, 0.58, 0.05, 0.32, 0.12, 0.15, 0.45, 120, -8.0, 230, 0.06,
    ),
    GenreProfile(
        "metal", 0.08, ("rock",),
        ("heavy metal", "death metal", "thrash metal", "metalcore", "black metal", "progressive metal", "seen live"),
        (("dark", 0.7), ("band_the", 0.1), ("two_words", 0.2)),
        0.42, 0.91, 0.08, 0.01, 0.12, 0.22, 0.32, 130, -5.0, 280, 0.08,
    ),
    GenreProfile(
        "r-n-b", 0.07, ("hip-hop", "pop", "jazz"),
        ("soul", "rnb", "neo-soul", "funk", "female vocalists", "sexy", "smooth"),
        (("solo", 0.75), ("one_word", 0.15), ("rap", 0.1)),
        0.68, 0.55, 0.10, 0.30, 0.03, 0.15, 0.52, 110, -7.0, 220, 0.25,
    ),
    GenreProfile(
        "jazz", 0.06, ("classical", "r-n-b", "folk"),
        ("smooth jazz", "instrumental", "fusion", "bebop", "saxophone", "chillout", "piano", "vocal jazz"),
        (("ensemble", 0.35), ("solo", 0.55), ("two_words", 0.1)),
        0.52, 0.35, 0.05, 0.75, 0.40, 0.15, 0.50, 110, -12.0, 320, 0.01,
    ),
    GenreProfile(
        "folk", 0.06, ("indie", "country", "rock"),
        ("acoustic", "singer-songwriter", "indie folk", "folk rock", "Mellow", "female vocalists"),
        (("solo", 0.6), ("band_the", 0.2), ("two_words", 0.2)),
        0.52, 0.40, 0.04, 0.68, 0.08, 0.15, 0.45, 115, -10.0, 225, 0.02,
    ),
    GenreProfile(
        "country", 0.05, ("folk", "rock", "pop"),
        ("americana", "bluegrass", "singer-songwriter", "outlaw country", "male vocalists"),
        (("solo", 0.7), ("band_the", 0.2), ("two_words", 0.1)),
        0.58, 0.66, 0.04, 0.25, 0.01, 0.18, 0.58, 122, -6.5, 205, 0.03,
    ),
    GenreProfile(
        "latin", 0.05, ("pop", "hip-hop", "r-n-b"),
        ("reggaeton", "latino", "spanish", "salsa", "Brazilian", "bossa nova", "latin pop"),
        (("latin", 0.8), ("one_word", 0.2)),
        0.76, 0.72, 0.09, 0.22, 0.01, 0.18, 0.70, 118, -5.5, 215, 0.20,
    ),
    GenreProfile(
        "classical", 0.04, ("jazz",),
        ("instrumental", "piano", "baroque", "composer", "orchestral", "romantic", "Classical Music"),
        (("composer", 0.6), ("orchestra", 0.4)),
        0.30, 0.15, 0.05, 0.93, 0.85, 0.14, 0.25, 100, -22.0, 340, 0.0,
    ),
)
# fmt: on

GENRE_NAMES: tuple[str, ...] = tuple(g.name for g in GENRES)
GENRE_INDEX: dict[str, int] = {name: i for i, name in enumerate(GENRE_NAMES)}

# fmt: off
# Tags Last.fm users attach to artists of every genre.
GENERIC_TAGS: tuple[str, ...] = (
    "seen live", "favorites", "Favourites", "80s", "90s", "00s", "chillout", "beautiful", "awesome", "love",
    "Mellow", "cover",
)
# Nationality tag of an artist, from the locale its name came from.
LOCALE_TAGS: dict[str, str] = {
    "en_US": "american", "en_GB": "british", "de_DE": "german", "fr_FR": "french", "sv_SE": "swedish",
    "it_IT": "italian", "nl_NL": "dutch", "fi_FI": "finnish", "ru_RU": "russian", "uk_UA": "ukrainian",
    "ja_JP": "japanese", "ko_KR": "korean", "tr_TR": "turkish", "es_ES": "spanish", "es_MX": "mexican",
    "es_AR": "argentinian", "pt_BR": "brazilian", "pl_PL": "polish",
}
# fmt: on


def related_boost_matrix(boost: float = 4.0) -> np.ndarray:
    """(G, G) multipliers: genre j is ``boost`` times likelier as a second taste of a fan of i."""
    n = len(GENRES)
    matrix = np.ones((n, n))
    for i, genre in enumerate(GENRES):
        for other in genre.related:
            matrix[i, GENRE_INDEX[other]] = boost
    np.fill_diagonal(matrix, 0.0)
    return matrix


@dataclass(frozen=True)
class Country:
    name: str  # spelled as Last.fm spells it in user.getInfo
    weight: float
    utc_offsets: tuple[int, ...]  # hours; a user gets one of them
    name_locale: str  # Faker locale whose first names its users get


# Last.fm's user base leans to Europe, the Americas and Japan.
COUNTRIES: tuple[Country, ...] = (
    Country("United States", 0.20, (-5, -6, -7, -8), "en_US"),
    Country("United Kingdom", 0.10, (0,), "en_GB"),
    Country("Germany", 0.08, (1,), "de_DE"),
    Country("Brazil", 0.09, (-3,), "pt_BR"),
    Country("Poland", 0.06, (1,), "pl_PL"),
    Country("Russian Federation", 0.06, (3,), "ru_RU"),
    Country("Japan", 0.03, (9,), "ja_JP"),
    Country("Canada", 0.03, (-5, -8), "en_US"),
    Country("France", 0.04, (1,), "fr_FR"),
    Country("Spain", 0.04, (1,), "es_ES"),
    Country("Italy", 0.03, (1,), "it_IT"),
    Country("Netherlands", 0.03, (1,), "nl_NL"),
    Country("Sweden", 0.03, (1,), "sv_SE"),
    Country("Mexico", 0.03, (-6,), "es_MX"),
    Country("Argentina", 0.02, (-3,), "es_AR"),
    Country("Turkey", 0.02, (3,), "tr_TR"),
    Country("Finland", 0.02, (2,), "fi_FI"),
    Country("Ukraine", 0.02, (2,), "uk_UA"),
    Country("Australia", 0.02, (10,), "en_GB"),
)
# Share of profiles whose country is hidden: Last.fm then sends the literal string "None".
HIDDEN_COUNTRY_SHARE = 0.12

# Share of listens starting in each local hour 0..23: quiet nights, a commute bump, an evening peak.
HOUR_PROFILE = np.array(
    [30, 18, 10, 6, 5, 7, 14, 26, 36, 38, 40, 42, 45, 45, 46, 48, 52, 58, 66, 75, 80, 78, 67, 48], dtype=float
)
HOUR_PROFILE /= HOUR_PROFILE.sum()
