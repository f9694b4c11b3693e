"""Landing raw data: the audit trail on disk and the collection of Last.fm pages into rows.

Free of Dagster. Every landing keeps the payloads it came from, timestamped, under
``<data_dir>/external/<source>/<dataset>/`` (gzip JSON lines, one payload per line), so any
warehouse row can be traced back to the response that produced it.
"""

from __future__ import annotations

import gzip
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from music_platform.sources.errors import SourceError, TransientSourceError
from music_platform.sources.lastfm.parsing import ParseResult, parse_recent_tracks, rejects_frame
from music_platform.sources.schemas import LASTFM_SCROBBLES, RawTable


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class AuditTrailWriter:
    """Streams payloads to one timestamped gzip JSON-lines file.

    Each payload is serialised at once (orjson: several times faster than ``json``, same JSON)
    and compressed on a background thread, in chunks of about a megabyte: zlib releases the GIL,
    so compression overlaps the parsing that follows. At most a few chunks wait, so memory
    stays bounded; a write error surfaces at the next chunk or at ``close``.
    """

    CHUNK_BYTES = 1 << 20
    MAX_CHUNKS_IN_FLIGHT = 4

    def __init__(self, external_dir: Path, source: str, dataset: str, label: str = ""):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = Path(external_dir) / source / dataset
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{label}_{stamp}" if label else stamp
        self.path = folder / f"{name}.jsonl.gz"
        self._file = gzip.open(self.path, "wb", compresslevel=1)
        self._compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-gzip")
        self._in_flight: deque[Future] = deque()
        self._chunk: list[bytes] = []
        self._chunk_bytes = 0
        self._closed = False
        self.count = 0

    def write(self, payload: Any, **context: Any) -> None:
        line = orjson.dumps({"context": context, "payload": payload}, default=str, option=orjson.OPT_APPEND_NEWLINE)
        self._chunk.append(line)
        self._chunk_bytes += len(line)
        self.count += 1
        if self._chunk_bytes >= self.CHUNK_BYTES:
            self._submit_chunk()

    def _submit_chunk(self) -> None:
        if not self._chunk:
            return
        data = b"".join(self._chunk)
        self._chunk, self._chunk_bytes = [], 0
        while len(self._in_flight) >= self.MAX_CHUNKS_IN_FLIGHT:
            self._in_flight.popleft().result()
        self._in_flight.append(self._compressor.submit(self._file.write, data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._submit_chunk()
            while self._in_flight:
                self._in_flight.popleft().result()
        finally:
            self._compressor.shutdown(wait=True)
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


# The real API is walked per user over a run of days (one walk per user and batch, far fewer
# requests than one per user-day at 5 requests/s); a batch of this many days bounds what is held
# in memory (~5 scrobbles per user-day) while keeping that saving.
MAX_DAYS_PER_API_BATCH = 14
SYNTHETIC_DAYS_PER_BATCH = 7


@dataclass
class ScrobbleBatch:
    """What one load of a run of days produced, with every row accounted for."""

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


def iter_scrobble_batches(
    client: Any,
    users: Sequence[str],
    days: Sequence[date],
    audit: AuditTrailWriter | None = None,
    per_day_fast_path: bool = False,
    max_days_per_api_batch: int = MAX_DAYS_PER_API_BATCH,
) -> Iterator[ScrobbleBatch]:
    """Fetch and parse every scrobble of ``users`` on ``days``, one batch of whole days at a time.

    Memory holds one batch, never the whole range: the caller writes each batch (its days
    replaced atomically) before asking for the next. A user the API says does not exist or
    keeps private is skipped (recorded with the reason in ``skipped_users``, one dict shared by
    every batch, so a user skipped once is not asked again); any other source error propagates:
    a batch is never handed over half-fetched.

    - ``per_day_fast_path`` (the synthetic source): each day built for all users at once, in
      batches of up to ``SYNTHETIC_DAYS_PER_BATCH`` consecutive days (a write per batch: a
      warehouse write costs about as much fixed as for a day's rows, so a backfill of hundreds
      of days writes a seventh as often; a batch holds ~175k rows at 5,000 users).
    - The real client (it has ``fetch_recent_tracks``): batches of up to ``max_days_per_api_batch``
      consecutive days, each user's days read in one walk; a walk whose window shifted (a
      back-dated scrobble arrived) is restarted by the client, and a walk whose rows do not add
      up to the total Last.fm reported raises a transient error instead of loading a partial day.
    - Any other client: one batch per day, each user's pages of that day.
    """
    if max_days_per_api_batch < 1:
        raise ValueError(f"max_days_per_api_batch must be at least 1, got {max_days_per_api_batch}")
    skipped: dict[str, str] = {}
    if not per_day_fast_path and hasattr(client, "fetch_recent_tracks"):
        for first, last in consecutive_day_spans(days):
            while first <= last:
                batch_last = min(last, first + timedelta(days=max_days_per_api_batch - 1))
                batch = ScrobbleBatch(days=_days_between(first, batch_last), skipped_users=skipped)
                _collect_user_windows(client, users, first, batch_last, audit, batch)
                yield batch
                first = batch_last + timedelta(days=1)
        return
    if per_day_fast_path:
        groups = [
            span
            for first, last in consecutive_day_spans(days)
            for span in _chunks(first, last, SYNTHETIC_DAYS_PER_BATCH)
        ]
    else:
        groups = [[day] for day in days]
    for group in groups:
        batch = ScrobbleBatch(days=group, skipped_users=skipped)
        for day in group:
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
        yield batch


def collect_scrobbles(
    client: Any,
    users: Sequence[str],
    days: Sequence[date],
    audit: AuditTrailWriter | None = None,
    per_day_fast_path: bool = False,
) -> ScrobbleBatch:
    """Every scrobble of ``users`` on ``days`` in one batch (for small ranges; the scrobbles
    asset writes :func:`iter_scrobble_batches` batch by batch instead)."""
    merged = ScrobbleBatch(days=list(days))
    for batch in iter_scrobble_batches(client, users, days, audit=audit, per_day_fast_path=per_day_fast_path):
        merged.result.extend(batch.result)
        merged.pages += batch.pages
        merged.users_loaded |= batch.users_loaded
        merged.skipped_users = batch.skipped_users
    return merged


def consecutive_day_spans(days: Iterable[date]) -> list[tuple[date, date]]:
    """``[(first, last), ...]`` covering ``days`` with runs of consecutive days merged."""
    spans: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if spans and day == spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def _chunks(first: date, last: date, size: int) -> Iterator[list[date]]:
    """``[first, last]`` in runs of at most ``size`` consecutive days."""
    days = _days_between(first, last)
    for i in range(0, len(days), size):
        yield days[i : i + size]


def _days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


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


def _collect_user_windows(
    client: Any, users: Sequence[str], first: date, last: date, audit: AuditTrailWriter | None, batch: ScrobbleBatch
) -> None:
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    for user in users:
        if user in batch.skipped_users:
            continue
        try:
            fetch = client.fetch_recent_tracks(user, start, end)
        except SourceError as exc:
            if not getattr(exc, "skippable", False):
                raise
            batch.skipped_users[user] = str(exc)
            continue
        if not fetch.complete:
            raise TransientSourceError(
                f"Last.fm user.getRecentTracks: user {user!r} has {fetch.total_reported} scrobbles in "
                f"[{fetch.time_from}, {fetch.time_to}) by Last.fm's count but its pages held "
                f"{fetch.result.item_count}; the days of this batch were not written and the step is retried.",
                source="lastfm",
                operation="user.getRecentTracks",
                context={"user": user},
            )
        for number, page in enumerate(fetch.pages, start=1):
            if audit is not None:
                audit.write(
                    page,
                    user=user,
                    window=[fetch.time_from, fetch.time_to],
                    page=number,
                    method="user.getRecentTracks",
                )
        batch.result.extend(fetch.result)
        batch.pages += len(fetch.pages)
        batch.users_loaded.add(user)


def parse_all(results: Iterable[ParseResult], table: RawTable) -> ParseResult:
    merged = ParseResult(table)
    for result in results:
        merged.extend(result)
    return merged
