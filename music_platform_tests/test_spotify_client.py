"""The Spotify client against the local fake in each app mode (extended, dev_2024, dev_2026)."""

from __future__ import annotations

import logging
import time

import pytest

from music_platform.config import ConfigError, Settings
from music_platform.sources.errors import AuthenticationExpiredError, InvalidCredentialsError
from music_platform.sources.http import RateLimiter, RetryPolicy
from music_platform.sources.spotify.client import SpotifyClient, classify_spotify
from music_platform.sources.spotify.parsing import parse_artists, parse_tracks
from music_platform_tests.fakes.spotify_server import (
    MR_BRIGHTSIDE_ID,
    THE_KILLERS_ID,
    FakeSpotifyServer,
    fake_id,
)

FAST_RETRY = RetryPolicy(max_attempts=4, deadline_s=20, initial_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0.0)
UNKNOWN_ID = "0000000000000000000000"


def make_client(fake: FakeSpotifyServer, **overrides) -> SpotifyClient:
    options = {"retry": FAST_RETRY, "rate_limiter": RateLimiter(1000, burst=100)}
    options.update(overrides)
    return SpotifyClient(
        fake.client_id, fake.client_secret, api_root=fake.api_root, accounts_root=fake.accounts_root, **options
    )


@pytest.fixture(params=["extended", "dev_2024", "dev_2026"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def fake(mode):
    with FakeSpotifyServer(mode) as server:
        yield server


def paths(fake: FakeSpotifyServer, prefix: str) -> list:
    return [r for r in fake.api_requests(prefix)]


# -- every mode --------------------------------------------------------------------------------

EXPECTED_CAPABILITIES = {
    "extended": {"tracks_batch": True, "artists_batch": True, "audio_features": True},
    "dev_2024": {"tracks_batch": True, "artists_batch": True, "audio_features": False},
    "dev_2026": {"tracks_batch": False, "artists_batch": False, "audio_features": False},
}


def test_tracks_in_batches_of_50_with_unknown_ids_as_none(fake, mode):
    ids = list(fake.catalogue.tracks)[:120] + [UNKNOWN_ID]
    with make_client(fake) as client:
        tracks = client.get_tracks(ids)

    assert set(tracks) == set(ids)
    assert tracks[UNKNOWN_ID] is None
    assert all(tracks[i]["id"] == i for i in ids[:120])
    assert client.report.not_found == {"tracks": [UNKNOWN_ID]}
    batch_calls = [r for r in fake.api_requests("/v1/tracks") if r.path == "/v1/tracks"]
    if mode == "dev_2026":
        # The batch endpoint answers 403 once; the client then asks id by id, and never retries the batch.
        assert [r.status for r in batch_calls] == [403]
        assert client.report.single_lookups == 121
        assert "tracks_batch" in client.report.unavailable
    else:
        assert [len(r.params["ids"].split(",")) for r in batch_calls] == [50, 50, 21]
        assert client.report.unavailable == {}
    assert client.report.complete


def test_audio_features_in_batches_of_100_or_capability_unavailable(fake, mode):
    ids = list(fake.catalogue.tracks)[:150]
    with make_client(fake) as client:
        first = client.get_audio_features(ids)
        again = client.get_audio_features(ids[:10])
    calls = fake.api_requests("/v1/audio-features")
    if mode == "extended":
        assert len(first) == 150 and all(first[i]["id"] == i for i in ids)
        assert [len(r.params["ids"].split(",")) for r in calls] == [100, 50, 10]
    else:
        # Recorded, never raised, never retried: one 403 in total, later calls do not ask.
        assert first == {} and again == {}
        assert [r.status for r in calls] == [403]
        assert "HTTP 403" in client.report.unavailable["audio_features"]
        assert client.report.skipped == {"audio_features": 160}
        assert not client.report.complete


def test_artists_in_batches_and_fields_withdrawn_in_2026(fake, mode):
    ids = list(fake.catalogue.artists)
    with make_client(fake) as client:
        artists = client.get_artists(ids + [UNKNOWN_ID])
    assert len(artists) == len(ids) + 1 and artists[UNKNOWN_ID] is None
    rows = parse_artists([a for a in artists.values() if a]).rows
    assert len(rows) == len(ids)
    killers = next(r for r in rows if r["artist_id"] == THE_KILLERS_ID)
    if mode == "dev_2026":
        assert (killers["genres"], killers["popularity"], killers["followers"]) == (None, None, None)
    else:
        assert killers["genres"] == "modern rock;rock" and killers["followers"] > 0


def test_probe_reports_the_capabilities_of_the_app(fake, mode):
    with make_client(fake) as client:
        capabilities = client.probe_capabilities(MR_BRIGHTSIDE_ID, THE_KILLERS_ID)
    expected = {"search": True, "tracks_single": True, "artists_single": True, **EXPECTED_CAPABILITIES[mode]}
    assert capabilities == expected
    assert set(client.report.unavailable) == {c for c, ok in expected.items() if not ok}


def test_search_resolves_artist_and_title(fake, mode):
    with make_client(fake) as client:
        found = client.search_track("the killers", "MR. BRIGHTSIDE")
        resolved = client.resolve_track_ids([("Fake Artist 01", "Fake Song 001"), ("Nobody", "Nothing at all")])
        page = client.search("fake song", limit=10)
    assert found["id"] == MR_BRIGHTSIDE_ID
    assert resolved == {("Fake Artist 01", "Fake Song 001"): fake_id("track-1"), ("Nobody", "Nothing at all"): None}
    assert len(page["tracks"]["items"]) == 10
    assert all(int(r.params["limit"]) <= 10 for r in fake.api_requests("/v1/search"))


def test_tracks_parse_in_every_mode(fake, mode):
    with make_client(fake) as client:
        tracks = client.get_tracks([MR_BRIGHTSIDE_ID])
    result = parse_tracks(tracks.values())
    assert result.rejects == []
    row = result.rows[0]
    assert (row["track_name"], row["primary_artist_name"], row["duration_ms"]) == (
        "Mr. Brightside",
        "The Killers",
        222200,
    )
    assert row["popularity"] == (None if mode == "dev_2026" else 73)


# -- tokens ------------------------------------------------------------------------------------


def test_token_is_cached_across_requests():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        client.get_tracks(list(fake.catalogue.tracks)[:120])
        client.get_artists([THE_KILLERS_ID])
        assert fake.token_requests == 1
        assert client.token_fetches == 1


def test_token_renewed_when_less_than_60_s_remain():
    # A 30 s token is always inside the 60 s margin, so every request starts with a new one.
    with FakeSpotifyServer(token_ttl_s=30) as fake, make_client(fake) as client:
        client.get_tracks([MR_BRIGHTSIDE_ID])
        client.get_artists([THE_KILLERS_ID])
        assert fake.token_requests == 2
        assert all(r.status == 200 for r in fake.api_requests())


def test_expired_token_refreshed_once_and_request_retried():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        client.get_tracks([MR_BRIGHTSIDE_ID])
        fake.expire_tokens()
        tracks = client.get_tracks([MR_BRIGHTSIDE_ID])
        assert tracks[MR_BRIGHTSIDE_ID]["name"] == "Mr. Brightside"
        assert [r.status for r in fake.api_requests()] == [200, 401, 200]
        assert fake.token_requests == 2


def test_a_401_after_the_refresh_is_not_retried_again():
    with FakeSpotifyServer(token_ttl_s=0) as fake, make_client(fake) as client:
        with pytest.raises(AuthenticationExpiredError):
            client.get_tracks([MR_BRIGHTSIDE_ID])
        assert [r.status for r in fake.api_requests()] == [401, 401]


def test_bad_secret_is_fatal_and_never_printed(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeSpotifyServer() as fake:
        client = SpotifyClient(
            fake.client_id,
            "wrong-secret-value",
            api_root=fake.api_root,
            accounts_root=fake.accounts_root,
            retry=FAST_RETRY,
            rate_limiter=RateLimiter(1000, 100),
        )
        with pytest.raises(InvalidCredentialsError) as excinfo:
            client.get_tracks([MR_BRIGHTSIDE_ID])
    message = str(excinfo.value)
    assert "Invalid client secret" in message and "SPOTIFY_CLIENT_SECRET" in message
    assert "wrong-secret-value" not in message
    assert "wrong-secret-value" not in repr(client) and "wrong-secret-value" not in caplog.text
    assert client.report.stopped_reason == message
    assert fake.token_requests == 0  # the fake counts issued tokens only
    assert [r.status for r in fake.requests] == [400]  # not retried


def test_missing_credentials_are_a_config_error():
    with pytest.raises(ConfigError, match="SPOTIFY_CLIENT_ID"):
        SpotifyClient.from_settings(Settings.from_env({}))


# -- rate limits and failures ------------------------------------------------------------------


def test_429_within_the_cap_waits_for_retry_after():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        fake.rate_limit_next(count=1, retry_after=0.4)
        started = time.monotonic()
        tracks = client.get_tracks([MR_BRIGHTSIDE_ID])
        waited = time.monotonic() - started
        assert tracks[MR_BRIGHTSIDE_ID] is not None
        assert waited >= 0.4
        assert [r.status for r in fake.api_requests()] == [429, 200]
        assert client.report.stopped_reason is None


def test_429_beyond_the_cap_stops_asking_and_records_why(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeSpotifyServer() as fake, make_client(fake, retry_after_cap_s=60) as client:
        fake.rate_limit_next(count=1, retry_after=3600)
        started = time.monotonic()
        tracks = client.get_tracks(list(fake.catalogue.tracks)[:120])
        features = client.get_audio_features([MR_BRIGHTSIDE_ID])
        assert time.monotonic() - started < 5  # did not wait an hour
        assert tracks == {} and features == {}
        reason = client.report.stopped_reason
        assert "3600" in reason and "60 s cap" in reason
        assert client.report.skipped == {"tracks": 120, "audio_features": 1}
        assert len(fake.api_requests()) == 1  # nothing asked after the 429
        assert not client.report.complete
        token = fake._tokens and next(iter(fake._tokens))
        assert token not in caplog.text and fake.client_secret not in caplog.text


def test_retry_after_cap_is_configurable():
    with FakeSpotifyServer() as fake, make_client(fake, retry_after_cap_s=0.2) as client:
        fake.rate_limit_next(count=1, retry_after=1)
        assert client.get_tracks([MR_BRIGHTSIDE_ID]) == {}
        assert "0.2 s cap" in client.report.stopped_reason


def test_partial_results_are_kept_when_the_client_stops():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        ids = list(fake.catalogue.tracks)[:120]
        client.get_tracks(ids[:50])  # first batch answered
        fake.rate_limit_next(count=1, retry_after=999)
        assert client.get_tracks(ids[50:]) == {}
        assert client.report.skipped == {"tracks": 70}


def test_server_errors_are_retried():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        fake.fail_next(count=2, status=503)
        assert client.get_tracks([MR_BRIGHTSIDE_ID])[MR_BRIGHTSIDE_ID] is not None
        assert [r.status for r in fake.api_requests()] == [503, 503, 200]


def test_server_errors_past_the_retry_budget_stop_the_client():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        fake.fail_next(count=10, status=502)
        assert client.get_tracks([MR_BRIGHTSIDE_ID]) == {}
        assert "HTTP 502" in client.report.stopped_reason
        assert len(fake.api_requests()) == FAST_RETRY.max_attempts


def test_invalid_ids_are_never_sent():
    with FakeSpotifyServer() as fake, make_client(fake) as client:
        tracks = client.get_tracks([MR_BRIGHTSIDE_ID, "not an id", "spotify:track:x", MR_BRIGHTSIDE_ID, ""])
        assert list(tracks) == [MR_BRIGHTSIDE_ID]
        assert client.report.invalid_ids == ["not an id", "spotify:track:x", ""]
        assert fake.api_requests()[0].params["ids"] == MR_BRIGHTSIDE_ID


def test_search_limit_above_10_is_refused_before_asking():
    with FakeSpotifyServer("dev_2026") as fake, make_client(fake) as client:
        with pytest.raises(ValueError, match="10"):
            client.search("rock", limit=11)
        assert fake.api_requests() == []


def test_single_lookups_are_bounded():
    with FakeSpotifyServer("dev_2026") as fake, make_client(fake, max_single_lookups=5) as client:
        tracks = client.get_tracks(list(fake.catalogue.tracks)[:20])
        assert len(tracks) == 5
        assert client.report.skipped == {"tracks": 15}


def test_premium_lapse_403_is_a_credentials_problem_not_a_capability():
    from music_platform.sources.http import ResponseInfo

    info = ResponseInfo(
        source="spotify",
        operation="GET /tracks",
        status=403,
        headers={},
        content_type="application/json",
        payload={"error": {"status": 403, "message": "Active premium subscription required for the owner of the app."}},
        snippet="",
        context={},
        retry_after=None,
    )
    assert isinstance(classify_spotify(info), InvalidCredentialsError)
