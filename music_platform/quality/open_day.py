"""Judging the open day of scrobbles (issue 19): a partial day passes, a stalled feed fails.

Free of Dagster. Today's scrobble partition exists while the day runs and fills as listeners
scrobble, so "fewer rows than a whole day" is normal and proves nothing. What is wrong is a feed
that stopped: nothing landed for the open day for longer than ``stall_after`` (the sensor polls
every minute and loads a slice of users each time someone scrobbled). Closed days are judged by
the completeness checks and the ledger as before; this verdict only speaks about the open day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

#: With listeners scrobbling and the sensor polling every minute, an hour without any new row of
#: the open day means the feed stopped (sensor off, daemon down, every load failing).
DEFAULT_STALL_AFTER = timedelta(hours=1)

OPEN, STALLED, CLOSED, JUST_STARTED, NOT_LIVE = "open", "stalled", "closed", "just started", "not live"


@dataclass(frozen=True)
class OpenDayVerdict:
    day: date
    status: str
    passed: bool
    rows: int
    newest_landed_at: datetime | None
    description: str


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def judge_open_day(
    now: datetime,
    rows: int,
    newest_landed_at: datetime | None,
    stall_after: timedelta = DEFAULT_STALL_AFTER,
    day: date | None = None,
    live_feed: bool = True,
) -> OpenDayVerdict:
    """The verdict on ``day`` (default: today in UTC at ``now``), given its stored rows and the
    newest ``ingested_at`` among them (naive values are UTC).

    ``live_feed``: whether a live Last.fm feed is configured. The synthetic source has none (its
    near-real-time sensor is off by default and its listeners do not scrobble as time passes), so
    an open day without new rows there is no stall: it passes as "not live" whatever it holds."""
    if stall_after <= timedelta(0):
        raise ValueError("stall_after must be positive")
    now = _aware(now)
    today = now.astimezone(UTC).date()
    day = today if day is None else day
    newest = _aware(newest_landed_at) if newest_landed_at is not None else None
    if day != today:
        return OpenDayVerdict(day, CLOSED, True, rows, newest, f"{day} is not the open day ({today}): "
                              "completeness and the ledger judge it")  # fmt: skip
    if not live_feed:
        return OpenDayVerdict(day, NOT_LIVE, True, rows, newest,
                              f"{day} is open; no live Last.fm feed is configured (synthetic source), so nothing "
                              f"is expected to land while it runs: {rows} row(s) so far")  # fmt: skip
    opened = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    if newest is None or rows == 0:
        if now - opened <= stall_after:
            return OpenDayVerdict(day, JUST_STARTED, True, 0, None,
                                  f"{day} began {_minutes(now - opened)} ago: no scrobble landed yet")  # fmt: skip
        return OpenDayVerdict(day, STALLED, False, 0, None,
                              f"stalled feed: nothing of {day} landed in the {_minutes(now - opened)} since it began "
                              f"(limit {_minutes(stall_after)}); is the Last.fm sensor running?")  # fmt: skip
    age = now - newest
    if age > stall_after:
        return OpenDayVerdict(day, STALLED, False, rows, newest,
                              f"stalled feed: the newest scrobbles of {day} landed {_minutes(age)} ago "
                              f"(limit {_minutes(stall_after)}); {rows} row(s) so far")  # fmt: skip
    partial = f"{day} is open: {rows} row(s) so far (a partial day), newest landed {_minutes(age)} ago"
    return OpenDayVerdict(day, OPEN, True, rows, newest, partial)
