"""Polling the tracked users for new scrobbles: the logic of the near-real-time sensor.

Free of Dagster. A cursor maps each user to the Unix time of the newest scrobble already
handled; one poll asks each user, with **one** ``user.getRecentTracks`` request (page 1,
newest first), for the scrobbles in ``[cursor + 1, now)`` and reports the UTC days they fall
on, so the caller can reload exactly those daily partitions.

One request per user is enough even when there are more new scrobbles than a page holds:
page 1 carries the newest scrobble and ``totalPages``; when there are more pages, every day
from the window's start to the newest scrobble is reported as affected (each day is reloaded
whole by the asset, so the scrobbles not seen here are loaded anyway).

A user that is not found or private is reported as skipped, a transient failure as failed;
neither advances that user's cursor, so the next poll asks again. Fatal errors (an invalid
key) propagate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from music_platform.sources.errors import RateLimitedError, SourceError
from music_platform.sources.lastfm.parsing import parse_recent_tracks, recent_tracks_paging

#: A user seen for the first time is asked for the last day of scrobbles.
INITIAL_LOOKBACK_S = 86_400
#: Scrobbles per request (Last.fm's documented maximum page size).
POLL_PAGE_LIMIT = 200


def utc_day(uts: int) -> date:
    return datetime.fromtimestamp(uts, tz=UTC).date()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def load_cursor(text: str | None) -> dict[str, int]:
    """The sensor cursor ``{"user": last_uts}``; an unreadable cursor is an error, not a reset."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the Last.fm sensor cursor is not JSON ({exc}); reset it in the UI") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise ValueError('the Last.fm sensor cursor must be a JSON object {"user": unix_time}; reset it in the UI')
    return {str(k): int(v) for k, v in data.items()}


def dump_cursor(cursor: Mapping[str, int]) -> str:
    return json.dumps(dict(sorted(cursor.items())), separators=(",", ":"))


def users_for_this_tick(users: Sequence[str], budget: int, tick: int) -> list[str]:
    """At most ``budget`` users, rotating by ``tick`` so every user is asked in turn."""
    if budget <= 0:
        raise ValueError("the per-tick request budget must be positive")
    if len(users) <= budget:
        return list(users)
    start = (tick * budget) % len(users)
    rotated = list(users[start:]) + list(users[:start])
    return rotated[:budget]


@dataclass
class UserPoll:
    """What one user's request found."""

    user: str
    time_from: int
    time_to: int
    new_scrobbles: int = 0
    newest_uts: int | None = None
    more_pages: bool = False
    days: list[date] = field(default_factory=list)


@dataclass
class PollResult:
    cursor: dict[str, int]
    polls: list[UserPoll] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # not found / private
    failed: dict[str, str] = field(default_factory=dict)  # transient, asked again next time
    not_asked: list[str] = field(default_factory=list)  # the poll stopped early (time budget, rate limit)
    stopped_because: str | None = None
    requests: int = 0

    @property
    def users_by_day(self) -> dict[date, set[str]]:
        """Each affected day → the users with new scrobbles on it (the slice to reload)."""
        days: dict[date, set[str]] = {}
        for poll in self.polls:
            for day in poll.days:
                days.setdefault(day, set()).add(poll.user)
        return days

    @property
    def affected_days(self) -> dict[date, int]:
        """Each day with new scrobbles → the newest new scrobble's time seen for it (or the
        window's end for days only known to be covered by unseen pages)."""
        days: dict[date, int] = {}
        for poll in self.polls:
            for day in poll.days:
                marker = poll.newest_uts if poll.newest_uts is not None else poll.time_to
                days[day] = max(days.get(day, 0), marker)
        return days


def poll_recent_scrobbles(
    client: Any,
    users: Sequence[str],
    cursor: Mapping[str, int],
    now: int,
    *,
    initial_lookback_s: int = INITIAL_LOOKBACK_S,
    limit: int = POLL_PAGE_LIMIT,
    time_budget_s: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    stop_when: Callable[[], str | None] | None = None,
) -> PollResult:
    """Ask each of ``users`` once for its scrobbles since its cursor; see the module doc.

    ``client`` needs ``get_recent_tracks_page(user, page, limit, time_from, time_to)`` (the
    real client or the synthetic source). Returns the advanced cursor: a user's value becomes
    the newest scrobble seen, or for a first-time user with nothing new the window's start
    minus one second (so the next window starts where this one did).

    The poll stops early, leaving the remaining users' cursors as they were (``not_asked``),
    when ``time_budget_s`` is spent, Last.fm says the rate limit is exceeded (asking the
    other users at once would only make that worse), or ``stop_when`` (asked before every
    request) returns a reason, e.g. a step that calls Last.fm has started.
    """
    result = PollResult(cursor=dict(cursor))
    started = monotonic()
    for index, user in enumerate(users):
        if result.stopped_because is None and time_budget_s is not None and monotonic() - started > time_budget_s:
            result.stopped_because = f"the poll's time budget of {time_budget_s:g} s was spent"
        if result.stopped_because is None and stop_when is not None:
            result.stopped_because = stop_when()
        if result.stopped_because is not None:
            result.not_asked = list(users[index:])
            break
        time_from = cursor[user] + 1 if user in cursor else now - initial_lookback_s
        if time_from >= now:
            continue  # its newest scrobble is in this very second: nothing can be newer yet
        poll = UserPoll(user=user, time_from=time_from, time_to=now)
        result.requests += 1
        try:
            payload = client.get_recent_tracks_page(user, page=1, limit=limit, time_from=time_from, time_to=now)
            parsed = parse_recent_tracks(payload, user, window=(time_from, now))
            paging = recent_tracks_paging(payload)
        except SourceError as error:
            if error.fatal:
                raise
            (result.skipped if error.skippable else result.failed)[user] = str(error)
            if isinstance(error, RateLimitedError):
                result.stopped_because = "Last.fm answered 'rate limit exceeded'"
            continue
        times = [row["played_at_uts"] for row in parsed.rows]
        poll.new_scrobbles = paging.total
        poll.more_pages = paging.total_pages > 1
        if times:
            poll.newest_uts = max(times)
            oldest = utc_day(time_from) if poll.more_pages else utc_day(min(times))
            poll.days = days_between(oldest, utc_day(poll.newest_uts))
            result.cursor[user] = max(poll.newest_uts, cursor.get(user, 0))
        elif paging.total > 0:
            # Only unreadable rows on the page: reload the window's days once (the run quarantines
            # them with the reason) and move past them.
            poll.days = days_between(utc_day(time_from), utc_day(now - 1))
            result.cursor[user] = now - 1
        elif user not in cursor:
            result.cursor[user] = time_from - 1
        result.polls.append(poll)
    return result


# -- the incremental load of a day: a slice of its users -------------------------------------
def select_slice_users(
    requested: Sequence[str], tracked: Sequence[str], days: Sequence[date], *, whole_day_source: bool
) -> list[str] | None:
    """The users an incremental load re-fetches, or None for "every tracked user" (a full load).

    A slice applies to one day only (the sensor asks for one run per day); a source that builds
    whole days at once (synthetic) reloads the day. Requested users that are no longer tracked
    are left out: their stored rows stay until the day's full load drops them.
    """
    if not requested:
        return None
    if len(days) != 1:
        raise ValueError(f"a load of a slice of users covers one day, not {len(days)}: drop the users from the config")
    if whole_day_source:
        return None
    tracked_set = set(tracked)
    return sorted({user for user in requested if user in tracked_set})


def merge_user_slice(stored: pd.DataFrame | None, fresh: pd.DataFrame, users: Sequence[str]) -> pd.DataFrame:
    """The day as it should be stored: ``fresh`` (every row of ``users``, just fetched) and the
    stored rows of every other user.

    The caller replaces the day with the result in one transaction (the day-replace), so a
    user's scrobbles are never both old and new (no duplicate) and another user's rows are
    carried over unchanged (nothing lost). Column order and types follow ``fresh``.
    """
    if stored is None or stored.empty:
        return fresh
    missing = [c for c in fresh.columns if c not in stored.columns]
    if missing:
        raise ValueError(f"the stored day lacks the columns {missing}: load the day in full (no users in the config)")
    others = stored.loc[~stored["user_name"].isin(set(users)), list(fresh.columns)]
    if others.empty:
        return fresh
    others = others.astype(fresh.dtypes.to_dict())
    if fresh.empty:
        return others.reset_index(drop=True)
    return pd.concat([others, fresh], ignore_index=True)
