"""The Spotify part of ``music-platform check-apis``: connection, capabilities, response formats.

It gets a client-credentials token, asks each endpoint once about a track and an artist that
exist on Spotify (Mr. Brightside by The Killers), says which capabilities this app has
(development-mode apps lost audio features in Nov 2024 and the batch endpoints in 2026),
and checks that the answers parse into raw rows. A withdrawn capability is a warning, not
a failure: the platform falls back to the Kaggle file's features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from music_platform.config import Settings
from music_platform.sources.errors import SourceError
from music_platform.sources.spotify.client import CAPABILITIES, SpotifyClient
from music_platform.sources.spotify.parsing import parse_artists, parse_audio_features, parse_tracks

PROBE_TRACK_ID = "3n3Ppam7vgaVa1iaRUc9Lp"  # Mr. Brightside
PROBE_ARTIST_ID = "0C0XlULifJtAgn6ZNCW2eu"  # The Killers
PROBE_PAIR = ("The Killers", "Mr. Brightside")


@dataclass
class SpotifyCheck:
    """``ok`` is False only when Spotify is configured and cannot be used at all."""

    configured: bool
    ok: bool
    capabilities: dict[str, bool] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_spotify(settings: Settings, *, client: SpotifyClient | None = None) -> SpotifyCheck:
    if client is None and not settings.spotify_configured:
        return SpotifyCheck(
            configured=False,
            ok=True,
            lines=["Spotify: not configured (SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET unset); skipped"],
        )
    client = client or SpotifyClient.from_settings(settings, max_single_lookups=1)
    check = SpotifyCheck(configured=True, ok=True)
    check.lines.append(f"Spotify: {client.api_root}")
    try:
        with client:
            client.auth.token()
            check.lines.append("  token: client-credentials token obtained")
            check.capabilities = client.probe_capabilities(PROBE_TRACK_ID, PROBE_ARTIST_ID)
            _check_formats(client, check)
    except SourceError as error:
        check.ok = False
        check.lines.append(f"  FAILED: {error}")
        return check
    if client.report.stopped_reason:
        check.ok = False
        check.lines.append(f"  FAILED: stopped early: {client.report.stopped_reason}")
    for capability, description in CAPABILITIES.items():
        available = check.capabilities.get(capability)
        state = "available" if available else "UNAVAILABLE" if available is False else "not probed"
        check.lines.append(f"  capability {capability:<15} {state:<12} {description}")
        if available is False:
            check.warnings.append(f"{capability} unavailable: {client.report.unavailable.get(capability, 'HTTP 403')}")
    if check.capabilities.get("audio_features") is False:
        check.lines.append("  audio features will come from the Kaggle file (raw.kaggle_tracks)")
    return check


def _check_formats(client: SpotifyClient, check: SpotifyCheck) -> None:
    """Parse one answer of each kind; a shape the parsers reject fails the check."""
    samples = {
        "track": parse_tracks([t for t in client.get_tracks([PROBE_TRACK_ID]).values() if t]),
        "artist": parse_artists([a for a in client.get_artists([PROBE_ARTIST_ID]).values() if a]),
        "audio features": parse_audio_features([f for f in client.get_audio_features([PROBE_TRACK_ID]).values() if f]),
    }
    found = client.search_track(*PROBE_PAIR, limit=1)
    samples["search result"] = parse_tracks([found] if found else [])
    for kind, parsed in samples.items():
        if parsed.rejects:
            check.ok = False
            check.lines.append(f"  format {kind}: INVALID ({parsed.rejects[0].reason})")
        elif parsed.rows:
            check.lines.append(f"  format {kind}: ok")
        else:
            check.lines.append(f"  format {kind}: no answer to check")
