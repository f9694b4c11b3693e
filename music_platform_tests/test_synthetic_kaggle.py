"""The synthetic Kaggle Spotify Tracks CSV: the real header, ranges and quirks."""

from __future__ import annotations

import csv
import re

import pandas as pd
import pytest

from music_platform.sources.synthetic import KAGGLE_HEADER, synthetic_kaggle_csv
from music_platform.sources.synthetic.world import get_world
from music_platform_tests.conftest import require_shared_data

USERS = 300
SEED = 42


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return synthetic_kaggle_csv(tmp_path_factory.mktemp("kaggle") / "dataset.csv", n_users=USERS, seed=SEED)


@pytest.fixture(scope="module")
def frame(csv_path) -> pd.DataFrame:
    return pd.read_csv(csv_path)


def test_header_is_identical_to_the_real_file(csv_path):
    real = require_shared_data("spotify-tracks-sample") / "spotify_tracks_sample.csv"
    with real.open(encoding="utf-8") as f:
        real_header = f.readline().rstrip("\n")
    with csv_path.open(encoding="utf-8") as f:
        ours = f.readline().rstrip("\n")
    assert ours == real_header == ",".join(KAGGLE_HEADER)


def test_rows_parse_with_quoting_like_the_real_file(csv_path, frame):
    text = csv_path.read_text(encoding="utf-8")
    assert re.search(r',"[^"\n]*,[^"\n]*",', text)  # quoted fields holding commas
    assert '""' in text  # doubled quotes inside quoted fields
    assert any(ord(ch) > 127 for ch in text)  # non-ASCII names
    with csv_path.open(encoding="utf-8", newline="") as f:
        assert {len(row) for row in csv.reader(f)} == {len(KAGGLE_HEADER)}
    assert frame["Unnamed: 0"].tolist() == list(range(len(frame)))
    assert frame["explicit"].dtype == bool
    # Rows are grouped by genre, as in the real file.
    genres = frame["track_genre"].tolist()
    assert genres == sorted(genres)


def test_audio_features_are_in_their_real_ranges(frame):
    for column in ("danceability", "energy", "speechiness", "acousticness", "instrumentalness", "liveness", "valence"):
        assert frame[column].between(0, 1).all(), column
    silent = frame["tempo"] == 0  # the real file has a few tempo-0 rows (with time_signature 0)
    assert frame.loc[~silent, "tempo"].between(60, 200).all()
    assert (frame.loc[silent, "time_signature"] == 0).all() and silent.mean() < 0.01
    assert frame.loc[~silent, "time_signature"].isin([3, 4, 5]).all()
    assert frame["loudness"].between(-30, 0).all()
    assert frame["key"].between(-1, 11).all() and frame["mode"].isin([0, 1]).all()
    assert frame["popularity"].between(0, 100).all()
    assert 0.05 < (frame["popularity"] == 0).mean() < 0.25
    assert frame["duration_ms"].between(60_000, 1_201_000).all()
    assert (frame["instrumentalness"] == 0).any()  # exact zeros, as Spotify sends them


def test_genres_have_distinct_sound_profiles(frame):
    means = frame.groupby("track_genre")[["acousticness", "energy", "speechiness", "danceability"]].mean()
    assert len(means) >= 6
    assert means.loc["classical", "acousticness"] > 0.8 > means.loc["metal", "acousticness"]
    assert means.loc["metal", "energy"] > 0.8 > means.loc["jazz", "energy"]
    assert means.loc["hip-hop", "speechiness"] > 2 * means.loc["classical", "speechiness"]
    assert means.loc["latin", "danceability"] > means.loc["classical", "danceability"] + 0.3


def test_same_track_id_under_two_genres_with_identical_features(frame):
    duplicated = frame[frame["track_id"].duplicated(keep=False)]
    assert duplicated["track_id"].nunique() >= 50
    distinct = duplicated.drop(columns="Unnamed: 0").groupby("track_id").nunique()
    assert (distinct["track_genre"] == duplicated.groupby("track_id").size()).all()  # one row per genre
    assert (distinct.drop(columns="track_genre") == 1).all().all()  # every other field agrees


def test_only_part_of_the_catalogue_is_in_the_csv_and_names_need_normalising(frame):
    world = get_world(SEED, USERS)
    cat = world.catalogue
    by_id = dict(zip(cat.track_spotify_id, range(cat.n_tracks), strict=True))
    present = {by_id[t] for t in frame["track_id"] if t in by_id}
    assert 0.8 < len(present) / cat.n_tracks < 0.9

    # Joined artists ("A;B") name catalogue artists.
    joined = frame.loc[frame["artists"].str.contains(";"), "artists"]
    assert len(joined) > 0.05 * len(frame)
    artists = set(cat.artist_names)
    assert all(part in artists for value in joined for part in value.split(";"))

    def normalise(title: str) -> str:
        title = re.sub(r" \(feat\. [^)]*\)$", "", title)
        title = re.sub(r" - Remastered \d{4}$", "", title)
        return title.casefold()

    pairs = list(zip((a.split(";")[0].casefold() for a in frame["artists"]), frame["track_name"], strict=True))
    exact_keys = {(a, t.casefold()) for a, t in pairs}
    normalised_keys = {(a, normalise(t)) for a, t in pairs}
    exact = normalised = 0
    for track in present:
        artist = cat.artist_names[cat.track_artist[track]].casefold()
        lastfm_name = cat.track_lastfm_name[track]
        exact += (artist, lastfm_name.casefold()) in exact_keys
        normalised += (artist, normalise(lastfm_name)) in normalised_keys
    assert exact / len(present) < 0.97  # naive matching misses tracks...
    assert normalised / len(present) > 0.99  # ...that case/feat./remaster normalisation finds


def test_reissues_repeat_an_artist_and_title_under_another_id(frame):
    key = frame.drop_duplicates("track_id")[["artists", "track_name"]]
    assert key.duplicated().sum() > 0


def test_the_project_loader_takes_every_row(csv_path, frame):
    from music_platform.sources.kaggle.loader import load_kaggle_files

    result = load_kaggle_files([csv_path], source="synthetic")
    assert result.rejected_count == 0 and result.conflicting_duplicates == 0
    assert result.input_rows == len(frame)
    assert result.loaded == frame["track_id"].nunique() == len(result.tracks)
    assert result.merged == len(frame) - frame["track_id"].nunique()
    assert set(result.tracks["source"]) == {"synthetic"}
