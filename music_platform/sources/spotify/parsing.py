"""Pure functions turning Spotify Web API objects into raw-table rows.

Each ``parse_*`` function takes the objects of a response list (``tracks``, ``artists`` or
``audio_features``; ``null`` entries for unknown ids are the client's business and must be
left out) and returns a :class:`ParseResult` for ``raw.spotify_tracks``,
``raw.spotify_artists`` or ``raw.spotify_audio_features``:

- ``rows``: dicts with the table's columns minus ``source``/``ingested_at`` (add them with
  ``result.frame(source="spotify")``);
- ``rejects``: objects that cannot become a valid row (no id, no name, no artist, a
  duration or an audio feature that is missing, not a number or out of range), with the
  reason and the object as received, to be quarantined and counted, never dropped silently.

Fields Spotify stopped sending to development-mode apps in 2026 (``popularity``,
``followers``, ``genres``, ``available_markets``) become nulls, not zeros.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from music_platform.audio_features import AUDIO_UNIT_FEATURES
from music_platform.sources.lastfm.parsing import ParseResult, Reject
from music_platform.sources.schemas import SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES, SPOTIFY_TRACKS, RawTable


class _BadObject(ValueError):
    """Raised while building a row; becomes a Reject with this message."""


def _text(value: Any, what: str, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _BadObject(f"{what} is missing")
        return None
    if not isinstance(value, str):
        raise _BadObject(f"{what} is not text: {value!r}")
    return value.strip()


def _number(value: Any, what: str, *, required: bool) -> float | None:
    if value is None:
        if required:
            raise _BadObject(f"{what} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadObject(f"{what} is not a number: {value!r}")
    return float(value)


def _integer(value: Any, what: str, *, required: bool = False, minimum: int | None = None) -> int | None:
    number = _number(value, what, required=required)
    if number is None:
        return None
    if number != int(number):
        raise _BadObject(f"{what} is not an integer: {value!r}")
    if minimum is not None and number < minimum:
        raise _BadObject(f"{what} is below {minimum}: {value!r}")
    return int(number)


def _boolean(value: Any, what: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _BadObject(f"{what} is not a boolean: {value!r}")
    return value


def _popularity(value: Any) -> int | None:
    popularity = _integer(value, "popularity")
    if popularity is not None and not 0 <= popularity <= 100:
        raise _BadObject(f"popularity is not in 0..100: {value!r}")
    return popularity


def _collect(table: RawTable, objects: Iterable[Any], build: Callable[[Mapping], dict[str, Any]]) -> ParseResult:
    objects = list(objects)
    result = ParseResult(table, items_received=len(objects))
    for position, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            result.rejects.append(Reject(f"not a JSON object: {type(obj).__name__}", position, obj))
            continue
        try:
            result.rows.append(build(obj))
        except _BadObject as exc:
            result.rejects.append(Reject(str(exc), position, obj))
    return result


# -- tracks ----------------------------------------------------------------------------------


def _track_row(track: Mapping) -> dict[str, Any]:
    artists = track.get("artists")
    if not isinstance(artists, list) or not artists:
        raise _BadObject("track has no artists")
    ids: list[str] = []
    names: list[str] = []
    for artist in artists:
        if not isinstance(artist, Mapping):
            raise _BadObject(f"artist entry is not an object: {artist!r}")
        ids.append(_text(artist.get("id"), "artist id", required=True))
        names.append(_text(artist.get("name"), "artist name", required=True))
    album = track.get("album") if isinstance(track.get("album"), Mapping) else {}
    external_ids = track.get("external_ids") if isinstance(track.get("external_ids"), Mapping) else {}
    return {
        "track_id": _text(track.get("id"), "track id", required=True),
        "track_name": _text(track.get("name"), "track name", required=True),
        "artist_ids": ";".join(ids),
        "artist_names": ";".join(names),
        "primary_artist_id": ids[0],
        "primary_artist_name": names[0],
        "album_id": _text(album.get("id"), "album id", required=False),
        "album_name": _text(album.get("name"), "album name", required=False),
        "album_release_date": _text(album.get("release_date"), "album release date", required=False),
        "album_release_date_precision": _text(
            album.get("release_date_precision"), "album release date precision", required=False
        ),
        "duration_ms": _integer(track.get("duration_ms"), "duration_ms", required=True, minimum=0),
        "explicit": _boolean(track.get("explicit"), "explicit"),
        "popularity": _popularity(track.get("popularity")),
        "isrc": _text(external_ids.get("isrc"), "isrc", required=False),
        "disc_number": _integer(track.get("disc_number"), "disc_number"),
        "track_number": _integer(track.get("track_number"), "track_number"),
    }


def parse_tracks(tracks: Iterable[Any]) -> ParseResult:
    """Track objects (``GET /tracks``, ``GET /tracks/{id}``, search items) to ``raw.spotify_tracks`` rows."""
    return _collect(SPOTIFY_TRACKS, tracks, _track_row)


# -- artists ---------------------------------------------------------------------------------


def _artist_row(artist: Mapping) -> dict[str, Any]:
    genres = artist.get("genres")
    if genres is not None and not (isinstance(genres, list) and all(isinstance(g, str) for g in genres)):
        raise _BadObject(f"genres is not a list of names: {genres!r}")
    # An empty or withdrawn genre list is a null: downstream reads genres only when there are some.
    joined_genres = ";".join(g.strip() for g in genres or [] if g.strip()) or None
    followers = artist.get("followers")
    follower_total = followers.get("total") if isinstance(followers, Mapping) else None
    return {
        "artist_id": _text(artist.get("id"), "artist id", required=True),
        "artist_name": _text(artist.get("name"), "artist name", required=True),
        "genres": joined_genres,
        "popularity": _popularity(artist.get("popularity")),
        "followers": _integer(follower_total, "followers", minimum=0),
    }


def parse_artists(artists: Iterable[Any]) -> ParseResult:
    """Artist objects (``GET /artists``, ``GET /artists/{id}``) to ``raw.spotify_artists`` rows."""
    return _collect(SPOTIFY_ARTISTS, artists, _artist_row)


# -- audio features --------------------------------------------------------------------------


def _audio_features_row(features: Mapping) -> dict[str, Any]:
    row: dict[str, Any] = {"track_id": _text(features.get("id"), "track id", required=True)}
    for name in AUDIO_UNIT_FEATURES:
        value = _number(features.get(name), name, required=True)
        if not 0.0 <= value <= 1.0:
            raise _BadObject(f"{name} is not in [0, 1]: {features.get(name)!r}")
        row[name] = value
    tempo = _number(features.get("tempo"), "tempo", required=True)
    if tempo < 0:
        raise _BadObject(f"tempo is negative: {features.get('tempo')!r}")
    key = _integer(features.get("key"), "key")
    if key is not None and not -1 <= key <= 11:
        raise _BadObject(f"key is not in -1..11: {features.get('key')!r}")
    mode = _integer(features.get("mode"), "mode")
    if mode is not None and mode not in (0, 1):
        raise _BadObject(f"mode is not 0 or 1: {features.get('mode')!r}")
    row.update(
        tempo=tempo,
        key=key,
        mode=mode,
        loudness=_number(features.get("loudness"), "loudness", required=False),
        duration_ms=_integer(features.get("duration_ms"), "duration_ms", minimum=0),
        time_signature=_integer(features.get("time_signature"), "time_signature", minimum=0),
    )
    return row


def parse_audio_features(features: Iterable[Any]) -> ParseResult:
    """Audio-features objects (``GET /audio-features``) to ``raw.spotify_audio_features`` rows."""
    return _collect(SPOTIFY_AUDIO_FEATURES, features, _audio_features_row)
