"""Cross-source track resolution in dbt, on real tricky names.

Two layers are tested by running the project's own dbt SQL:

- the name key itself has its own tests (test_name_key.py: the conformance corpus, whose
  "matching" entries are the spellings track resolution must bring together, on every warehouse);
- the resolution models (``int_tracks_kaggle_matched`` -> ``int_tracks_resolved`` ->
  ``dim_tracks``/``dim_artists``), built by ``dbt build`` on a tiny warehouse holding real
  names from Last.fm, the Kaggle file and Spotify, where every match method, every source
  column and both conflict flags are exercised, and the checks' measurements read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.quality.track_resolution import measure_match_rate, measure_source_conflicts
from music_platform.sources.kaggle.loader import load_kaggle_files
from music_platform.sources.lastfm.parsing import to_raw_frame
from music_platform.sources.schemas import (
    LASTFM_ARTIST_TAGS,
    LASTFM_CHART_TOP_TRACKS,
    LASTFM_SCROBBLES,
    LASTFM_TAG_TOP_TRACKS,
    LASTFM_USERS,
    SPOTIFY_ARTISTS,
    SPOTIFY_AUDIO_FEATURES,
    SPOTIFY_TRACKS,
)
from music_platform.sources.spotify.parsing import parse_artists, parse_audio_features, parse_tracks
from music_platform.transformation.project import DBT_PROJECT_DIR, profiles_dir
from music_platform.warehouse import Warehouse, connect_warehouse
from music_platform_tests.fakes.spotify_server import artist_object, audio_features_object, fake_id, track_object

pytest_plugins = ["music_platform_tests.pg_utils"]

DBT = str(Path(sys.executable).parent / "dbt")

# name as one source spells it -> the key it must normalise to


def run_dbt(args: list[str], *, settings: Settings, work_dir: Path) -> subprocess.CompletedProcess:
    """dbt with the project's profiles, writing its target/ and logs/ under ``work_dir``."""
    env = dict(os.environ)
    if settings.target == "duckdb":
        settings.resolved_duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        DBT,
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(profiles_dir(settings)),
        "--target",
        settings.target,
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]
    result = subprocess.run(command, cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"dbt {' '.join(args[:1])} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    return result


def _duckdb_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})


def _postgres_settings(tmp_path: Path, url: str) -> Settings:
    return Settings.from_env(
        {
            "MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data"),
            "MUSIC_PLATFORM_TARGET": "postgres",
            "MUSIC_PLATFORM_POSTGRES_URL": url,
        }
    )


# -- the resolution models on a tiny warehouse ---------------------------------------------------

KAGGLE_HEADER = (
    ",track_id,artists,album_name,track_name,popularity,duration_ms,explicit,danceability,energy,key,loudness,"
    "mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,time_signature,track_genre"
)
# Real tracks as the Kaggle file spells them (ids are Spotify-shaped, derived from the title).
KAGGLE_ROWS = [
    # artists, track, popularity, duration_ms, genre
    ("Beyonce", "Halo", 80, 261_640, "pop"),
    ("Beatles", "Let It Be - Remastered 2009", 78, 243_026, "rock"),
    ("Calvin Harris;Rihanna", "This Is What You Came For", 82, 222_160, "dance"),
    ("Sigur Ros", "Hoppipolla", 60, 268_000, "ambient"),
    ("The Verve", "Bitter Sweet Symphony", 77, 357_266, "rock"),
    ("Beyoncé;JAY-Z", "Crazy In Love (feat. Jay-Z)", 79, 236_133, "pop"),
    ("Guns N' Roses", "Sweet Child O' Mine", 85, 356_066, "rock"),
    ("Queen", "Don’t Stop Me Now - Remastered 2011", 83, 209_413, "rock"),
    ("The Beatles Revival Band", "Yesterday", 5, 125_000, "rock"),
    ("Kaggle Only Artist", "Not Heard Anywhere", 10, 200_000, "jazz"),
]


def kaggle_id(track: str) -> str:
    return fake_id("kaggle:" + track)


def _kaggle_csv(path: Path) -> Path:
    lines = [KAGGLE_HEADER]
    for i, (artists, track, popularity, duration, genre) in enumerate(KAGGLE_ROWS):
        quoted = '"' + track.replace('"', '""') + '"'
        lines.append(
            f'{i},{kaggle_id(track)},"{artists}",Album {i},{quoted},{popularity},{duration},False,'
            f"0.5,0.6,5,-6.0,1,0.05,0.1,0.0,0.1,0.4,120.0,4,{genre}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Last.fm's spellings: (artist, artist mbid, track, track mbid)
BEYONCE_MBID = "859d0860-d480-4efd-970c-c05d5f1776b8"
VERVE_TRACK_MBID = "2e0a4f40-7b0e-4a2e-8f0e-9b3c0d6b1a11"
LASTFM_SCROBBLE_ROWS = [
    ("Beyoncé", BEYONCE_MBID, "Halo", None),
    ("Beyoncé Knowles", BEYONCE_MBID, "Crazy in Love", None),  # alias: same artist MBID
    ("The Beatles", None, "Let It Be", None),
    ("Calvin Harris", None, "This Is What You Came For (feat. Rihanna)", None),
    ("Sigur Rós", None, "Hoppípolla", None),
    ("The Verve", None, "Bitter Sweet Symphony", VERVE_TRACK_MBID),
    ("The Verve", None, "Bittersweet Symphony", VERVE_TRACK_MBID),  # misspelt, same recording MBID
    ("Guns N' Roses", None, "Sweet Child O' Mine", None),
    ("Queen", None, "Don't Stop Me Now", None),
    ("Beatles", None, "Yesterday", None),  # must NOT match the revival band
    ("Daft Punk", None, "One More Time", None),  # not in Kaggle; Spotify search found it
]


def _scrobbles() -> pd.DataFrame:
    rows = []
    for i, (artist, artist_mbid, track, track_mbid) in enumerate(LASTFM_SCROBBLE_ROWS):
        played = datetime(2025, 3, 1, 12, i)
        rows.append(
            {
                "user_name": "listener01",
                "played_at_uts": int(pd.Timestamp(played).timestamp()),
                "played_at": played,
                "scrobble_date": played.date(),
                "track_name": track,
                "track_mbid": track_mbid,
                "artist_name": artist,
                "artist_mbid": artist_mbid,
                "album_name": None,
                "album_mbid": None,
                "track_url": None,
            }
        )
    return to_raw_frame(rows, LASTFM_SCROBBLES, source="lastfm")


DAFT_PUNK_ID = fake_id("artist:Daft Punk")
BEYONCE_SPOTIFY_ID = fake_id("artist:Beyoncé")
SPOTIFY_FEATURES = {
    "danceability": 0.91,
    "energy": 0.77,
    "speechiness": 0.04,
    "acousticness": 0.01,
    "instrumentalness": 0.0,
    "liveness": 0.3,
    "valence": 0.6,
    "tempo": 123.0,
    "loudness": -5.5,
    "key": 2,
    "mode": 1,
    "time_signature": 4,
}


def _spotify_frames() -> dict[str, pd.DataFrame]:
    halo = track_object(
        kaggle_id("Halo"),
        "Halo",
        [(BEYONCE_SPOTIFY_ID, "Beyoncé")],
        album_id=fake_id("album:iamsasha"),
        album_name="I AM...SASHA FIERCE",
        duration_ms=261_640,
        popularity=88,
    )
    # Spotify's duration for this id differs from Kaggle's by 30 s: a duration conflict.
    hoppipolla = track_object(
        kaggle_id("Hoppipolla"),
        "Hoppípolla",
        [(fake_id("artist:Sigur Rós"), "Sigur Rós")],
        album_id=fake_id("album:takk"),
        album_name="Takk...",
        duration_ms=298_000,
        popularity=61,
    )
    # Spotify credits another artist than Kaggle and Last.fm for this id: an artist-name conflict.
    sweet_child = track_object(
        kaggle_id("Sweet Child O' Mine"),
        "Sweet Child O' Mine",
        [(fake_id("artist:GNR"), "GN'R Tribute")],
        album_id=fake_id("album:afd"),
        album_name="Appetite for Destruction",
        duration_ms=356_066,
        popularity=84,
    )
    # Found by search: Last.fm's "One More Time" is not in the Kaggle file.
    one_more_time = track_object(
        fake_id("spotify:One More Time"),
        "One More Time - Radio Edit",
        [(DAFT_PUNK_ID, "Daft Punk")],
        album_id=fake_id("album:discovery"),
        album_name="Discovery",
        duration_ms=320_357,
        popularity=81,
    )
    tracks = parse_tracks([halo, hoppipolla, sweet_child, one_more_time])
    artists = parse_artists(
        [
            artist_object(
                BEYONCE_SPOTIFY_ID, "Beyoncé", genres=["dance pop", "pop", "r&b"], popularity=86, followers=37_000_000
            ),
            artist_object(
                DAFT_PUNK_ID, "Daft Punk", genres=["filter house", "electro"], popularity=80, followers=9_000_000
            ),
        ]
    )
    features = parse_audio_features([audio_features_object(kaggle_id("Halo"), 261_640, SPOTIFY_FEATURES)])
    assert not (tracks.rejects or artists.rejects or features.rejects)
    return {
        SPOTIFY_TRACKS.name: tracks.frame(source="spotify"),
        SPOTIFY_ARTISTS.name: artists.frame(source="spotify"),
        SPOTIFY_AUDIO_FEATURES.name: features.frame(source="spotify"),
    }


def load_tricky_raw_tables(warehouse: Warehouse, tmp_path: Path) -> None:
    kaggle = load_kaggle_files([_kaggle_csv(tmp_path / "kaggle.csv")], source="kaggle")
    assert kaggle.rejected_count == 0
    warehouse.replace_table("raw", "kaggle_tracks", kaggle.tracks)
    warehouse.replace_table("raw", LASTFM_SCROBBLES.name, _scrobbles())
    tags = to_raw_frame(
        [{"artist_name": "Daft Punk", "artist_mbid": None, "tag_name": "electronic", "tag_count": 100, "tag_rank": 1}],
        LASTFM_ARTIST_TAGS,
        source="lastfm",
    )
    warehouse.replace_table("raw", LASTFM_ARTIST_TAGS.name, tags)
    # The genre tags asked for make "electronic" a known genre (the Kaggle rows bring the others).
    tag_top = to_raw_frame(
        [
            {
                "tag_name": "electronic",
                "track_rank": 1,
                "track_name": "One More Time",
                "track_mbid": None,
                "artist_name": "Daft Punk",
                "artist_mbid": None,
                "duration_s": None,
                "track_url": None,
            }
        ],
        LASTFM_TAG_TOP_TRACKS,
        source="lastfm",
    )
    warehouse.replace_table("raw", LASTFM_TAG_TOP_TRACKS.name, tag_top)
    for table in (LASTFM_USERS, LASTFM_CHART_TOP_TRACKS):
        warehouse.replace_table("raw", table.name, to_raw_frame([], table, source="lastfm"))
    for name, frame in _spotify_frames().items():
        warehouse.replace_table("raw", name, frame)


def build_resolution_models(settings: Settings, work_dir: Path) -> Warehouse:
    warehouse = connect_warehouse(settings)
    load_tricky_raw_tables(warehouse, work_dir)
    run_dbt(["build"], settings=settings, work_dir=work_dir)
    return warehouse


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("resolution")
    warehouse = build_resolution_models(_duckdb_settings(work_dir), work_dir)
    tracks = warehouse.query_df("select * from marts.dim_tracks")
    return warehouse, tracks.set_index(["artist_name", "track_name"], drop=False)


def _row(tracks: pd.DataFrame, artist: str, track: str) -> pd.Series:
    return tracks.loc[(artist, track)]


@pytest.mark.parametrize(
    ("artist", "track", "kaggle_track", "method"),
    [
        ("Beyoncé", "Halo", "Halo", "name"),  # accents
        ("The Beatles", "Let It Be", "Let It Be - Remastered 2009", "name"),  # "The", remaster suffix
        ("Calvin Harris", "This Is What You Came For (feat. Rihanna)", "This Is What You Came For", "name"),
        ("Sigur Rós", "Hoppípolla", "Hoppipolla", "name"),
        ("Queen", "Don't Stop Me Now", "Don’t Stop Me Now - Remastered 2011", "name"),
        ("Guns N' Roses", "Sweet Child O' Mine", "Sweet Child O' Mine", "name"),
        ("The Verve", "Bitter Sweet Symphony", "Bitter Sweet Symphony", "name"),
        ("The Verve", "Bittersweet Symphony", "Bitter Sweet Symphony", "track_mbid"),  # same recording MBID
        ("Beyoncé Knowles", "Crazy in Love", "Crazy In Love (feat. Jay-Z)", "artist_mbid"),  # alias by artist MBID
    ],
)
def test_lastfm_tracks_resolve_to_the_kaggle_id(resolved, artist, track, kaggle_track, method):
    _, tracks = resolved
    row = _row(tracks, artist, track)
    assert row["spotify_track_id"] == kaggle_id(kaggle_track)
    assert row["match_method"] == method


def test_a_similar_name_by_another_artist_is_not_a_match(resolved):
    _, tracks = resolved
    row = _row(tracks, "Beatles", "Yesterday")
    assert pd.isna(row["spotify_track_id"]) and pd.isna(row["audio_features_source"])


def test_a_spotify_search_result_resolves_a_track_the_kaggle_file_lacks(resolved):
    _, tracks = resolved
    row = _row(tracks, "Daft Punk", "One More Time")
    assert row["spotify_track_id"] == fake_id("spotify:One More Time")
    assert row["match_method"] == "spotify_name"
    assert (row["popularity"], row["popularity_source"]) == (81, "spotify")
    assert (row["duration_ms"], row["duration_source"]) == (320_357, "spotify")
    # Spotify has no audio features for it and the Kaggle file does not know it: none, not invented.
    assert pd.isna(row["danceability"]) and pd.isna(row["audio_features_source"])
    # Its Spotify genres are not in our vocabulary: the artist's Last.fm tag decides.
    assert (row["genre"], row["genre_source"]) == ("electronic", "lastfm_tags")


def test_each_value_group_comes_from_spotify_where_available_else_kaggle(resolved):
    _, tracks = resolved
    halo = _row(tracks, "Beyoncé", "Halo")
    assert halo["audio_features_source"] == "spotify"
    assert (halo["danceability"], halo["tempo"]) == (SPOTIFY_FEATURES["danceability"], SPOTIFY_FEATURES["tempo"])
    assert (halo["popularity"], halo["popularity_source"]) == (88, "spotify")
    # Spotify's genres "dance pop;pop;r&b": the first one in the vocabulary is "pop".
    assert (halo["genre"], halo["genre_source"]) == ("pop", "spotify")

    let_it_be = _row(tracks, "The Beatles", "Let It Be")
    assert let_it_be["audio_features_source"] == "kaggle" and let_it_be["danceability"] == 0.5
    assert (let_it_be["popularity"], let_it_be["popularity_source"]) == (78, "kaggle")
    assert (let_it_be["genre"], let_it_be["genre_source"]) == ("rock", "kaggle")
    assert (let_it_be["duration_ms"], let_it_be["duration_source"]) == (243_026, "kaggle")


def test_artists_carry_spotify_values_and_the_catalogue_is_included(resolved):
    warehouse, _ = resolved
    artists = warehouse.query_df("select * from marts.dim_artists").set_index("artist_name")
    beyonce = artists.loc["Beyoncé"]
    assert beyonce["spotify_artist_id"] == BEYONCE_SPOTIFY_ID
    assert (beyonce["popularity"], beyonce["popularity_source"], beyonce["followers"]) == (86, "spotify", 37_000_000)
    assert (beyonce["genre"], beyonce["genre_source"]) == ("pop", "spotify")
    assert beyonce["artist_mbid"] == BEYONCE_MBID and beyonce["name_source"] == "lastfm"
    # An artist only the Kaggle catalogue knows is an artist of the marts too, with its Kaggle genre.
    only_kaggle = artists.loc["Kaggle Only Artist"]
    assert (only_kaggle["name_source"], only_kaggle["genre"], only_kaggle["genre_source"]) == (
        "kaggle",
        "jazz",
        "kaggle",
    )
    assert only_kaggle["listen_count"] == 0


def test_source_conflicts_are_flagged_and_counted(resolved):
    warehouse, _ = resolved
    flags = warehouse.query_df(
        "select artist_name, track_name, duration_conflict, artist_name_conflict from intermediate.int_tracks_resolved "
        "where duration_conflict = 1 or artist_name_conflict = 1 order by artist_name"
    )
    assert [tuple(r) for r in flags.itertuples(index=False)] == [
        ("Beyoncé Knowles", "Crazy in Love", 0, 1),  # matched through the artist MBID: names differ
        ("Guns N' Roses", "Sweet Child O' Mine", 0, 1),  # Spotify credits someone else
        ("Sigur Rós", "Hoppípolla", 1, 0),  # Spotify 298 s, Kaggle 268 s
    ]
    conflicts = measure_source_conflicts(warehouse)
    assert (conflicts.duration_conflicts, conflicts.artist_name_conflicts) == (1, 2)
    assert conflicts.matched == 10 and len(conflicts.examples) == 3


def test_match_rate_counts_methods_and_sources(resolved):
    warehouse, _ = resolved
    rate = measure_match_rate(warehouse)
    assert (rate.tracks, rate.matched) == (11, 10)
    assert rate.rate == pytest.approx(10 / 11)
    assert rate.by_method == {"name": 7, "track_mbid": 1, "artist_mbid": 1, "spotify_name": 1, "none": 1}
    assert rate.audio_features_by_source == {"spotify": 1, "kaggle": 8, "none": 2}


@pytest.mark.slow
@pytest.mark.extended
def test_resolution_models_build_the_same_on_postgres(tmp_path, postgres_url):
    warehouse = build_resolution_models(_postgres_settings(tmp_path, postgres_url), tmp_path)
    tracks = warehouse.query_df(
        "select artist_name, track_name, spotify_track_id, match_method, audio_features_source, genre_source "
        "from marts.dim_tracks"
    )
    pairs = zip(tracks["artist_name"], tracks["track_name"], strict=True)
    methods = dict(zip(pairs, tracks["match_method"], strict=True))
    assert methods[("The Verve", "Bittersweet Symphony")] == "track_mbid"
    assert methods[("Beyoncé Knowles", "Crazy in Love")] == "artist_mbid"
    assert methods[("Daft Punk", "One More Time")] == "spotify_name"
    assert measure_source_conflicts(warehouse).conflicting == 3
    assert measure_match_rate(warehouse).matched == 10


@pytest.mark.slow
def test_real_recorded_scrobbles_against_the_real_kaggle_sample(tmp_path):
    """A real user.getRecentTracks page (200 scrobbles, 158 distinct tracks) against the real Kaggle
    sample (2,388 rows, ~2 % of the full file): the two tracks the sample holds are found."""

    from music_platform.sources.kaggle.loader import load_kaggle_folder
    from music_platform.sources.lastfm.parsing import parse_recent_tracks
    from music_platform.sources.spotify.ingest import empty_frame
    from music_platform_tests.conftest import require_shared_data

    recorded = require_shared_data("api-fixtures/lastfm-json-recorded/user.getRecentTracks.limit200.page1.json")
    sample = require_shared_data("spotify-tracks-sample")
    settings = _duckdb_settings(tmp_path)
    warehouse = connect_warehouse(settings)
    payload = json.loads(recorded.read_text(encoding="utf-8"))
    scrobbles = parse_recent_tracks(payload, payload["recenttracks"]["@attr"]["user"])
    warehouse.replace_table("raw", LASTFM_SCROBBLES.name, scrobbles.frame(source="lastfm"))
    warehouse.replace_table("raw", "kaggle_tracks", load_kaggle_folder(sample).tracks)
    for table in (LASTFM_USERS, LASTFM_ARTIST_TAGS, LASTFM_TAG_TOP_TRACKS, LASTFM_CHART_TOP_TRACKS):
        warehouse.replace_table("raw", table.name, to_raw_frame([], table, source="lastfm"))
    for table in (SPOTIFY_TRACKS, SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES):
        warehouse.replace_table("raw", table.name, empty_frame(table))
    run_dbt(["build"], settings=settings, work_dir=tmp_path)

    rate = measure_match_rate(warehouse)
    assert (rate.tracks, rate.matched) == (158, 2)
    matched = warehouse.query_df(
        "select artist_name, track_name, audio_features_source from marts.dim_tracks where spotify_track_id is not null"
    )
    assert sorted(map(tuple, matched.to_numpy().tolist())) == [
        ("Mitski", "Washing Machine Heart", "kaggle"),
        ("Rick James", "Give It To Me Baby", "kaggle"),
    ]
