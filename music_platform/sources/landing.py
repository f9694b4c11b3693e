"""Landing raw data: the audit trail on disk and the collection of Last.fm pages into rows.

Free of Dagster. Every landing keeps the payloads it came from, timestamped, under
``<data_dir>/external/<source>/<dataset>/`` (gzip JSON lines, one payload per line), so any
warehouse row can be traced back to the response that produced it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from music_platform.sources.errors import SourceError
from music_platform.sources.lastfm.parsing import ParseResult, parse_recent_tracks, rejects_frame
from music_platform.sources.schemas import LASTFM_SCROBBLES, RawTable


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class AuditTrailWriter:
    """Streams payloads to one timestamped gzip JSON-lines file."""

    def __init__(self, external_dir: Path, source: str, dataset: str, label: str = ""):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = Path(external_dir) / source / dataset
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{label}_{stamp}" if label else stamp
        self.path = folder / f"{name}.jsonl.gz"
        self._file = gzip.open(self.path, "wt", encoding="utf-8", compresslevel=1)
        self.count = 0

    def write(self, payload: Any, **context: Any) -> None:
        self._file.write(json.dumps({"context": context, "payload": payload}, ensure_ascii=False, default=str))
        self._file.write("\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AuditTrailWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_audit_trail(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def day_bounds(day: date) -> tuple[int, int]:
    """``[day, day+1)`` in Unix seconds, UTC (Last.fm's ``from`` inclusive, ``to`` exclusive)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


@dataclass
class ScrobbleBatch:
    """What one load of a range of days produced, with every row accounted for."""

    days: list[date]
    result: ParseResult = field(default_factory=lambda: ParseResult(LASTFM_SCROBBLES))
    pages: int = 0
    skipped_users: dict[str, str] = field(default_factory=dict)
    users_loaded: set[str] = field(default_factory=set)
    duplicates_removed: int = 0

    def frame(self, source: str, ingested_at: datetime | None = None) -> pd.DataFrame:
        df = self.result.frame(source=source, ingested_at=ingested_at or utc_now())
        before = len(df)
        df = df.drop_duplicates(subset=list(LASTFM_SCROBBLES.key), keep="last").reset_index(drop=True)
        # Exact repeats of one scrobble (same user, second, artist, track) are one listen.
        self.duplicates_removed = before - len(df)
        return df

    def rejects(self) -> pd.DataFrame:
        return rejects_frame(self.result.rejects, table=LASTFM_SCROBBLES.name)


def collect_scrobbles(
    client: Any,
    users: Sequence[str],
    days: Sequence[date],
    audit: AuditTrailWriter | None = None,
    per_day_fast_path: bool = False,
) -> ScrobbleBatch:
    """Fetch and parse every scrobble of ``users`` on ``days``.

    A user the API says does not exist or keeps private is skipped (recorded with the reason);
    any other source error propagates: a partition is never written half-fetched.
    """
    batch = ScrobbleBatch(days=list(days))
    for day in days:
        start, end = day_bounds(day)
        if per_day_fast_path:
            pages: Iterable[tuple[str, dict]] = client.get_recent_tracks_day(day)
        else:
            pages = _pages_per_user(client, users, start, end, batch)
        for user, page in pages:
            if audit is not None:
                audit.write(page, user=user, day=day.isoformat(), method="user.getRecentTracks")
            batch.result.extend(parse_recent_tracks(page, user, window=(start, end)))
            batch.pages += 1
            batch.users_loaded.add(user)
    return batch


def _pages_per_user(client: Any, users: Sequence[str], start: int, end: int, batch: ScrobbleBatch):
    for user in users:
        if user in batch.skipped_users:
            continue
        try:
            for page in client.get_recent_tracks_pages(user, start, end):
                yield user, page
        except SourceError as exc:
            if not getattr(exc, "skippable", False):
                raise
            batch.skipped_users[user] = str(exc)


def parse_all(results: Iterable[ParseResult], table: RawTable) -> ParseResult:
    merged = ParseResult(table)
    for result in results:
        merged.extend(result)
    return merged
