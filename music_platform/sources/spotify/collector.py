"""``music-platform collect spotify``: a standalone collection into ``<data_dir>/external/spotify/``.

It fetches the tracks asked for (``--track-ids``, or every track id of ``raw.kaggle_tracks``
in the warehouse), their artists, and their audio features, and writes one timestamped JSON
file with the objects exactly as Spotify sent them, what this app may not do
(withdrawn capabilities), ids Spotify does not know, and why it stopped early if it did.
The file never holds a secret (only the API root, no client id or secret, no token).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from music_platform.config import ConfigError, Settings
from music_platform.sources.errors import SourceError
from music_platform.sources.spotify.client import SpotifyClient
from music_platform.sources.spotify.parsing import parse_artists, parse_audio_features, parse_tracks

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # stopped early (rate limit past the cap, retries exhausted) or a source error
EXIT_USAGE = 2  # not configured, or nothing to collect


def warehouse_track_ids(settings: Settings) -> list[str]:
    """Distinct Spotify track ids of ``raw.kaggle_tracks`` (empty when the table is not there)."""
    from music_platform.warehouse.factory import connect_warehouse

    warehouse = connect_warehouse(settings)
    if not warehouse.table_exists("raw", "kaggle_tracks"):
        return []
    frame = warehouse.query_df("select distinct track_id from raw.kaggle_tracks order by track_id")
    return [str(v) for v in frame["track_id"] if v]


def collect_spotify(
    settings: Settings,
    track_ids: str | None = None,
    *,
    client: SpotifyClient | None = None,
    out=sys.stdout,
) -> int:
    """Collect and write one JSON file; returns the process exit code."""
    if client is None and not settings.spotify_configured:
        print("Spotify is not configured: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET.", file=out)
        return EXIT_USAGE
    if track_ids:
        ids = list(dict.fromkeys(i.strip() for i in track_ids.split(",") if i.strip()))
        origin = "--track-ids"
    else:
        ids = warehouse_track_ids(settings)
        origin = "raw.kaggle_tracks"
    if not ids:
        print("No track ids to collect: pass --track-ids or load raw.kaggle_tracks first.", file=out)
        return EXIT_USAGE

    try:
        client = client or SpotifyClient.from_settings(settings)
    except ConfigError as error:
        print(f"Spotify client not created: {error}", file=out)
        return EXIT_USAGE
    started = datetime.now(UTC)
    try:
        with client:
            tracks = client.get_tracks(ids)
            found_tracks = [t for t in tracks.values() if t is not None]
            artist_ids = [a.get("id") for t in found_tracks for a in t.get("artists") or [] if isinstance(a, dict)]
            artists = client.get_artists([a for a in artist_ids if a])
            features = client.get_audio_features(ids)
    except SourceError as error:
        print(f"Spotify collection failed: {error}", file=out)
        return EXIT_INCOMPLETE

    found_artists = [a for a in artists.values() if a is not None]
    found_features = [f for f in features.values() if f is not None]
    report = client.report
    parsed = {
        "tracks": parse_tracks(found_tracks),
        "artists": parse_artists(found_artists),
        "audio_features": parse_audio_features(found_features),
    }
    document: dict[str, Any] = {
        "collected_at": started.isoformat(),
        "api_root": client.api_root,
        "track_ids_from": origin,
        "requested_track_ids": len(ids),
        "requests_sent": client.request_count,
        "report": report.as_metadata(),
        "not_found": report.not_found,
        "invalid_ids": report.invalid_ids,
        "rows": {kind: len(result.rows) for kind, result in parsed.items()},
        "rejected": {
            kind: [{"reason": r.reason, "object": r.record} for r in result.rejects] for kind, result in parsed.items()
        },
        "tracks": found_tracks,
        "artists": found_artists,
        "audio_features": found_features,
    }
    path = _write_json(settings.external_dir / "spotify", started, document)

    print(f"Spotify: {len(ids)} track ids from {origin}; {client.request_count} requests", file=out)
    for kind, result in parsed.items():
        missing = len(report.not_found.get(kind, []))
        print(
            f"  {kind}: {len(result.rows)} rows, {len(result.rejects)} rejected, {missing} unknown to Spotify", file=out
        )
    for capability, why in report.unavailable.items():
        print(f"  capability unavailable: {capability}: {why}", file=out)
    if report.invalid_ids:
        print(f"  ignored {len(report.invalid_ids)} value(s) that are not Spotify ids", file=out)
    if report.stopped_reason:
        print(f"  stopped early: {report.stopped_reason}; skipped {report.skipped}", file=out)
    print(f"  written to {path}", file=out)
    return EXIT_OK if report.stopped_reason is None else EXIT_INCOMPLETE


def _write_json(folder: Path, stamp: datetime, document: dict[str, Any]) -> Path:
    """Write atomically (temporary file, then rename) so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spotify_{stamp.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    temporary = path.with_suffix(".json.partial")
    temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)
    return path
