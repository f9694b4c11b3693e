"""Landing raw data: the audit trail on disk and the collection of Last.fm pages into rows.

Rows that cannot be parsed are quarantined with their reason (``quarantine``), never dropped.

One path for every Last.fm source (the real API, the synthetic source): the
:class:`~music_platform.sources.lastfm.protocol.LastfmSource` protocol.

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from music_platform.sources.errors import SourceError, TransientSourceError
from music_platform.sources.lastfm.parsing import ParseResult, rejects_frame
from music_platform.sources.lastfm.protocol import LastfmSource, RecentTracksFetch, day_bounds, days_between
from music_platform.sources.schemas import LASTFM_SCROBBLES, RawTable
from music_platform.warehouse.base import Warehouse

# day_bounds is re-exported: callers of the landing take the day arithmetic from here.
__all__ = [
    "AuditTrailWriter",
    "ScrobbleBatch",
    "collect_scrobbles",
    "consecutive_day_spans",
    "day_bounds",
    "iter_scrobble_batches",
    "parse_all",
    "quarantine",
    "read_audit_trail",
    "utc_now",
]


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

    def add(self, fetch: RecentTracksFetch, audit: AuditTrailWriter | None) -> None:
        """Take one user's window, whole: a window whose rows do not add up to the total the source
        reported raises a transient error instead of loading a partial day."""
        if not fetch.complete:
            raise TransientSourceError(
                f"Last.fm user.getRecentTracks: user {fetch.user!r} has {fetch.total_reported} scrobbles in "
                f"[{fetch.time_from}, {fetch.time_to}) by Last.fm's count but its pages held "
                f"{fetch.result.item_count}; the days of this batch were not written and the step is retried.",
                source="lastfm",
                operation="user.getRecentTracks",
                context={"user": fetch.user},
            )
        if audit is not None:
            for number, page in enumerate(fetch.pages, start=1):
                audit.write(
                    page,
                    user=fetch.user,
                    window=[fetch.time_from, fetch.time_to],
                    page=number,
                    method="user.getRecentTracks",
                )
        self.result.extend(fetch.result)
        self.pages += len(fetch.pages)
        self.users_loaded.add(fetch.user)


def iter_scrobble_batches(
    client: LastfmSource,
    users: Sequence[str],
    days: Sequence[date],
    audit: AuditTrailWriter | None = None,
    days_per_batch: int | None = None,
) -> Iterator[ScrobbleBatch]:
    """Fetch and parse every scrobble of ``users`` on ``days``, one batch of whole days at a time.

    A batch is a run of at most ``days_per_batch`` consecutive days (default: the source's own,
    ``client.days_per_batch``), never across a gap; the source reads it window by window
    (:meth:`LastfmSource.recent_tracks_for_days`). Memory holds one batch, never the whole range:
    the caller writes each batch (its days replaced atomically, so loading a day again replaces
    it) before asking for the next. A user the source says does not exist or keeps private is
    skipped (recorded with the reason in ``skipped_users``, one dict shared by every batch, so a
    user skipped once is not asked again); any other source error propagates: a batch is never
    handed over half-fetched.
    """
    size = client.days_per_batch if days_per_batch is None else days_per_batch
    if size < 1:
        raise ValueError(f"days_per_batch must be at least 1, got {size}")
    skipped: dict[str, str] = {}
    for first, last in consecutive_day_spans(days):
        for span in _chunks(first, last, size):
            batch = ScrobbleBatch(days=span, skipped_users=skipped)
            asked = [user for user in users if user not in skipped]
            for user, outcome in client.recent_tracks_for_days(asked, span[0], span[-1]):
                if isinstance(outcome, SourceError):
                    skipped[user] = str(outcome)
                else:
                    batch.add(outcome, audit)
            yield batch


def collect_scrobbles(
    client: LastfmSource,
    users: Sequence[str],
    days: Sequence[date],
    audit: AuditTrailWriter | None = None,
) -> ScrobbleBatch:
    """Every scrobble of ``users`` on ``days`` in one batch (for small ranges; the scrobbles
    asset writes :func:`iter_scrobble_batches` batch by batch instead)."""
    merged = ScrobbleBatch(days=list(days))
    for batch in iter_scrobble_batches(client, users, days, audit=audit):
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
    days = days_between(first, last)
    for i in range(0, len(days), size):
        yield days[i : i + size]


#: Rows of the API payloads that could not be parsed, with the reason, for every raw table.
REJECTS_SCHEMA = "raw"
REJECTS_TABLE = "ingestion_rejects"


def quarantine(
    warehouse: Warehouse, table: str, load_id: str, result: ParseResult, context_columns: dict | None = None
) -> int:
    """Replace this load's quarantined rows in ``raw.ingestion_rejects`` (a re-run does not
    duplicate them); the number of rows set aside."""
    frame = rejects_frame(result.rejects, table=table, context=context_columns)
    frame.insert(0, "load_id", f"{table}:{load_id}")
    frame["ingested_at"] = pd.Timestamp(utc_now())
    if frame.empty and not warehouse.table_exists(REJECTS_SCHEMA, REJECTS_TABLE):
        return 0
    frame = frame.astype({"position": "int64"}).astype(
        {c: "object" for c in frame.columns if c not in ("position", "ingested_at")}
    )
    warehouse.replace_partition(REJECTS_SCHEMA, REJECTS_TABLE, frame, "load_id", [f"{table}:{load_id}"])
    return len(frame)


def parse_all(results: Iterable[ParseResult], table: RawTable) -> ParseResult:
    merged = ParseResult(table)
    for result in results:
        merged.extend(result)
    return merged
