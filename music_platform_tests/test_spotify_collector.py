"""``collect spotify`` and the Spotify part of ``check-apis`` against the fake server."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.sources.spotify.check import check_spotify
from music_platform.sources.spotify.collector import collect_spotify
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.fakes.spotify_server import MR_BRIGHTSIDE_ID, FakeSpotifyServer
from music_platform_tests.test_spotify_client import make_client


def settings_for(fake: FakeSpotifyServer | None, tmp_path) -> Settings:
    env = {"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")}
    if fake is not None:
        env.update(fake.env())
    return Settings.from_env(env)


def written_files(settings: Settings) -> list:
    return sorted((settings.external_dir / "spotify").glob("spotify_*.json"))


@pytest.mark.parametrize("mode", ["extended", "dev_2024", "dev_2026"])
def test_collect_writes_timestamped_json_without_secrets(mode, tmp_path):
    with FakeSpotifyServer(mode) as fake:
        settings = settings_for(fake, tmp_path)
        ids = list(fake.catalogue.tracks)[:60]
        out = io.StringIO()
        code = collect_spotify(settings, ",".join([*ids, "0" * 22, "not-an-id"]), client=make_client(fake), out=out)
        files = written_files(settings)
        text = files[0].read_text(encoding="utf-8")
        tokens = list(fake._tokens)

    assert code == 0
    assert len(files) == 1
    document = json.loads(text)
    assert document["requested_track_ids"] == 62
    assert document["rows"]["tracks"] == 60 and len(document["tracks"]) == 60
    assert document["not_found"]["tracks"] == ["0" * 22]
    assert document["invalid_ids"] == ["not-an-id"]
    assert document["rows"]["artists"] == len({a["id"] for t in document["tracks"] for a in t["artists"]})
    unavailable = document["report"]["unavailable_capabilities"]
    if mode == "extended":
        assert document["rows"]["audio_features"] == 60 and unavailable == {}
    else:
        assert document["rows"]["audio_features"] == 0 and "audio_features" in unavailable
        assert "capability unavailable: audio_features" in out.getvalue()
    for secret in [fake.client_secret, *tokens]:
        assert secret not in text and secret not in out.getvalue()


def test_collect_with_default_client_built_from_settings(tmp_path):
    with FakeSpotifyServer() as fake:
        settings = settings_for(fake, tmp_path)
        assert collect_spotify(settings, MR_BRIGHTSIDE_ID, out=io.StringIO()) == 0
        assert json.loads(written_files(settings)[0].read_text())["tracks"][0]["name"] == "Mr. Brightside"


def test_collect_reads_track_ids_from_the_warehouse(tmp_path):
    with FakeSpotifyServer() as fake:
        settings = settings_for(fake, tmp_path)
        ids = list(fake.catalogue.tracks)[:3]
        DuckDBWarehouse(settings.resolved_duckdb_path).replace_table(
            "raw", "kaggle_tracks", pd.DataFrame({"track_id": ids})
        )
        assert collect_spotify(settings, None, client=make_client(fake), out=io.StringIO()) == 0
        document = json.loads(written_files(settings)[0].read_text())
    assert document["track_ids_from"] == "raw.kaggle_tracks"
    assert sorted(t["id"] for t in document["tracks"]) == sorted(ids)


def test_collect_stopped_by_rate_limit_still_writes_and_says_why(tmp_path):
    with FakeSpotifyServer() as fake:
        settings = settings_for(fake, tmp_path)
        fake.rate_limit_next(count=1, retry_after=3600)
        out = io.StringIO()
        code = collect_spotify(settings, MR_BRIGHTSIDE_ID, client=make_client(fake), out=out)
        document = json.loads(written_files(settings)[0].read_text())
    assert code == 1
    assert "3600" in document["report"]["stopped_reason"]
    assert document["report"]["complete"] is False
    assert "stopped early" in out.getvalue()


def test_collect_refuses_without_configuration_or_ids(tmp_path):
    out = io.StringIO()
    assert collect_spotify(settings_for(None, tmp_path), "x", out=out) == 2
    assert "SPOTIFY_CLIENT_ID" in out.getvalue()
    with FakeSpotifyServer() as fake:
        out = io.StringIO()
        assert collect_spotify(settings_for(fake, tmp_path), None, out=out) == 2
        assert "--track-ids" in out.getvalue()


def test_collect_bad_secret_fails_cleanly(tmp_path):
    with FakeSpotifyServer() as fake:
        env = {**fake.env(), "SPOTIFY_CLIENT_SECRET": "definitely-wrong", "MUSIC_PLATFORM_DATA_DIR": str(tmp_path)}
        out = io.StringIO()
        assert collect_spotify(Settings.from_env(env), MR_BRIGHTSIDE_ID, out=out) == 1
    assert "Invalid client secret" in out.getvalue() and "definitely-wrong" not in out.getvalue()


# -- check-apis ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "unavailable"),
    [
        ("extended", set()),
        ("dev_2024", {"audio_features"}),
        ("dev_2026", {"audio_features", "tracks_batch", "artists_batch"}),
    ],
)
def test_check_reports_the_app_capabilities(mode, unavailable, tmp_path):
    with FakeSpotifyServer(mode) as fake:
        check = check_spotify(settings_for(fake, tmp_path), client=make_client(fake, max_single_lookups=1))
    assert check.ok and check.configured
    assert {c for c, ok in check.capabilities.items() if not ok} == unavailable
    assert len(check.warnings) == len(unavailable)
    text = "\n".join(check.lines)
    assert "format track: ok" in text and "format search result: ok" in text
    assert ("format audio features: ok" in text) == (mode == "extended")
    assert fake.client_secret not in text


def test_check_fails_on_bad_credentials_and_skips_when_unconfigured(tmp_path):
    assert check_spotify(settings_for(None, tmp_path)).configured is False
    with FakeSpotifyServer() as fake:
        env = {**fake.env(), "SPOTIFY_CLIENT_SECRET": "nope-nope", "MUSIC_PLATFORM_DATA_DIR": str(tmp_path)}
        check = check_spotify(Settings.from_env(env))
    assert not check.ok
    assert any("Invalid client secret" in line for line in check.lines)
