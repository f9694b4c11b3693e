"""Spotify objects to raw rows: real recorded fixtures, the raw contracts, quarantined objects."""

from __future__ import annotations

import json

import duckdb
import pytest

from music_platform.quality.completeness import now_utc_literal
from music_platform.sources.schemas import NOW_UTC, RAW_TABLES
from music_platform.sources.spotify.parsing import parse_artists, parse_audio_features, parse_tracks
from music_platform_tests.conftest import require_shared_data
from music_platform_tests.fakes.spotify_server import FakeCatalogue

FIXTURES = "api-fixtures/spotify-json-spotify-web-api-java"


@pytest.fixture
def fixtures():
    folder = require_shared_data(FIXTURES)
    return lambda name: json.loads((folder / name).read_text(encoding="utf-8"))


def assert_valid_for_contract(frame, table_name: str) -> None:
    table = RAW_TABLES[table_name]
    assert list(frame.columns) == table.column_names
    checks = " and ".join(c.validity_sql() for c in table.columns if c.validity_sql())
    con = duckdb.connect()
    con.register("rows", frame)
    query = f"select count(*) from rows where not ({checks})".replace(NOW_UTC, now_utc_literal())
    assert con.execute(query).fetchone()[0] == 0


# -- the real recorded answers -------------------------------------------------------------------


def test_real_several_tracks(fixtures):
    result = parse_tracks(fixtures("GetSeveralTracksRequest.json")["tracks"])
    assert result.rejects == []
    first = result.rows[0]
    assert first["track_id"] == "3n3Ppam7vgaVa1iaRUc9Lp"
    assert (first["track_name"], first["primary_artist_name"]) == ("Mr. Brightside", "The Killers")
    assert (first["album_name"], first["duration_ms"], first["popularity"]) == ("Hot Fuss (Deluxe Version)", 222200, 73)
    assert (first["isrc"], first["explicit"], first["track_number"]) == ("GBFFP0300052", False, 2)
    assert first["album_release_date"] is None  # this older recording has no release date
    assert_valid_for_contract(result.frame(source="spotify"), "spotify_tracks")


def test_real_single_track_and_top_tracks(fixtures):
    single = parse_tracks([fixtures("GetTrackRequest.json")])
    top = parse_tracks(fixtures("GetUsersTopTracksRequest.json")["items"])
    assert single.rejects == [] and top.rejects == []
    assert len(top.rows) == 10
    multi = [r for r in top.rows if ";" in r["artist_ids"]]
    assert all(len(r["artist_ids"].split(";")) == len(r["artist_names"].split(";")) for r in multi)


def test_real_several_artists(fixtures):
    result = parse_artists(fixtures("GetSeveralArtistsRequest.json")["artists"])
    assert result.rejects == []
    bowie = result.rows[0]
    assert bowie == {
        "artist_id": "0oSGxfWSnnOXhD2fKuz2Gy",
        "artist_name": "David Bowie",
        "genres": "art rock;glam rock;permanent wave",
        "popularity": 77,
        "followers": 633494,
    }
    assert_valid_for_contract(result.frame(source="spotify"), "spotify_artists")


def test_real_audio_features(fixtures):
    several = parse_audio_features(fixtures("GetAudioFeaturesForSeveralTracksRequest.json")["audio_features"])
    single = parse_audio_features([fixtures("GetAudioFeaturesForTrackRequest.json")])
    assert several.rejects == [] and single.rejects == []
    first = several.rows[0]
    assert first["track_id"] == "4JpKVNYnVcJ8tuMKjAj50A"
    assert (first["danceability"], first["tempo"], first["key"], first["mode"]) == (0.808, 123.99, 7, 1)
    assert (first["duration_ms"], first["time_signature"]) == (535223, 4)
    assert_valid_for_contract(several.frame(source="spotify"), "spotify_audio_features")


# -- shapes of the fake and of 2026 development-mode answers ---------------------------------------


def test_generated_catalogue_parses_cleanly():
    catalogue = FakeCatalogue.generated()
    tracks = parse_tracks(catalogue.tracks.values())
    artists = parse_artists(catalogue.artists.values())
    features = parse_audio_features(catalogue.audio_features.values())
    assert (tracks.rejects, artists.rejects, features.rejects) == ([], [], [])
    assert len(tracks.rows) == len(catalogue.tracks) and len(features.rows) == len(catalogue.tracks)
    assert_valid_for_contract(tracks.frame(source="spotify"), "spotify_tracks")
    assert_valid_for_contract(artists.frame(source="spotify"), "spotify_artists")
    assert_valid_for_contract(features.frame(source="spotify"), "spotify_audio_features")


def test_withdrawn_fields_become_nulls():
    catalogue = FakeCatalogue.generated()
    track = dict(next(iter(catalogue.tracks.values())))
    artist = dict(next(iter(catalogue.artists.values())))
    for key in ("popularity", "available_markets"):
        track.pop(key)
    for key in ("popularity", "followers", "genres"):
        artist.pop(key)
    assert parse_tracks([track]).rows[0]["popularity"] is None
    row = parse_artists([artist]).rows[0]
    assert (row["genres"], row["popularity"], row["followers"]) == (None, None, None)
    assert parse_artists([{**artist, "genres": []}]).rows[0]["genres"] is None


# -- quarantine --------------------------------------------------------------------------------------


def good_features(**changes):
    features = dict(next(iter(FakeCatalogue.generated().audio_features.values())))
    features.update(changes)
    return features


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"danceability": 1.5}, "danceability is not in [0, 1]"),
        ({"valence": -0.01}, "valence is not in [0, 1]"),
        ({"energy": None}, "energy is missing"),
        ({"energy": "0.5"}, "energy is not a number"),
        ({"tempo": -1}, "tempo is negative"),
        ({"key": 12}, "key is not in -1..11"),
        ({"mode": 3}, "mode is not 0 or 1"),
        ({"id": ""}, "track id is missing"),
        ({"duration_ms": -5}, "duration_ms is below 0"),
    ],
)
def test_bad_audio_features_are_rejected_with_reason(changes, reason):
    result = parse_audio_features([good_features(), good_features(**changes)])
    assert len(result.rows) == 1
    assert len(result.rejects) == 1
    assert reason in result.rejects[0].reason
    assert result.rejects[0].position == 1
    assert result.rejects[0].record == good_features(**changes)


def test_silence_is_valid_audio_features():
    row = parse_audio_features([good_features(tempo=0, key=-1)]).rows[0]
    assert (row["tempo"], row["key"]) == (0.0, -1)


def test_bad_tracks_and_artists_are_rejected_with_reason():
    catalogue = FakeCatalogue.generated()
    track = next(iter(catalogue.tracks.values()))
    broken_tracks = [
        {**track, "id": None},
        {**track, "artists": []},
        {**track, "artists": [{"name": "No Id"}]},
        {**track, "duration_ms": "long"},
        {**track, "popularity": 101},
        {**track, "explicit": "yes"},
        None,
    ]
    result = parse_tracks(broken_tracks)
    assert result.rows == []
    assert [r.reason for r in result.rejects] == [
        "track id is missing",
        "track has no artists",
        "artist id is missing",
        "duration_ms is not a number: 'long'",
        "popularity is not in 0..100: 101",
        "explicit is not a boolean: 'yes'",
        "not a JSON object: NoneType",
    ]
    artist = next(iter(catalogue.artists.values()))
    rejects = parse_artists([{**artist, "name": " "}, {**artist, "genres": "rock"}]).rejects
    assert [r.reason for r in rejects] == ["artist name is missing", "genres is not a list of names: 'rock'"]
