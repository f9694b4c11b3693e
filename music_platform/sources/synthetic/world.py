"""The synthetic world: a music catalogue and its listeners, built once per (seed, size).

Everything random here comes from numpy generators seeded by the world's seed, one stream per
part (catalogue, listeners), so the catalogue does not change when only the number of users
does. Listens are not stored: ``listens.generate_day`` draws one UTC day of them on demand.

Taste structure (what a recommender can learn):
- artists and tracks follow Zipf-like popularity (a few hits, a long tail);
- each user loves 1-3 genres (related genres go together: rock with indie/metal, ...);
- each user has favourite artists and favourite tracks that come back again and again;
- sessions stay with one artist for a while (album listening).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from music_platform.sources.synthetic.listens import DayListens, generate_day
from music_platform.sources.synthetic.model import Catalogue, Listeners, day_start_uts
from music_platform.sources.synthetic.names import NameFactory
from music_platform.sources.synthetic.profiles import (
    COUNTRIES,
    GENERIC_TAGS,
    GENRE_NAMES,
    GENRES,
    HIDDEN_COUNTRY_SHARE,
    LOCALE_TAGS,
    related_boost_matrix,
)

DEFAULT_USERS = 2000
MIN_ARTISTS = 1500
ARTISTS_PER_USER = 0.75  # big runs get a bigger catalogue
MEAN_TRACKS_PER_ARTIST = 8
MEAN_LISTENS_PER_USER_DAY = 5.0
FAVOURITE_TRACKS = 24
FAVOURITE_ARTISTS = 8

# Shares of the real-data quirks the world reproduces.
TRACK_MBID_EMPTY_SHARE = 0.30
ARTIST_MBID_EMPTY_SHARE = 0.25
ALBUM_MBID_EMPTY_SHARE = 0.45
ALBUM_NAME_EMPTY_SHARE = 0.03  # scrobbles with "album": {"#text": ""}
IMAGE_EMPTY_SHARE = 0.05
KAGGLE_COVERAGE = 0.85  # share of tracks present in the Kaggle CSV
KAGGLE_SECOND_GENRE_SHARE = 0.05  # same track_id listed again under a related genre
KAGGLE_REISSUE_SHARE = 0.01  # same artist/title again under another track_id
FEATURED_SHARE = 0.12  # tracks with a featured artist ("A;B" in Kaggle)
FEAT_IN_LASTFM_TITLE_SHARE = 0.5  # of those, Last.fm writes "Title (feat. B)"
REMASTERED_SHARE = 0.04  # Kaggle writes "Title - Remastered 2011"
CASE_DIFFERENCE_SHARE = 0.03  # Kaggle capitalises every word
SILENT_TRACK_SHARE = 0.002  # tempo 0 and time_signature 0, as in the real Kaggle file

# Users register before this day; their lifetime playcount is counted up to it, so that
# user.getInfo does not depend on when the code runs.
REFERENCE_DAY = dt.date(2025, 1, 1)
FIRST_REGISTRATION_DAY = dt.date(2005, 1, 1)

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def default_artist_count(n_users: int) -> int:
    return max(MIN_ARTISTS, int(round(ARTISTS_PER_USER * n_users)))


def _uuid_strings(rng: np.random.Generator, n: int, empty_share: float) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    empty = rng.random(n) < empty_share
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = "" if empty[i] else str(uuid.UUID(bytes=raw[i].tobytes(), version=4))
    return out


def _spotify_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = _BASE62[rng.integers(0, 62, size=(n, 22))]
    return np.char.decode(np.ascontiguousarray(codes).view("S22").ravel(), "ascii").astype(object)


def _hex_hashes(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    return [row.tobytes().hex() for row in raw]


def _beta_around(rng: np.random.Generator, mean: np.ndarray, concentration: float) -> np.ndarray:
    mean = np.clip(mean, 0.02, 0.98)
    return rng.beta(mean * concentration, (1.0 - mean) * concentration)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=float)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


@dataclass(eq=False)
class SyntheticWorld:
    seed: int
    catalogue: Catalogue
    listeners: Listeners
    _day_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    day_cache_size: int = 40
    # The Last.fm strings of every track (payloads.TrackStrings), built on first use.
    track_strings_cache: object | None = field(default=None, repr=False)
    recent_item_json_cache: object | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.listeners)

    @property
    def user_index(self) -> dict[str, int]:
        return self._user_index

    def __post_init__(self) -> None:
        self._user_index = {name: i for i, name in enumerate(self.listeners.names)}
        self._artist_index = {name: i for i, name in enumerate(self.catalogue.artist_names)}
        self._artist_by_mbid: dict[str, int] | None = None

    def artist_id(self, name: str) -> int | None:
        return self._artist_index.get(name)

    def artist_id_by_mbid(self, mbid: str) -> int | None:
        if self._artist_by_mbid is None:
            self._artist_by_mbid = {m: i for i, m in enumerate(self.catalogue.artist_mbids) if m}
        return self._artist_by_mbid.get(mbid)

    def listens_for_day(self, day: dt.date) -> DayListens:
        """All listens of one UTC day (cached: the last ``day_cache_size`` days)."""
        key = day.toordinal()
        with self._lock:
            cached = self._day_cache.get(key)
            if cached is not None:
                self._day_cache.move_to_end(key)
                return cached
        listens = generate_day(self.seed, self.catalogue, self.listeners, day)
        with self._lock:
            self._day_cache[key] = listens
            while len(self._day_cache) > self.day_cache_size:
                self._day_cache.popitem(last=False)
        return listens

    def expected_scrobbles(self, day: dt.date) -> int:
        """How many scrobbles the whole day holds, over all users (``SyntheticLastfmSource``'s
        method of the same name also leaves out what lies after "now")."""
        return len(self.listens_for_day(day))

    def expected_scrobbles_by_user(self, day: dt.date) -> dict[str, int]:
        listens = self.listens_for_day(day)
        counts = np.diff(listens.user_offsets)
        return {self.listeners.names[i]: int(counts[i]) for i in np.flatnonzero(counts)}


# -- building ------------------------------------------------------------------------------


def _unique(draw, n: int, attempts: int = 25, fallback=None) -> list:
    """n draws whose first element is unique case-insensitively (names resolve lowercased)."""
    seen: set[str] = set()
    out = []
    for _ in range(n):
        for attempt in range(attempts):
            item = draw() if attempt < attempts - 1 or fallback is None else fallback()
            name = item[0] if isinstance(item, tuple) else item
            if name.casefold() not in seen:
                break
        else:
            raise RuntimeError("could not draw a unique name; the name pools are too small for this size")
        seen.add(name.casefold())
        out.append(item)
    return out


def _build_catalogue(seed: int, n_artists: int) -> Catalogue:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA7A, n_artists]))
    names = NameFactory(rng)
    n_genres = len(GENRES)
    shares = np.array([g.share for g in GENRES])
    shares /= shares.sum()

    # Artists.
    artist_genre = rng.choice(n_genres, size=n_artists, p=shares)
    # Names are unique case-insensitively: the warehouse resolves artists by lowercased name.
    seen: set[str] = set()
    artists = []
    for genre_id in artist_genre:
        profile = GENRES[genre_id]
        styles = [s for s, _ in profile.artist_styles]
        weights = np.array([w for _, w in profile.artist_styles])
        weights = weights / weights.sum()
        for attempt in range(30):
            style = styles[int(rng.choice(len(styles), p=weights))] if attempt < 20 else "two_words"
            name, vocal, locale = names.artist(style)
            if name.casefold() not in seen:
                break
        else:
            raise RuntimeError(f"could not draw a unique artist name for {n_artists} artists")
        seen.add(name.casefold())
        artists.append((name, vocal, locale))
    artist_names = [a[0] for a in artists]
    artist_vocal = [a[1] for a in artists]
    artist_locale = [a[2] for a in artists]
    artist_mbids = _uuid_strings(rng, n_artists, ARTIST_MBID_EMPTY_SHARE)

    secondary: list[tuple[int, ...]] = []
    for genre_id in artist_genre:
        related = [GENRE_NAMES.index(r) for r in GENRES[genre_id].related]
        k = min(len(related), int(rng.choice(3, p=[0.35, 0.45, 0.2])))
        secondary.append(tuple(int(x) for x in rng.choice(related, size=k, replace=False)) if k else ())

    # Zipf popularity over a random ranking of the artists.
    rank = rng.permutation(n_artists)
    artist_weight = 1.0 / (rank + 1.0) ** 0.9
    artist_weight /= artist_weight.sum()

    track_count = np.clip(rng.geometric(1.0 / MEAN_TRACKS_PER_ARTIST, size=n_artists), 1, 40)
    track_start = np.concatenate(([0], np.cumsum(track_count)[:-1]))
    n_tracks = int(track_count.sum())
    track_artist = np.repeat(np.arange(n_artists), track_count)
    position = np.arange(n_tracks) - track_start[track_artist]

    # Albums: a few per artist, tracks in order.
    tracks_per_album = rng.integers(4, 13, size=n_artists)
    album_count = np.clip(np.ceil(track_count / tracks_per_album).astype(int), 1, 6)
    album_start = np.concatenate(([0], np.cumsum(album_count)[:-1]))
    track_album = album_start[track_artist] + (position * album_count[track_artist]) // track_count[track_artist]
    n_albums = int(album_count.sum())
    album_artist = np.repeat(np.arange(n_artists), album_count)
    album_names = [names.album_title(GENRES[artist_genre[a]].name, artist_locale[a]) for a in album_artist]
    album_mbids = _uuid_strings(rng, n_albums, ALBUM_MBID_EMPTY_SHARE)
    album_hashes = _hex_hashes(rng, n_albums)
    no_cover = rng.random(n_albums) < IMAGE_EMPTY_SHARE
    album_hashes = ["" if empty else h for h, empty in zip(album_hashes, no_cover, strict=True)]

    # Track names: unique per artist (case-insensitively), then the Last.fm/Kaggle variants.
    titles: list[str] = []
    for a in range(n_artists):
        genre, locale = GENRES[artist_genre[a]].name, artist_locale[a]
        titles.extend(
            _unique(
                lambda genre=genre, locale=locale: names.track_title(genre, locale),
                int(track_count[a]),
                attempts=40,
                fallback=lambda: f"{names.word()} {names.word()} {names.word()}",
            )
        )
    lastfm_names = list(titles)
    kaggle_names = list(titles)
    kaggle_artists = [artist_names[a] for a in track_artist]
    featured = rng.random(n_tracks) < FEATURED_SHARE
    feat_in_title = rng.random(n_tracks) < FEAT_IN_LASTFM_TITLE_SHARE
    remastered = rng.random(n_tracks) < REMASTERED_SHARE
    recased = rng.random(n_tracks) < CASE_DIFFERENCE_SHARE
    feat_pick = rng.random(n_tracks)
    remaster_year = rng.integers(1995, 2020, size=n_tracks)
    artists_by_genre = [np.flatnonzero(artist_genre == g) for g in range(n_genres)]
    for t in np.flatnonzero(featured | remastered | recased):
        a = track_artist[t]
        if featured[t]:
            pool = artists_by_genre[artist_genre[a]]
            guest = int(pool[int(feat_pick[t] * len(pool))])
            if guest != a:
                kaggle_artists[t] = f"{artist_names[a]};{artist_names[guest]}"
                if feat_in_title[t]:
                    lastfm_names[t] = f"{titles[t]} (feat. {artist_names[guest]})"
        if remastered[t]:
            kaggle_names[t] = f"{titles[t]} - Remastered {remaster_year[t]}"
        elif recased[t]:
            kaggle_names[t] = " ".join(w[:1].upper() + w[1:] for w in titles[t].split(" "))

    # Popularity: artist share times a Zipf share inside the artist.
    within = 1.0 / (position + 1.0) ** 1.1
    within_total = np.bincount(track_artist, weights=within, minlength=n_artists)
    within_share = within / within_total[track_artist]
    track_weight = artist_weight[track_artist] * within_share
    track_weight /= track_weight.sum()
    within_cum = np.cumsum(within_share) - np.concatenate(([0.0], np.cumsum(within_share)))[track_start][track_artist]
    last_of_artist = track_start + track_count - 1
    within_cum[last_of_artist] = 1.0
    within_artist_key = track_artist + within_cum

    track_genre = artist_genre[track_artist]
    genre_track_ids, genre_track_cdf, genre_fav_cdf = [], [], []
    genre_artist_ids, genre_artist_fav_cdf = [], []
    for g in range(n_genres):
        ids = np.flatnonzero(track_genre == g)
        genre_track_ids.append(ids)
        genre_track_cdf.append(_cdf(track_weight[ids]))
        genre_fav_cdf.append(_cdf(track_weight[ids] ** 0.6))
        artist_ids = artists_by_genre[g]
        genre_artist_ids.append(artist_ids)
        genre_artist_fav_cdf.append(_cdf(artist_weight[artist_ids] ** 0.6))

    features, duration_ms, explicit = _audio_features(rng, artist_genre, track_artist, n_tracks)
    log_weight = np.log(track_weight)
    lo, hi = np.percentile(log_weight, [1, 99.5])
    popularity = np.clip(np.round(85 * (log_weight - lo) / (hi - lo) + rng.normal(0, 6, n_tracks)), 0, 100)
    popularity[rng.random(n_tracks) < 0.12] = 0  # real file: ~15% of rows have popularity 0

    in_kaggle = rng.random(n_tracks) < KAGGLE_COVERAGE
    second_genre = np.full(n_tracks, -1)
    second = in_kaggle & (rng.random(n_tracks) < KAGGLE_SECOND_GENRE_SHARE)
    second_pick = rng.random(n_tracks)
    for t in np.flatnonzero(second):
        related = GENRES[track_genre[t]].related
        second_genre[t] = GENRE_NAMES.index(related[int(second_pick[t] * len(related))])
    reissue = in_kaggle & (rng.random(n_tracks) < KAGGLE_REISSUE_SHARE)

    artist_tags = [
        _artist_tags(rng, artist_names[a], int(artist_genre[a]), secondary[a], artist_vocal[a], artist_locale[a])
        for a in range(n_artists)
    ]

    return Catalogue(
        genres=GENRE_NAMES,
        artist_names=artist_names,
        artist_mbids=artist_mbids,
        artist_genre=artist_genre,
        artist_secondary_genres=secondary,
        artist_vocal=artist_vocal,
        artist_weight=artist_weight,
        artist_track_start=track_start,
        artist_track_count=track_count,
        artist_tags=artist_tags,
        album_names=album_names,
        album_mbids=album_mbids,
        album_image_hashes=album_hashes,
        track_artist=track_artist,
        track_album=track_album,
        track_lastfm_name=lastfm_names,
        track_kaggle_name=kaggle_names,
        track_kaggle_artists=kaggle_artists,
        track_mbid=_uuid_strings(rng, n_tracks, TRACK_MBID_EMPTY_SHARE),
        track_spotify_id=_spotify_ids(rng, n_tracks),
        track_album_visible=rng.random(n_tracks) >= ALBUM_NAME_EMPTY_SHARE,
        track_duration_ms=duration_ms,
        track_weight=track_weight,
        track_in_kaggle=in_kaggle,
        track_kaggle_second_genre=second_genre,
        track_kaggle_reissue=reissue,
        track_reissue_spotify_id=_spotify_ids(rng, n_tracks),
        track_popularity=popularity.astype(np.int64),
        track_explicit=explicit,
        track_features=features,
        within_artist_key=within_artist_key,
        genre_track_ids=genre_track_ids,
        genre_track_cdf=genre_track_cdf,
        genre_favourite_cdf=genre_fav_cdf,
        genre_artist_ids=genre_artist_ids,
        genre_artist_favourite_cdf=genre_artist_fav_cdf,
        global_track_cdf=_cdf(track_weight),
    )


def _audio_features(
    rng: np.random.Generator, artist_genre: np.ndarray, track_artist: np.ndarray, n_tracks: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Kaggle audio features: genre profile, an artist's own sound around it, tracks around that."""

    def profile(attribute: str) -> np.ndarray:
        return np.array([getattr(g, attribute) for g in GENRES], dtype=float)

    track_genre = artist_genre[track_artist]
    n_artists = len(artist_genre)
    features: dict[str, np.ndarray] = {}
    for name, artist_sd, concentration in (
        ("danceability", 0.07, 18.0),
        ("energy", 0.08, 14.0),
        ("speechiness", 0.03, 12.0),
        ("acousticness", 0.10, 6.0),
        ("liveness", 0.03, 8.0),
        ("valence", 0.10, 7.0),
    ):
        artist_mean = profile(name)[artist_genre] + rng.normal(0, artist_sd, n_artists)
        features[name] = _beta_around(rng, artist_mean[track_artist], concentration)
    features["speechiness"] = np.clip(features["speechiness"], 0.022, 0.96)
    live = rng.random(n_tracks) < 0.03
    features["liveness"][live] = rng.beta(8, 3, int(live.sum()))

    # Instrumentalness is bimodal: mostly ~0 (often exactly 0.0), high for instrumental music.
    artist_instrumental = np.clip(profile("instrumental_share")[artist_genre] + rng.normal(0, 0.15, n_artists), 0, 1)
    instrumental = rng.random(n_tracks) < artist_instrumental[track_artist]
    small = 10.0 ** rng.uniform(-6, -1.3, n_tracks)
    small[rng.random(n_tracks) < 0.4] = 0.0
    features["instrumentalness"] = np.where(instrumental, rng.beta(8, 2, n_tracks), small)

    energy_shift = features["energy"] - profile("energy")[track_genre]
    features["loudness"] = np.clip(
        profile("loudness")[track_genre] + 8 * energy_shift + rng.normal(0, 2, n_tracks), -30.0, -0.5
    )
    features["tempo"] = np.clip(rng.normal(profile("tempo")[track_genre], 25), 60.0, 200.0)
    features["key"] = rng.integers(0, 12, n_tracks)
    features["mode"] = (rng.random(n_tracks) < 0.65).astype(np.int64)
    features["time_signature"] = rng.choice(np.array([3, 4, 5]), size=n_tracks, p=[0.08, 0.9, 0.02])
    silent = rng.random(n_tracks) < SILENT_TRACK_SHARE
    features["tempo"][silent] = 0.0
    features["time_signature"][silent] = 0

    duration_s = np.clip(rng.lognormal(np.log(profile("duration_s")[track_genre]), 0.25), 60, 1200)
    duration_ms = (duration_s * 1000).astype(np.int64) + rng.integers(0, 1000, n_tracks)
    explicit = rng.random(n_tracks) < profile("explicit_share")[track_genre]
    return features, duration_ms, explicit


def _artist_tags(
    rng: np.random.Generator, artist: str, genre: int, secondary: tuple[int, ...], vocal: str, locale: str
) -> tuple[tuple[str, int], ...]:
    """Primary genre at 100, related genres lower, then descriptive tags with falling counts."""
    tags: list[tuple[str, int]] = [(GENRE_NAMES[genre], 100)]
    for g in secondary:
        tags.append((GENRE_NAMES[g], int(rng.integers(20, 80))))
    pool = list(GENRES[genre].descriptive_tags) + list(GENERIC_TAGS)
    if vocal in ("female", "male"):
        pool.append(f"{vocal} vocalists")
    nationality = LOCALE_TAGS.get(locale)
    if nationality and (vocal != "group" or rng.random() < 0.3):  # band names say less about where from
        pool.append(nationality)
    n = int(rng.integers(2, 9))
    picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    counts = np.sort(rng.integers(1, 70, size=len(picks)))[::-1]
    seen = {t.casefold() for t, _ in tags}
    for p, c in zip(picks, counts, strict=True):
        if pool[p].casefold() not in seen:
            seen.add(pool[p].casefold())
            tags.append((pool[p], int(c)))
    if rng.random() < 0.05 and artist.casefold() not in seen:  # fans tag an artist with its own name
        tags.append((artist, int(rng.integers(1, 10))))
    return tuple(sorted(tags, key=lambda tc: -tc[1]))


def _build_listeners(seed: int, n_users: int, catalogue: Catalogue) -> Listeners:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x05E2, n_users]))
    names = NameFactory(rng)
    n_genres = len(GENRES)

    usernames = _unique(
        names.username, n_users, attempts=60, fallback=lambda: f"{names.username()[:11]}{int(rng.integers(1000, 9999))}"
    )

    country_p = np.array([c.weight for c in COUNTRIES])
    country_ids = rng.choice(len(COUNTRIES), size=n_users, p=country_p / country_p.sum())
    hidden = rng.random(n_users) < HIDDEN_COUNTRY_SHARE
    offsets = np.array(
        [COUNTRIES[i].utc_offsets[int(rng.integers(len(COUNTRIES[i].utc_offsets)))] for i in country_ids]
    )
    countries = ["None" if hidden[i] else COUNTRIES[country_ids[i]].name for i in range(n_users)]

    female = rng.random(n_users) < 0.45
    discloses = rng.random(n_users) < 0.55  # the others show age "0" and gender "n"
    ages = np.where(discloses, np.clip(np.round(rng.gamma(6.0, 4.5, n_users) + 12), 14, 75), 0).astype(np.int64)
    genders = ["n" if not discloses[i] else ("f" if female[i] else "m") for i in range(n_users)]
    has_real_name = rng.random(n_users) < 0.6
    real_names = [
        names.first_name(COUNTRIES[country_ids[i]].name_locale, bool(female[i])) if has_real_name[i] else ""
        for i in range(n_users)
    ]
    subscriber = rng.random(n_users) < 0.04
    first, last = day_start_uts(FIRST_REGISTRATION_DAY), day_start_uts(REFERENCE_DAY) - 86400
    registered = (first + (last - first) * rng.beta(2.0, 1.3, n_users)).astype(np.int64)
    image_hashes = _hex_hashes(rng, n_users)
    no_avatar = rng.random(n_users) < 0.3
    image_hashes = ["" if no_avatar[i] else h for i, h in enumerate(image_hashes)]

    sigma = 0.9
    activity = np.minimum(rng.lognormal(np.log(MEAN_LISTENS_PER_USER_DAY) - sigma**2 / 2, sigma, n_users), 80.0)
    active_share = np.clip(rng.beta(3.0, 2.0, n_users), 0.15, 0.98)
    years = (day_start_uts(REFERENCE_DAY) - registered) / (365.25 * 86400)
    lifetime = np.round(years * 365.25 * activity * rng.uniform(0.5, 1.3, n_users)).astype(np.int64)

    # Listening modes per user: favourite track, favourite artist, exploration, else by genre taste.
    p_fav_track = rng.uniform(0.15, 0.40, n_users)
    p_fav_artist = rng.uniform(0.15, 0.35, n_users)
    p_explore = np.full(n_users, 0.04)
    mode_cdf = np.cumsum(np.stack([p_fav_track, p_fav_artist, p_explore], axis=1), axis=1)

    # Genre taste concentrated on 1-3 genres, related genres likelier together.
    shares = np.array([g.share for g in GENRES])
    shares /= shares.sum()
    boost = related_boost_matrix()
    n_loved = rng.choice([1, 2, 3], size=n_users, p=[0.35, 0.45, 0.2])
    loved = np.full((n_users, 3), -1)
    loved[:, 0] = rng.choice(n_genres, size=n_users, p=shares)
    gumbel = lambda: -np.log(-np.log(rng.random((n_users, n_genres))))  # noqa: E731 - Gumbel-max sampling
    for k in (1, 2):
        weights = shares[None, :] * boost[loved[:, 0]]
        for j in range(k):
            weights[np.arange(n_users), loved[:, j]] = 0.0
        with np.errstate(divide="ignore"):
            keys = np.log(weights) + gumbel()
        loved[:, k] = np.where(n_loved > k, keys.argmax(axis=1), -1)
    dirichlet = rng.dirichlet(np.full(3, 1.5), size=n_users)
    affinity = np.zeros((n_users, n_genres))
    rows = np.arange(n_users)
    for k in range(3):
        mask = loved[:, k] >= 0
        affinity[rows[mask], loved[mask, k]] += dirichlet[mask, k]
    affinity /= affinity.sum(axis=1, keepdims=True)
    affinity = 0.95 * affinity + 0.05 * shares[None, :]  # a little of everything
    affinity_cdf = np.cumsum(affinity, axis=1)
    affinity_cdf[:, -1] = 1.0

    favourite_tracks = _favourites(
        rng, affinity_cdf, catalogue.genre_track_ids, catalogue.genre_favourite_cdf, FAVOURITE_TRACKS
    )
    favourite_artists = _favourites(
        rng, affinity_cdf, catalogue.genre_artist_ids, catalogue.genre_artist_favourite_cdf, FAVOURITE_ARTISTS
    )
    return Listeners(
        names=usernames,
        real_names=real_names,
        countries=countries,
        utc_offset_hours=offsets,
        ages=ages,
        genders=genders,
        subscriber=subscriber,
        registered_uts=registered,
        image_hashes=image_hashes,
        lifetime_playcount=lifetime,
        activity=activity,
        active_day_share=active_share,
        mode_cdf=mode_cdf,
        affinity=affinity,
        affinity_cdf=affinity_cdf,
        favourite_tracks=favourite_tracks,
        favourite_artists=favourite_artists,
    )


def _favourites(
    rng: np.random.Generator,
    affinity_cdf: np.ndarray,
    genre_ids: list[np.ndarray],
    genre_cdf: list[np.ndarray],
    slots: int,
) -> np.ndarray:
    """(n_users, slots) items drawn by genre taste, then by a flattened popularity in the genre."""
    n_users = affinity_cdf.shape[0]
    genre = (rng.random((n_users, slots, 1)) < affinity_cdf[:, None, :]).argmax(axis=2)
    u = rng.random((n_users, slots))
    out = np.empty((n_users, slots), dtype=np.int64)
    for g in range(len(genre_ids)):
        mask = genre == g
        if mask.any():
            pos = np.minimum(np.searchsorted(genre_cdf[g], u[mask], side="right"), len(genre_ids[g]) - 1)
            out[mask] = genre_ids[g][pos]
    return out


@lru_cache(maxsize=4)
def _catalogue(seed: int, n_artists: int) -> Catalogue:
    return _build_catalogue(seed, n_artists)


@lru_cache(maxsize=4)
def get_world(seed: int = 42, n_users: int = DEFAULT_USERS, n_artists: int | None = None) -> SyntheticWorld:
    """The world for (seed, n_users[, n_artists]), built once per process."""
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    artists = default_artist_count(n_users) if n_artists is None else n_artists
    if artists < 1000:
        raise ValueError(f"the synthetic catalogue needs at least 1000 artists, got {artists}")
    catalogue = _catalogue(seed, artists)
    return SyntheticWorld(seed=seed, catalogue=catalogue, listeners=_build_listeners(seed, n_users, catalogue))


__all__ = ["Catalogue", "Listeners", "SyntheticWorld", "day_start_uts", "default_artist_count", "get_world"]
