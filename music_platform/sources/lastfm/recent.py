"""Polling the tracked users for new scrobbles: the logic of the near-real-time sensor.

Free of Dagster. The poll plan (``plan_tick``) chooses who is asked at a tick within its request
budget: a rotation that asks everyone within ``MAX_POLL_INTERVAL_S``, then the users who
scrobbled recently, by priority; ``PollState`` is the sensor's compact cursor. A cursor maps
each user to the Unix time of the newest scrobble already handled; one poll asks each chosen
user, with **one** ``user.getRecentTracks`` request (page 1, newest first), for the scrobbles in
``[cursor + 1, now)`` and reports the UTC days they fall on, so the caller can reload exactly
those daily partitions.

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
from typing import Any, NamedTuple

import pandas as pd

from music_platform.sources.errors import RateLimitedError, SourceError
from music_platform.sources.lastfm.landed import LandedWindow, split_by_day
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
    """A version-1 cursor ``{"user": last_uts}`` (the sensor's format before the poll plan); an
    unreadable cursor is an error, not a reset."""
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


# -- the poll plan: who is asked at a tick ---------------------------------------------------------
#: A listener whose newest scrobble (as last seen: it lags the listening by the time between asks)
#: is this recent is playing (a track lasts 3-4 min): asked every tick ...
SESSION_GAP_S = 10 * 60
#: ... but not sooner than this after that scrobble (a track rarely ends within 90 s of the last).
HOT_MIN_GAP_S = 90
#: A playing listener is asked at most this often (0: every tick; 120 s changed nothing in the
#: simulation, the rotation's share leaves few asks to the playing tier anyway).
PLAYING_INTERVAL_S = 0
#: Within this, paused or just ended: asked every ``WARM_INTERVAL_S``, before the warm ones.
#: (Asked every tick for 30 min, ended sessions competed with playing ones: in the benchmark's
#: world, ~170 sessions of ~12 tracks of ~200 s, one ends every ~14 s, so ~130 of the ~300
#: listeners who scrobbled within 30 min have stopped. A simulation of that world's polls at
#: 2,000 listeners (benchmarks/poll_plan_simulation.py) gave a poll delay within sessions of
#: p50 147 s / p95 325 s with this split, 167 s / 362 s without it (overall p95 514 s / 503 s:
#: session starts, which wait for the rotation, dominate it); at 7 min instead of 10, a listener
#: whose next scrobble was seen late fell out of the tier: p95 642 s.)
HOT_WINDOW_S = 30 * 60
#: Listeners whose newest scrobble is this recent (but not hot) are asked every ``WARM_INTERVAL_S``.
RECENT_WINDOW_S = 2 * 3600
WARM_INTERVAL_S = 300
#: Every tracked listener is asked at least once per rotation cycle of this length (when the
#: request budget allows: the rotation's share is taken before any priority listener's). The
#: first scrobble of a session is seen only when the rotation reaches its listener: at 15 min
#: (before), session starts took 891-986 s to reach the marts at 2,000 listeners. With the
#: sensor's ~188 requests every ~45 s, a 500-s cycle takes ~90 % of them (2,000 users: 168 a
#: 42-s tick) and leaves the rest to the listeners in a session; the simulation
#: (benchmarks/poll_plan_simulation.py, 2,000 listeners) gives poll delays p95 350 s overall,
#: 535 s for session starts, 335 s within sessions (at 540 s: 346 / 594 / 283 s; at 600 s:
#: 338 / 587 / 281 s; a rotation of everyone at the whole budget: 534 s for all).
MAX_POLL_INTERVAL_S = 500
#: When the rotation is behind, at most this share of a tick's budget is kept from its catch-up
#: for the recent listeners (its steady pace is always taken).
PRIORITY_RESERVE_SHARE = 0.15
DAY_S = 86_400


@dataclass
class PollState:
    """What the sensor remembers between ticks (its cursor), kept small: cursors are stored with
    every tick.

    - ``seen``/``polled``: for listeners who scrobbled within ``RECENT_WINDOW_S`` (and listeners
      given a window explicitly, e.g. by a version-1 cursor), the newest scrobble handled and when
      they were last asked. Everyone else is absent: their next window is the last
      ``RECENT_WINDOW_S``, which starts after their newest handled scrobble (that is why an entry
      is dropped only once it is older than the window, when the listener is asked) and overlaps
      their previous ask, since the rotation asks everyone within ``MAX_POLL_INTERVAL_S``.
    - ``rotation``/``cycle_start``/``cycles``: the position of the rotation in the tracked-user
      list, when its cycle began, whether a cycle completed; ``asked``/``asked_before``: when
      each stretch of positions was asked in this cycle and the previous one (``[(end, time)]``,
      a pair per tick), which sets each position's deadline (asked again within the maximum
      interval); during the first cycle (during the first cycle an absent
      listener is seen for the first time and asked for the open day since 00:00 UTC, kept as
      ``first_sight``: no later window of an absent listener starts before it, as what lies
      before it was never read by the sensor and is already loaded or the schedule's).
    - ``pending``: loads found while the day-partitioned marts were being restated, requested
      at the next tick that may (day -> (newest scrobble seen, users)).
    """

    seen: dict[str, int] = field(default_factory=dict)
    polled: dict[str, int] = field(default_factory=dict)
    rotation: int = 0
    cycle_start: int | None = None
    cycles: int = 0
    pending: dict[str, PendingLoad] = field(default_factory=dict)
    first_sight: int | None = None
    asked: list[tuple[int, int]] = field(default_factory=list)
    asked_before: list[tuple[int, int]] = field(default_factory=list)

    def deadline(self, position: int, n: int, now: int, max_interval_s: int) -> float:
        """When the rotation must have asked the user at ``position`` (of ``n``) this cycle: the
        maximum interval after the previous cycle asked it, or for a first cycle on a linear
        schedule from the cycle's start."""
        for end, at in self.asked_before:
            if position < end:
                return at + max_interval_s
        start = self.cycle_start if self.cycle_start is not None and self.rotation < n else now
        return start + max_interval_s * (position + 1) / n

    def window_start(self, user: str, now: int) -> int:
        """``from`` of ``user``'s next request."""
        if user in self.seen:
            return self.seen[user] + 1
        first_sight = self.first_sight if self.first_sight is not None else now // DAY_S * DAY_S
        if self.cycles == 0:  # first sight: the open day
            return first_sight
        return max(now - RECENT_WINDOW_S, first_sight)


def load_state(text: str | None) -> PollState:
    """The sensor cursor; a version-1 cursor ``{"user": last_uts}`` is taken over (its users keep
    their windows); an unreadable one is an error, not a reset."""
    if not text:
        return PollState()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the Last.fm sensor cursor is not JSON ({exc}); reset it in the UI") from None
    if isinstance(data, dict) and data.get("v") == 2:
        try:
            users = {str(u): (int(v[0]), int(v[1])) for u, v in data.get("u", {}).items()}
            # [marker, users] (before the landing: every user fetched again) or
            # [marker, users, users fetched again, newest landed file]
            pending = {
                str(d): PendingLoad(int(v[0]), [str(x) for x in v[1]],
                                    [str(x) for x in (v[2] if len(v) > 2 else v[1])], str(v[3]) if len(v) > 3 else "")
                for d, v in data.get("p", {}).items()
            }  # fmt: skip
            return PollState(
                seen={u: v[0] for u, v in users.items()},
                polled={u: v[1] for u, v in users.items()},
                rotation=int(data.get("r", 0)),
                cycle_start=None if data.get("c") is None else int(data["c"]),
                cycles=int(data.get("n", 0)),
                pending=pending,
                first_sight=None if data.get("s") is None else int(data["s"]),
                asked=[(int(e), int(t)) for e, t in data.get("a", [])],
                asked_before=[(int(e), int(t)) for e, t in data.get("b", [])],
            )
        except (TypeError, ValueError, IndexError, AttributeError):
            raise ValueError("the Last.fm sensor cursor (version 2) is malformed; reset it in the UI") from None
    return PollState(seen=load_cursor(text))


def dump_state(state: PollState) -> str:
    """The compact JSON cursor (v, r, c, n, s, u: {user: [seen, polled]}, p: {day: [marker, users]})."""
    data: dict[str, Any] = {"v": 2, "r": state.rotation, "c": state.cycle_start, "n": min(state.cycles, 1)}
    data["s"] = state.first_sight
    data["a"] = [list(x) for x in state.asked]
    data["b"] = [list(x) for x in state.asked_before]
    data["u"] = {u: [state.seen[u], state.polled.get(u, 0)] for u in sorted(state.seen)}
    if state.pending:
        data["p"] = {d: [p.marker, sorted(p.users), sorted(p.refetch), p.landed_until]
                     for d, p in sorted(state.pending.items())}  # fmt: skip
    return json.dumps(data, separators=(",", ":"))


@dataclass
class TickPlan:
    """Who is asked at a tick, in order: the rotation's share interleaved with the due listeners
    by priority, then more of the rotation with what is left of the budget (past the end of the
    list, the first users again)."""

    users: list[str]
    rotation_users: list[str]  # in rotation order; the rotation moves past those asked
    priority_users: list[str]
    rotation_needed: int  # the rotation's share this tick (to finish the cycle in time)


def priority_interval(seen_uts: int, now: int) -> int | None:
    """How often a listener whose newest scrobble is ``seen_uts`` is asked outside the rotation
    (0: every tick), or None: the rotation only."""
    age = now - seen_uts
    if age < SESSION_GAP_S:
        return 0
    if age < RECENT_WINDOW_S:
        return WARM_INTERVAL_S
    return None


def plan_tick(
    users: Sequence[str],
    state: PollState,
    now: int,
    budget: int,
    *,
    tick_interval_s: int,
    max_interval_s: int = MAX_POLL_INTERVAL_S,
) -> TickPlan:
    """The listeners to ask at ``now`` with at most ``budget`` requests.

    1. The rotation's share: the next listeners in ``users`` order whose deadline (``max_interval_s``
       after the previous cycle asked them; a linear schedule in a first cycle) falls before the
       next tick (a tick that was skipped or cut short makes the next one ask more), and at least
       the steady pace of a cycle per ``max_interval_s``. Taken first; a catch-up beyond the steady
       pace leaves ``PRIORITY_RESERVE_SHARE`` of the budget to the recent listeners (when there
       are that many), so a rotation that fell behind catches up over a few ticks instead of
       starving the listeners in a session.
    2. The due listeners by priority: those who scrobbled within ``SESSION_GAP_S`` (at least
       ``HOT_MIN_GAP_S`` after that scrobble, not asked in the past half tick interval: still
       playing), then those within ``HOT_WINDOW_S`` (paused or just stopped), then within
       ``RECENT_WINDOW_S``, both not asked for ``WARM_INTERVAL_S``; most overdue first.
    3. Whatever budget is left moves the rotation on further (to the end of the list, then asks
       the first users again without moving the rotation).
    """
    if budget <= 0 or not users:
        return TickPlan([], [], [], 0)
    n = len(users)
    start = 0 if state.rotation >= n else state.rotation
    tracked = set(users)
    hot_or_warm = [u for u, seen in state.seen.items() if u in tracked and priority_interval(seen, now) is not None]
    # A rotation behind its deadlines catches up, but leaves the listeners in a session a share
    # of the tick (without it, a rotation that fell behind took every tick and listens within
    # sessions waited for it: benchmark, 2,000 listeners).
    reserve = min(len(hot_or_warm), int(budget * PRIORITY_RESERVE_SHARE))
    # At least the steady pace (a cycle per max_interval_s), so asks bunched by a catch-up spread out.
    steady = min(budget, n - start, -(-n * tick_interval_s // max_interval_s))
    needed = steady
    while start + needed < n and needed < max(steady, budget - reserve):
        if state.deadline(start + needed, n, now, max_interval_s) >= now + tick_interval_s * 5 // 4:
            break
        needed += 1
    rotation = list(users[start : start + needed])
    chosen = set(rotation)

    due: list[tuple[float, int, str]] = []
    for user, seen in state.seen.items():
        if user in chosen or user not in tracked:
            continue
        interval = priority_interval(seen, now)
        if interval is None:
            continue
        since_asked = now - state.polled.get(user, 0)
        if interval == 0:
            if now - seen < HOT_MIN_GAP_S or since_asked < max(tick_interval_s // 2, PLAYING_INTERVAL_S):
                continue
            score = 1000 + since_asked / tick_interval_s  # playing: before the paused and warm ones
        else:
            if since_asked < interval - tick_interval_s // 2:
                continue
            score = since_asked / interval + (500 if now - seen < HOT_WINDOW_S else 0)
        due.append((-score, -seen, user))
    due.sort()
    priority = [user for _score, _seen, user in due[: budget - len(rotation)]]

    extra = budget - len(rotation) - len(priority)
    bonus: list[str] = []
    if extra > 0:
        taken = set(priority)
        rotation += [u for u in users[start + len(rotation) :] if u not in taken][:extra]
        # Past the end of the list, the spare budget asks the first users again (the rotation
        # itself starts its next cycle at the next tick).
        extra = budget - len(rotation) - len(priority)
        taken |= set(rotation)
        bonus = [u for u in users[:start] if u not in taken][: max(0, extra)]
    ordered: list[str] = []
    head = rotation[:needed]
    for i in range(max(len(head), len(priority))):
        if i < len(head):
            ordered.append(head[i])
        if i < len(priority):
            ordered.append(priority[i])
    ordered += rotation[needed:] + bonus
    return TickPlan(ordered, rotation, priority, needed)


def advance_state(state: PollState, users: Sequence[str], plan: TickPlan, result: PollResult, now: int) -> PollState:
    """The state after a tick's poll: the listeners asked keep their newest scrobble and ask
    time, or are dropped when that scrobble is older than ``RECENT_WINDOW_S``; the rotation moves
    past the rotation listeners asked, in order (those a poll stopped early did not reach are
    next); a listener no longer tracked is forgotten."""
    n = len(users)
    new_cycle = state.rotation >= n or state.cycle_start is None
    new = PollState(
        seen=dict(state.seen), polled=dict(state.polled), rotation=0 if state.rotation >= n else state.rotation,
        cycle_start=now if new_cycle else state.cycle_start, cycles=state.cycles, pending=dict(state.pending),
        first_sight=state.first_sight if state.first_sight is not None else now // DAY_S * DAY_S,
        asked=[] if state.rotation >= n else list(state.asked), asked_before=list(state.asked_before),
    )  # fmt: skip
    not_asked = set(result.not_asked)
    unanswered = not_asked | set(result.failed) | set(result.skipped)
    found = {p.user for p in result.polls if p.newest_uts is not None or p.days}
    for user in plan.users:
        if user in unanswered:
            continue
        # A listener without an entry gets one only for a scrobble found (not for an empty window).
        if user in result.cursor and (user in state.seen or user in found):
            new.seen[user] = result.cursor[user]
        if user in new.seen and new.seen[user] < now - RECENT_WINDOW_S:
            del new.seen[user]  # its next window (the last RECENT_WINDOW_S) starts after it
            new.polled.pop(user, None)
        elif user in new.seen:
            new.polled[user] = now
    tracked = set(users)
    for user in [u for u in new.seen if u not in tracked]:
        del new.seen[user]
        new.polled.pop(user, None)
    moved = 0
    for user in plan.rotation_users:
        if user in not_asked:
            break
        moved += 1
    new.rotation += moved
    if moved:
        new.asked.append((new.rotation, now))
    if new.rotation >= n:
        new.rotation, new.cycle_start, new.cycles = 0, None, new.cycles + 1
        new.asked_before, new.asked = new.asked, []
    return new


class PendingLoad(NamedTuple):
    """A day's load to request: the newest scrobble seen, the users with new scrobbles, those of
    them the run fetches again (their new scrobbles span more than the page the poll read), and
    the newest file the sensor landed for the day ("" for none)."""

    marker: int
    users: list[str]
    refetch: list[str]
    landed_until: str


def merge_pending(
    pending: Mapping[str, PendingLoad], result: PollResult, landed: Mapping[date, str] | None = None
) -> dict[str, PendingLoad]:
    """``pending`` plus this poll's loads (``landed``: the file landed per day this tick)."""
    merged = dict(pending)
    users_by_day, refetch_by_day = result.users_by_day, result.refetch_by_day
    landed = landed or {}
    for day, marker in result.affected_days.items():
        key = day.isoformat()
        old = merged.get(key, PendingLoad(0, [], [], ""))
        merged[key] = PendingLoad(
            max(old.marker, marker),
            sorted(set(old.users) | users_by_day[day]),
            sorted(set(old.refetch) | refetch_by_day.get(day, set())),
            max(old.landed_until, landed.get(day, "")),
        )
    return merged


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
    #: The answer, when its one page holds the whole window (the load run takes it as landed).
    payload: Mapping[str, Any] | None = None


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
    def landed_by_day(self) -> dict[date, list[LandedWindow]]:
        """Each affected day -> the windows whose scrobbles the poll holds whole (one page), cut
        to that day: the load run takes them from the landing instead of asking Last.fm again."""
        days: dict[date, list[LandedWindow]] = {}
        for poll in self.polls:
            if poll.payload is None or not poll.days:
                continue
            window = LandedWindow(poll.user, poll.time_from, poll.time_to, poll.payload)
            for day, part in split_by_day(window, poll.days).items():
                days.setdefault(day, []).append(part)
        return days

    @property
    def refetch_by_day(self) -> dict[date, set[str]]:
        """Each affected day -> the users whose new scrobbles span more than the page the poll
        read: the load run fetches their whole day."""
        days: dict[date, set[str]] = {}
        for poll in self.polls:
            if poll.payload is None:
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
    starts: Mapping[str, int] | None = None,
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

    ``starts`` gives the window's start (``from``) of users without a cursor (the sensor's poll
    plan: the open day at first sight, else the last ``RECENT_WINDOW_S``); without it, such a
    user is asked for the last ``initial_lookback_s``.
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
        if user in cursor:
            time_from = cursor[user] + 1
        elif starts is not None and user in starts:
            time_from = starts[user]
        else:
            time_from = now - initial_lookback_s
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
        if not poll.more_pages and parsed.item_count >= paging.total:
            poll.payload = payload  # the whole window: nothing to fetch again
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
