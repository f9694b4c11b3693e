"""``music-platform collect lastfm``: the standalone collector.

Fetches the tracked users' scrobbles for ``[since, until)`` (split into UTC days, the
warehouse's partitions), their profiles, the global chart, the genre tags' top tracks and
the top tags of every artist heard, and writes each response as a timestamped JSON file
under ``<data dir>/external/lastfm/``::

    recenttracks/<user>/<YYYY-MM-DD>/<stamp>_page-0001-of-0003.json
    users/<user>/<stamp>.json
    chart_top_tracks/<stamp>.json
    tag_top_tracks/<tag>/<stamp>.json
    artist_top_tags/<artist>/<stamp>.json
    runs/<stamp>.json            (what was asked, fetched, skipped and why)

Each file is ``{"fetched_at", "method", "params", "payload"}``; ``params`` are the request
parameters we chose, so the API key is never in a file. A user-day is written only once
all its pages are fetched (each file atomically), so a failure never leaves a half day.

Exit codes: 0 everything fetched; 1 some users/days/tags skipped or failed (listed);
2 nothing could run (no key, no users, bad dates, key rejected).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from music_platform.config import Settings
from music_platform.sources.errors import SourceError
from music_platform.sources.lastfm.client import RECENT_TRACKS_MAX_LIMIT, LastfmClient
from music_platform.sources.lastfm.parsing import parse_artist_top_tags, parse_tag_top_tracks

Printer = Callable[[str], None]


class CollectorInputError(ValueError):
    """A bad --users/--since/--until value; the message says which and why."""


def parse_utc(value: str, option: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (naive = UTC) as an aware UTC datetime."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CollectorInputError(
            f"{option} must be an ISO date (2025-01-31) or datetime (2025-01-31T06:00:00Z), got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def resolve_range(since: str | None, until: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Default: yesterday, the last complete UTC day."""
    now = now or datetime.now(UTC)
    end = parse_utc(until, "--until") if until else datetime.combine(now.date(), time.min, tzinfo=UTC)
    start = parse_utc(since, "--since") if since else end - timedelta(days=1)
    if start >= end:
        raise CollectorInputError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    return start, end


def day_windows(start: datetime, end: datetime) -> Iterator[tuple[date, int, int]]:
    """``(day, from, to)`` for each UTC day touched by ``[start, end)``, clipped to it."""
    day = start.date()
    while datetime.combine(day, time.min, tzinfo=UTC) < end:
        day_start = datetime.combine(day, time.min, tzinfo=UTC)
        lo = max(start, day_start)
        hi = min(end, day_start + timedelta(days=1))
        yield day, int(lo.timestamp()), int(hi.timestamp())
        day += timedelta(days=1)


def safe_name(value: str) -> str:
    """A file-system-safe folder name that stays unique (hash suffix when characters were replaced)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "_"
    if cleaned != value:
        cleaned = f"{cleaned[:80]}-{hashlib.sha1(value.encode('utf-8')).hexdigest()[:8]}"
    return cleaned


def write_json_atomic(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S%fZ")


@dataclass
class CollectorRun:
    out_dir: Path
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    files: int = 0
    scrobbles: int = 0
    rejected: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    per_user: dict[str, dict[str, int]] = field(default_factory=dict)

    def save(self, relative: str, method: str, params: dict[str, Any], payload: Any) -> Path:
        fetched_at = datetime.now(UTC)
        path = self.out_dir / relative.format(stamp=_stamp(fetched_at))
        write_json_atomic(
            path, {"fetched_at": fetched_at.isoformat(), "method": method, "params": params, "payload": payload}
        )
        self.files += 1
        return path

    def problem(self, what: str, error: SourceError | str) -> None:
        kind = type(error).__name__ if isinstance(error, SourceError) else "error"
        self.problems.append({"what": what, "kind": kind, "message": str(error)})


def collect_lastfm(
    settings: Settings,
    users: str | None = None,
    since: str | None = None,
    until: str | None = None,
    *,
    client: LastfmClient | None = None,
    echo: Printer = print,
) -> int:
    """Run the collector; returns the process exit code (see the module docstring)."""
    if not settings.lastfm_api_key and client is None:
        echo(
            "LASTFM_API_KEY is not set: the collector reads the real Last.fm API and needs a key "
            "(https://www.last.fm/api/account/create). Without one the platform uses its synthetic "
            "source; `music-platform generate-fake-data` writes Last.fm-shaped JSON instead."
        )
        return 2
    wanted = [u.strip() for u in users.split(",") if u.strip()] if users else list(settings.lastfm_users)
    if not wanted:
        echo("No Last.fm users to collect: pass --users rj,someone or set LASTFM_USERS.")
        return 2
    try:
        start, end = resolve_range(since, until)
    except CollectorInputError as exc:
        echo(str(exc))
        return 2

    own_client = client is None
    client = client or LastfmClient.from_settings(settings)
    run = CollectorRun(out_dir=settings.external_dir / "lastfm")
    echo(f"Collecting Last.fm for {len(wanted)} user(s), {start.isoformat()} to {end.isoformat()} (UTC, end excluded)")
    echo(f"  into {run.out_dir}")
    try:
        artists = _collect_users(client, run, wanted, start, end, echo)
        _collect_reference(client, run, settings, artists, echo)
    except SourceError as exc:
        if not exc.fatal:
            raise
        echo(f"Stopped: {exc}")
        run.problem("all", exc)
        _write_manifest(run, wanted, start, end, settings)
        return 2
    finally:
        if own_client:
            client.close()
    manifest = _write_manifest(run, wanted, start, end, settings)
    echo(
        f"Done: {run.scrobbles} scrobbles ({run.rejected} rejected rows kept in the pages), {run.files} files, "
        f"{len(run.problems)} problem(s). Manifest: {manifest}"
    )
    for problem in run.problems:
        echo(f"  - {problem['what']}: {problem['message']}")
    return 1 if run.problems else 0


def _collect_users(
    client: LastfmClient, run: CollectorRun, users: list[str], start: datetime, end: datetime, echo: Printer
) -> list[str]:
    artists: dict[str, None] = {}
    for user in users:
        folder = safe_name(user)
        try:
            payload = client.get_user_info(user)
        except SourceError as exc:
            if exc.fatal:
                raise
            run.problem(f"user {user}", exc)
            echo(f"  {user}: skipped ({exc})")
            continue
        run.save(f"users/{folder}/{{stamp}}.json", "user.getInfo", {"user": user}, payload)
        counts = run.per_user.setdefault(user, {"days": 0, "pages": 0, "scrobbles": 0, "rejected": 0})
        for day, time_from, time_to in day_windows(start, end):
            try:
                fetch = client.fetch_recent_tracks(user, time_from, time_to)
            except SourceError as exc:
                if exc.fatal:
                    raise
                run.problem(f"user {user} day {day}", exc)
                echo(f"  {user} {day}: failed ({exc})")
                if exc.skippable:
                    break  # not found / private: the other days will not do better
                continue
            pages = len(fetch.pages)
            for number, page in enumerate(fetch.pages, start=1):
                params = {
                    "user": user,
                    "from": fetch.time_from,
                    "to": fetch.time_to,
                    "page": number,
                    "limit": RECENT_TRACKS_MAX_LIMIT,
                }
                relative = f"recenttracks/{folder}/{day.isoformat()}/{{stamp}}_page-{number:04d}-of-{pages:04d}.json"
                run.save(relative, "user.getRecentTracks", params, page)
            rows = fetch.result.rows
            counts["days"] += 1
            counts["pages"] += pages
            counts["scrobbles"] += len(rows)
            counts["rejected"] += len(fetch.result.rejects)
            run.scrobbles += len(rows)
            run.rejected += len(fetch.result.rejects)
            if not fetch.complete:
                run.problem(
                    f"user {user} day {day}",
                    f"Last.fm reported {fetch.total_reported} scrobbles but {fetch.result.item_count} were returned",
                )
            for row in rows:
                artists.setdefault(row["artist_name"], None)
        echo(f"  {user}: {counts['scrobbles']} scrobbles over {counts['days']} day(s), {counts['pages']} page(s)")
    return list(artists)


def _collect_reference(
    client: LastfmClient, run: CollectorRun, settings: Settings, artists: list[str], echo: Printer
) -> None:
    try:
        chart = client.get_chart_top_tracks(limit=100)
        run.save("chart_top_tracks/{stamp}.json", "chart.getTopTracks", {"limit": 100}, chart)
    except SourceError as exc:
        if exc.fatal:
            raise
        run.problem("chart.getTopTracks", exc)
    for tag in settings.lastfm_tags:
        try:
            payload = client.get_tag_top_tracks(tag, limit=50)
        except SourceError as exc:
            if exc.fatal:
                raise
            run.problem(f"tag {tag}", exc)
            continue
        run.save(
            f"tag_top_tracks/{safe_name(tag)}/{{stamp}}.json", "tag.getTopTracks", {"tag": tag, "limit": 50}, payload
        )
        if not parse_tag_top_tracks(payload, tag).rows:
            echo(f"  tag {tag!r}: Last.fm knows no top tracks for it (check LASTFM_TAGS)")
    echo(f"  chart and {len(settings.lastfm_tags)} tag(s) collected; top tags of {len(artists)} artist(s) next")
    for artist in artists:
        try:
            payload = client.get_artist_top_tags(artist)
        except SourceError as exc:
            if exc.fatal:
                raise
            run.problem(f"artist {artist}", exc)
            continue
        run.save(
            f"artist_top_tags/{safe_name(artist)}/{{stamp}}.json", "artist.getTopTags", {"artist": artist}, payload
        )
        parse_artist_top_tags(payload, artist)  # validates the shape; rows are loaded by the assets


def _write_manifest(run: CollectorRun, users: list[str], start: datetime, end: datetime, settings: Settings) -> Path:
    finished = datetime.now(UTC)
    document = {
        "started_at": run.started_at.isoformat(),
        "finished_at": finished.isoformat(),
        "api_root": settings.lastfm_api_root,
        "users": users,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "tags": list(settings.lastfm_tags),
        "files": run.files,
        "scrobbles": run.scrobbles,
        "rejected_rows": run.rejected,
        "per_user": run.per_user,
        "problems": run.problems,
    }
    path = run.out_dir / "runs" / f"{_stamp(run.started_at)}.json"
    write_json_atomic(path, document)
    return path
