"""``music-platform check-apis``: connection test and response-format validation.

Each configured API gets a section: a few cheap calls against the configured root, each
response parsed by the same code the assets use, with a one-line verdict per call. An API
without credentials is reported as not configured (the synthetic source stands in) and does
not fail the command; any failed call makes the exit code 1.

Adding an API: write ``check_<api>(settings) -> ApiReport`` and append it to ``API_CHECKS``
(the Spotify section goes next to :func:`check_lastfm`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from music_platform.config import Settings
from music_platform.sources.errors import SourceError
from music_platform.sources.http import RetryPolicy, Timeouts

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"

#: A check must answer quickly: two attempts, 30 s in all, per call.
CHECK_RETRY = RetryPolicy(max_attempts=2, deadline_s=30.0, initial_backoff_s=1.0, max_backoff_s=2.0, jitter_s=0.5)
CHECK_TIMEOUTS = Timeouts(connect_s=5.0, read_s=15.0)


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str
    elapsed_ms: float | None = None


@dataclass
class ApiReport:
    api: str
    target: str
    results: list[CheckResult] = field(default_factory=list)
    note: str = ""

    @property
    def failed(self) -> bool:
        return any(r.status == FAILED for r in self.results)

    def run(self, name: str, call: Callable[[], str]) -> bool:
        """Time ``call`` (which returns a detail line); record ok or the error. True when ok."""
        started = time.perf_counter()
        try:
            detail = call()
        except SourceError as exc:
            self.results.append(CheckResult(name, FAILED, str(exc), (time.perf_counter() - started) * 1000))
            return False
        except (ValueError, KeyError, TypeError) as exc:
            # Our parsers raise these only when the shape is not what the contract says.
            message = f"unexpected response format: {type(exc).__name__}: {exc}"
            self.results.append(CheckResult(name, FAILED, message, (time.perf_counter() - started) * 1000))
            return False
        self.results.append(CheckResult(name, OK, detail, (time.perf_counter() - started) * 1000))
        return True


# -- Last.fm ---------------------------------------------------------------------------------------------------


def _rows_detail(result: Any, what: str) -> str:
    if result.rejects:
        reasons = sorted({r.reason for r in result.rejects})
        raise ValueError(f"{len(result.rejects)} {what} could not be parsed: {'; '.join(reasons[:3])}")
    return f"{len(result.rows)} {what}, all fields typed"


def check_lastfm(settings: Settings, *, client: Any = None) -> ApiReport:
    from music_platform.sources.lastfm.client import LastfmClient
    from music_platform.sources.lastfm.parsing import (
        parse_artist_top_tags,
        parse_chart_top_tracks,
        parse_recent_tracks,
        parse_tag_top_tracks,
        parse_user_info,
        recent_tracks_paging,
    )

    report = ApiReport("Last.fm", settings.lastfm_api_root)
    if not settings.lastfm_api_key and client is None:
        if settings.uses_synthetic_source:
            report.note = "not configured (LASTFM_API_KEY is not set): the synthetic source is in use."
            report.results.append(CheckResult("configuration", SKIPPED, "set LASTFM_API_KEY to check the real API"))
        else:
            report.results.append(
                CheckResult(
                    "configuration",
                    FAILED,
                    "LASTFM_API_KEY is not set but real sources are selected (MUSIC_PLATFORM_SOURCE="
                    f"{settings.source_mode}): the Last.fm assets will fail. Set the key or use the synthetic source.",
                )
            )
        return report

    own_client = client is None
    client = client or LastfmClient.from_settings(settings, retry=CHECK_RETRY, timeouts=CHECK_TIMEOUTS)
    try:
        chart: dict[str, Any] = {}

        def chart_call() -> str:
            chart.update(client.get_chart_top_tracks(limit=5))
            return _rows_detail(parse_chart_top_tracks(chart), "chart tracks")

        if not report.run("connection + key (chart.getTopTracks)", chart_call):
            # A refused key or an unreachable root fails every other call the same way.
            return report

        users = list(settings.lastfm_users)
        if not users:
            report.results.append(CheckResult("users", SKIPPED, "LASTFM_USERS is empty: no scrobbles will be loaded"))
        for user in users:
            report.run(
                f"user.getInfo {user}",
                lambda user=user: _rows_detail(parse_user_info(client.get_user_info(user), user), "profile"),
            )
        if users:
            user = users[0]

            def recent_call() -> str:
                payload = client.get_recent_tracks_page(user, page=1, limit=10)
                paging = recent_tracks_paging(payload)
                result = parse_recent_tracks(payload, user)
                detail = _rows_detail(result, "recent scrobbles")
                return f"{detail}; {paging.total} in the history, now-playing dropped: {result.now_playing_dropped}"

            report.run(f"user.getRecentTracks {user}", recent_call)

        tag = settings.lastfm_tags[0] if settings.lastfm_tags else "rock"
        report.run(
            f"tag.getTopTracks {tag}",
            lambda: _rows_detail(parse_tag_top_tracks(client.get_tag_top_tracks(tag, limit=5), tag), "tag tracks"),
        )
        chart_rows = parse_chart_top_tracks(chart).rows
        if chart_rows:
            artist = chart_rows[0]["artist_name"]
            report.run(
                f"artist.getTopTags {artist}",
                lambda: _rows_detail(parse_artist_top_tags(client.get_artist_top_tags(artist), artist), "tags"),
            )
    finally:
        if own_client:
            client.close()
    return report


# -- Spotify ---------------------------------------------------------------------------------------------------

#: A capability Spotify withdrew for this app: reported, not failed (a fallback stands in).
WITHDRAWN = "WARN"
_SPOTIFY_FALLBACKS = {
    "tracks_batch": "tracks are fetched one by one (GET /tracks/{id}), a bounded number per run",
    "artists_batch": "artists are fetched one by one (GET /artists/{id}), a bounded number per run",
    "audio_features": "audio features come from the Kaggle file",
}


def check_spotify(settings: Settings, *, client: Any = None) -> ApiReport:
    """The Spotify section: token, each capability (withdrawn ones are warnings), response formats."""
    from music_platform.sources.spotify.check import check_spotify as probe_spotify
    from music_platform.sources.spotify.client import CAPABILITIES

    report = ApiReport("Spotify", settings.spotify_api_root)
    started = time.perf_counter()
    result = probe_spotify(settings, client=client)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if not result.configured:
        report.note = (
            "not configured (SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET unset): genres, popularity and audio "
            "features come from the Kaggle file."
        )
        report.results.append(CheckResult("configuration", SKIPPED, "set both to check the real API"))
        return report
    failures = [line.strip() for line in result.lines if "FAILED" in line or "INVALID" in line]
    if not result.capabilities:
        detail = "; ".join(failures) or "no answer"
        report.results.append(CheckResult("token + capabilities", FAILED, detail, elapsed_ms))
        return report
    report.results.append(CheckResult("token + capability probes", OK, "client-credentials token obtained", elapsed_ms))
    for capability, description in CAPABILITIES.items():
        available = result.capabilities.get(capability)
        if available is None:
            report.results.append(CheckResult(f"capability {capability}", SKIPPED, f"{description}: not probed"))
        elif available:
            report.results.append(CheckResult(f"capability {capability}", OK, f"{description}: available"))
        else:
            report.results.append(
                CheckResult(
                    f"capability {capability}",
                    WITHDRAWN,
                    f"{description}: withdrawn for this app (HTTP 403); "
                    + _SPOTIFY_FALLBACKS.get(capability, "its values come from the Kaggle file"),
                )
            )
    formats = [line.strip() for line in result.lines if line.strip().startswith("format ")]
    report.results.append(
        CheckResult(
            "response formats",
            OK if result.ok else FAILED,
            "; ".join(failures) if not result.ok else "; ".join(f.removeprefix("format ") for f in formats),
        )
    )
    return report


#: Every API section, in report order.
API_CHECKS: list[Callable[[Settings], ApiReport]] = [check_lastfm, check_spotify]


def format_report(report: ApiReport) -> list[str]:
    lines = [f"{report.api} ({report.target})"]
    if report.note:
        lines.append(f"  {report.note}")
    width = max((len(r.name) for r in report.results), default=0)
    for r in report.results:
        elapsed = f"{r.elapsed_ms:6.0f} ms" if r.elapsed_ms is not None else " " * 9
        lines.append(f"  {r.status:<8} {r.name:<{width}}  {elapsed}  {r.detail}")
    return lines


def run_check_apis(
    settings: Settings,
    *,
    checks: list[Callable[[Settings], ApiReport]] | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run every API section, print the report; 0 when nothing failed, else 1."""
    reports = [check(settings) for check in (checks if checks is not None else API_CHECKS)]
    for report in reports:
        for line in format_report(report):
            echo(line)
        echo("")
    failed = [r.api for r in reports if r.failed]
    if failed:
        echo(f"check-apis: FAILED for {', '.join(failed)} (see the lines marked FAILED).")
        return 1
    echo("check-apis: all configured APIs answered in the expected format.")
    return 0
