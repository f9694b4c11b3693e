"""The standalone collector and check-apis against the fake Last.fm server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from music_platform.config import Settings
from music_platform.sources.check_apis import API_CHECKS, check_lastfm, run_check_apis
from music_platform.sources.http import RateLimiter, RetryPolicy, Timeouts
from music_platform.sources.lastfm.client import LastfmClient
from music_platform.sources.lastfm.collector import (
    CollectorInputError,
    collect_lastfm,
    day_windows,
    resolve_range,
    safe_name,
)
from music_platform.sources.lastfm.parsing import parse_recent_tracks
from music_platform_tests.fakes.lastfm_server import FakeLastfmServer, Fault

DAY = 86400
END = 1_700_006_400 // DAY * DAY
SECRET = "CoLlEcToRkEy0123456789abcdef012"


def _fast_client(server: FakeLastfmServer, key: str = SECRET) -> LastfmClient:
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)
    return LastfmClient(key, server.url, rate_limiter=RateLimiter(500), retry=retry, timeouts=Timeouts(2, 2))


@pytest.fixture
def server():
    with FakeLastfmServer(users=2, days=3, seed=21, end_uts=END, api_key=SECRET) as fake:
        yield fake


def _settings(tmp_path, server=None, **changes) -> Settings:
    base = Settings(
        data_dir=tmp_path / "data",
        lastfm_api_key=SECRET if server else None,
        lastfm_api_root=server.url if server else Settings().lastfm_api_root,
        lastfm_users=tuple(server.user_names) if server else (),
        lastfm_tags=("rock", "jazz"),
    )
    return base.with_overrides(**changes)


def _day(uts: int) -> str:
    return datetime.fromtimestamp(uts, tz=UTC).date().isoformat()


def test_collector_writes_every_page_and_no_key(tmp_path, server):
    settings = _settings(tmp_path, server)
    users = ",".join([*server.user_names, "ghost_user"])
    since, until = _day(server.world.start_uts), _day(server.world.end_uts)
    server.add_fault(Fault("error", code=8, times=2))  # retried, invisible in the result
    lines: list[str] = []
    code = collect_lastfm(
        settings, users=users, since=since, until=until, client=_fast_client(server), echo=lines.append
    )
    assert code == 1  # ghost_user does not exist: reported, the others are complete

    root = settings.external_dir / "lastfm"
    collected = []
    for user in server.user_names:
        for path in sorted((root / "recenttracks" / user).rglob("*.json")):
            document = json.loads(path.read_text())
            assert document["method"] == "user.getRecentTracks" and "api_key" not in document["params"]
            collected.extend(
                (r["user_name"], r["played_at_uts"], r["artist_name"], r["track_name"])
                for r in parse_recent_tracks(document["payload"], user).rows
            )
        expected = server.world.expected_keys(user, server.world.start_uts, server.world.end_uts)
        assert sorted(k for k in collected if k[0] == user) == sorted(expected)
    assert len(collected) == len(set(collected))
    assert len(list((root / "recenttracks" / server.user_names[0]).iterdir())) == 3  # one folder per day

    assert list((root / "users").iterdir()) and list((root / "chart_top_tracks").iterdir())
    assert {p.name for p in (root / "tag_top_tracks").iterdir()} == {"rock", "jazz"}
    assert len(list((root / "artist_top_tags").iterdir())) > 5

    (manifest_path,) = (root / "runs").iterdir()
    manifest = json.loads(manifest_path.read_text())
    assert manifest["scrobbles"] == len(collected)
    assert [p["what"] for p in manifest["problems"]] == ["user ghost_user"]
    assert "LASTFM_USERS" in manifest["problems"][0]["message"]

    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), path
    assert all(SECRET not in line for line in lines)


def test_collector_stops_on_an_invalid_key(tmp_path, server):
    settings = _settings(tmp_path, server)
    lines: list[str] = []
    code = collect_lastfm(
        settings,
        client=_fast_client(server, key="not-the-key"),
        since="2023-11-13",
        until="2023-11-14",
        echo=lines.append,
    )
    assert code == 2
    assert any("LASTFM_API_KEY" in line for line in lines)
    assert len(server.requests) == 1  # the first call said so; nothing else was tried


def test_collector_without_key_or_users_says_what_to_do(tmp_path, server):
    lines: list[str] = []
    assert collect_lastfm(_settings(tmp_path), echo=lines.append) == 2
    assert "LASTFM_API_KEY is not set" in lines[0] and "synthetic" in lines[0]
    lines.clear()
    assert (
        collect_lastfm(_settings(tmp_path, server, lastfm_users=()), client=_fast_client(server), echo=lines.append)
        == 2
    )
    assert "LASTFM_USERS" in lines[0]
    lines.clear()
    bad_dates = collect_lastfm(
        _settings(tmp_path, server), since="yesterday", client=_fast_client(server), echo=lines.append
    )
    assert bad_dates == 2 and "--since" in lines[0]


def test_date_range_helpers():
    now = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)
    start, end = resolve_range(None, None, now=now)
    assert (start.isoformat(), end.isoformat()) == ("2025-03-09T00:00:00+00:00", "2025-03-10T00:00:00+00:00")
    windows = list(day_windows(*resolve_range("2025-03-01T12:00:00Z", "2025-03-03")))
    assert [(d.isoformat(), hi - lo) for d, lo, hi in windows] == [("2025-03-01", 43200), ("2025-03-02", 86400)]
    with pytest.raises(CollectorInputError):
        resolve_range("2025-03-03", "2025-03-01")
    assert safe_name("rj") == "rj"
    assert safe_name("AC/DC") != safe_name("AC_DC") and "/" not in safe_name("AC/DC")


# -- check-apis ---------------------------------------------------------------------------------------------------


def test_check_apis_without_key_reports_synthetic_and_exits_0(tmp_path):
    lines: list[str] = []
    assert run_check_apis(_settings(tmp_path), echo=lines.append) == 0
    text = "\n".join(lines)
    assert "LASTFM_API_KEY is not set" in text and "synthetic source is in use" in text


def test_check_apis_against_the_fake_passes(tmp_path, server):
    lines: list[str] = []
    settings = _settings(tmp_path, server)
    code = run_check_apis(settings, checks=[lambda s: check_lastfm(s, client=_fast_client(server))], echo=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "connection + key (chart.getTopTracks)" in text and "user.getRecentTracks listener01" in text
    assert "FAILED" not in text and SECRET not in text


def test_check_apis_fails_readably_on_bad_key_and_unknown_user(tmp_path, server):
    lines: list[str] = []
    settings = _settings(tmp_path, server, lastfm_api_key="wrong-key-123", lastfm_users=("nobody_here",))
    assert run_check_apis(settings, echo=lines.append) == 1
    text = "\n".join(lines)
    assert "FAILED" in text and "LASTFM_API_KEY" in text and "wrong-key-123" not in text

    lines.clear()
    settings = _settings(tmp_path, server, lastfm_users=("nobody_here",))
    assert run_check_apis(settings, echo=lines.append) == 1  # default client: 5 requests/s, real retry policy
    text = "\n".join(lines)
    assert "user.getInfo nobody_here" in text and "was not found" in text


def test_check_apis_reports_a_format_problem(tmp_path, server):
    server.add_fault(Fault("html", status=200, times=10))  # HTML with 200: not the contract
    lines: list[str] = []
    settings = _settings(tmp_path, server)
    client = _fast_client(server)
    assert run_check_apis(settings, checks=[lambda s: check_lastfm(s, client=client)], echo=lines.append) == 1
    assert "not JSON" in "\n".join(lines)


def test_lastfm_is_the_first_check_section():
    assert API_CHECKS[0] is check_lastfm
