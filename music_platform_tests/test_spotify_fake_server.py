"""The fake Spotify server is faithful: recorded shapes, 403s per app mode, limits, auth, start by hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from music_platform_tests.conftest import PROJECT_ROOT, require_shared_data
from music_platform_tests.fakes.spotify_server import (
    MR_BRIGHTSIDE_ID,
    THE_KILLERS_ID,
    FakeCatalogue,
    FakeSpotifyServer,
)

FIXTURES = "api-fixtures/spotify-json-spotify-web-api-java"


def token(fake: FakeSpotifyServer) -> dict[str, str]:
    answer = requests.post(
        fake.accounts_root + "/api/token",
        data={"grant_type": "client_credentials"},
        auth=(fake.client_id, fake.client_secret),
        timeout=5,
    )
    assert answer.status_code == 200
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


def get(fake: FakeSpotifyServer, path: str, headers: dict[str, str], **params) -> requests.Response:
    return requests.get(fake.api_root + path, params=params, headers=headers, timeout=5)


@pytest.fixture
def fixture_json():
    folder = require_shared_data(FIXTURES)
    return lambda name: json.loads((folder / name).read_text(encoding="utf-8"))


# -- shapes ------------------------------------------------------------------------------------


def test_generated_objects_have_every_key_of_the_recorded_ones(fixture_json):
    catalogue = FakeCatalogue.generated()
    ours_track = catalogue.tracks[MR_BRIGHTSIDE_ID]
    recorded_track = fixture_json("GetSeveralTracksRequest.json")["tracks"][0]
    assert set(recorded_track) <= set(ours_track)
    assert set(recorded_track["album"]) <= set(ours_track["album"])
    assert set(recorded_track["artists"][0]) <= set(ours_track["artists"][0])
    assert set(fixture_json("GetArtistRequest.json")) <= set(catalogue.artists[THE_KILLERS_ID])
    assert set(fixture_json("GetAudioFeaturesForTrackRequest.json")) <= set(catalogue.audio_features[MR_BRIGHTSIDE_ID])
    # Same value types key by key.
    for key, value in recorded_track.items():
        if value is not None and ours_track[key] is not None:
            assert type(ours_track[key]) is type(value), key


def test_token_and_invalid_client_bodies_match_the_recordings(fixture_json):
    with FakeSpotifyServer() as fake:
        good = requests.post(
            fake.accounts_root + "/api/token",
            data={"grant_type": "client_credentials"},
            auth=(fake.client_id, fake.client_secret),
            timeout=5,
        )
        unknown = requests.post(
            fake.accounts_root + "/api/token",
            data={"grant_type": "client_credentials"},
            auth=("someone-else", fake.client_secret),
            timeout=5,
        )
    recorded = fixture_json("ClientCredentials.json")
    assert set(good.json()) == set(recorded)
    assert good.json()["token_type"] == recorded["token_type"] and good.json()["expires_in"] == 3600
    assert (unknown.status_code, unknown.json()) == (400, fixture_json("auth-invalid-client.json"))


def test_fake_can_serve_the_recorded_objects():
    folder = require_shared_data(FIXTURES)
    with FakeSpotifyServer(catalogue=FakeCatalogue.from_fixture_dir(folder)) as fake:
        headers = token(fake)
        answer = get(fake, "/tracks", headers, ids=f"{MR_BRIGHTSIDE_ID},3twNvmDtFQtAd5gMKedhLD,{'0' * 22}")
    assert [t and t["name"] for t in answer.json()["tracks"]] == ["Mr. Brightside", "Somebody Told Me", None]


# -- 403 exactly where Spotify answers it -------------------------------------------------------

ENDPOINTS = {
    "tracks batch": ("/tracks", {"ids": MR_BRIGHTSIDE_ID}),
    "track": (f"/tracks/{MR_BRIGHTSIDE_ID}", {}),
    "artists batch": ("/artists", {"ids": THE_KILLERS_ID}),
    "artist": (f"/artists/{THE_KILLERS_ID}", {}),
    "audio features": ("/audio-features", {"ids": MR_BRIGHTSIDE_ID}),
    "audio features single": (f"/audio-features/{MR_BRIGHTSIDE_ID}", {}),
    "recommendations": ("/recommendations", {"seed_tracks": MR_BRIGHTSIDE_ID}),
    "related artists": (f"/artists/{THE_KILLERS_ID}/related-artists", {}),
    "top tracks": (f"/artists/{THE_KILLERS_ID}/top-tracks", {}),
    "search": ("/search", {"q": "brightside", "type": "track", "limit": 10}),
}
FORBIDDEN = {
    "extended": set(),
    "dev_2024": {"audio features", "audio features single", "recommendations", "related artists"},
    "dev_2026": {
        "audio features",
        "audio features single",
        "recommendations",
        "related artists",
        "tracks batch",
        "artists batch",
        "top tracks",
    },
}


@pytest.mark.parametrize("mode", ["extended", "dev_2024", "dev_2026"])
def test_each_mode_answers_403_where_spotify_does(mode):
    with FakeSpotifyServer(mode) as fake:
        headers = token(fake)
        statuses = {name: get(fake, path, headers, **params) for name, (path, params) in ENDPOINTS.items()}
    assert {name for name, answer in statuses.items() if answer.status_code == 403} == FORBIDDEN[mode]
    assert all(a.status_code == 200 for n, a in statuses.items() if n not in FORBIDDEN[mode])
    for name in FORBIDDEN[mode]:
        body = statuses[name].json()
        # Dec 2024 withdrawals answer without a message; the 2026 ones say "Forbidden".
        expected = {"status": 403} if name in FORBIDDEN["dev_2024"] else {"status": 403, "message": "Forbidden"}
        assert body == {"error": expected}, name


def test_search_limits_per_mode():
    with FakeSpotifyServer("dev_2026") as fake:
        headers = token(fake)
        too_many = get(fake, "/search", headers, q="fake", type="track", limit=11)
        default = get(fake, "/search", headers, q="fake", type="track")
        fake.mode = "extended"
        fifty = get(fake, "/search", headers, q="fake", type="track", limit=50)
    assert (too_many.status_code, too_many.json()) == (400, {"error": {"status": 400, "message": "Invalid limit"}})
    page = default.json()["tracks"]
    assert page["limit"] == 5 and len(page["items"]) == 5 and page["next"] and page["previous"] is None
    assert len(fifty.json()["tracks"]["items"]) == 50


def test_batch_limits_and_bad_ids():
    with FakeSpotifyServer() as fake:
        headers = token(fake)
        ids = list(fake.catalogue.tracks)
        too_many = get(fake, "/tracks", headers, ids=",".join(ids[:51]))
        hundred = get(fake, "/audio-features", headers, ids=",".join(ids[:100]))
        bad = get(fake, "/tracks", headers, ids="nope")
        unknown = get(fake, "/tracks/" + "0" * 22, headers)
    assert too_many.json() == {"error": {"status": 400, "message": "Too many ids requested"}}
    assert len(hundred.json()["audio_features"]) == 100
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "invalid id"
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "non existing id"


def test_auth_errors_and_scripted_failures():
    with FakeSpotifyServer() as fake:
        none = get(fake, "/tracks/" + MR_BRIGHTSIDE_ID, {})
        junk = get(fake, "/tracks/" + MR_BRIGHTSIDE_ID, {"Authorization": "Bearer junk"})
        headers = token(fake)
        fake.rate_limit_next(count=1, retry_after=7)
        limited = get(fake, "/tracks/" + MR_BRIGHTSIDE_ID, headers)
        fake.fail_next(count=1, status=502)
        failed = get(fake, "/tracks/" + MR_BRIGHTSIDE_ID, headers)
        fake.expire_tokens()
        expired = get(fake, "/tracks/" + MR_BRIGHTSIDE_ID, headers)
    assert none.json()["error"] == {"status": 401, "message": "No token provided"}
    assert junk.json()["error"] == {"status": 401, "message": "Invalid access token"}
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["message"] == "API rate limit exceeded"
    assert failed.status_code == 502
    assert expired.json()["error"] == {"status": 401, "message": "The access token expired"}


@pytest.mark.timeout(60)
def test_startable_by_hand():
    command = [sys.executable, "-m", "music_platform_tests.fakes.spotify_server", "--mode", "dev_2026"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        banner = process.stdout.readline()
        exports = dict(process.stdout.readline().removeprefix("export ").strip().split("=", 1) for _ in range(4))
        assert "dev_2026" in banner
        answer = requests.post(
            exports["SPOTIFY_ACCOUNTS_ROOT"] + "/api/token",
            data={"grant_type": "client_credentials"},
            auth=(exports["SPOTIFY_CLIENT_ID"], exports["SPOTIFY_CLIENT_SECRET"]),
            timeout=5,
        )
        assert answer.status_code == 200
        assert exports["SPOTIFY_API_ROOT"].startswith("http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
