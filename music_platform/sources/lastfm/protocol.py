"""What every Last.fm source offers: the real API client and the synthetic source alike.

``LastfmSource`` is a ``typing.Protocol``: ``LastfmClient`` and ``SyntheticLastfmSource``
satisfy it structurally (a type checker verifies it; nothing branches on the class), so the
landing, the raw assets and the collectors have one code path for both.

Recent tracks are read per *window*: ``recent_tracks_for_days`` yields, for the asked users and
days, each user's scrobbles as :class:`RecentTracksFetch` (its raw pages, parsed, with the
count the source reported), or the ``skippable`` error that concerns that user alone. How a
source cuts the days into windows is its own affair, and it says how many days one landing
batch should span (``days_per_batch``):

- the real API walks each user once over the whole run of days (one walk costs far fewer
  requests than one per user-day at 5 requests/s);
- the synthetic source draws a whole day for every user at once (its speed at 10M listens),
  so it yields one window per user and day.

Free of Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from music_platform.sources.errors import SourceError
from music_platform.sources.lastfm.parsing import ParseResult
from music_platform.sources.schemas import LASTFM_SCROBBLES


def day_bounds(day: date) -> tuple[int, int]:
    """``[day, day+1)`` in Unix seconds, UTC (Last.fm's ``from`` inclusive, ``to`` exclusive)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def days_between(first: date, last: date) -> list[date]:
    """Every day of ``[first, last]``."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass
class RecentTracksFetch:
    """Every page of one user's window, parsed, with the counts that prove completeness."""

    user: str
    time_from: int
    time_to: int
    pages: list[dict[str, Any]] = field(default_factory=list)
    result: ParseResult = field(default_factory=lambda: ParseResult(LASTFM_SCROBBLES))
    total_reported: int = 0
    restarts: int = 0

    @property
    def complete(self) -> bool:
        """Rows + rejects account for every scrobble the source counted in the window."""
        return self.result.item_count == self.total_reported


#: One user's outcome: the window read, or the ``skippable`` error about that user.
UserWindow = tuple[str, RecentTracksFetch | SourceError]


class LastfmSource(Protocol):
    """The Last.fm methods the platform calls; payloads are the API's JSON, unparsed."""

    #: The ``source`` recorded on every raw row: 'lastfm' or 'synthetic'.
    source_name: str
    #: Consecutive days one landing batch spans (memory holds one batch; see ``sources.landing``).
    days_per_batch: int

    def recent_tracks_for_days(self, users: Sequence[str], first: date, last: date) -> Iterator[UserWindow]:
        """The scrobbles of ``users`` on the UTC days ``[first, last]``, window by window.

        Non-skippable errors (an invalid key, a transient failure that outlived the retries)
        propagate: the caller must not write the days half-fetched.
        """
        ...

    def get_recent_tracks_page(
        self, user: str, page: int = 1, limit: int = 200, time_from: int | None = None, time_to: int | None = None
    ) -> dict[str, Any]: ...

    def get_recent_tracks_pages(self, user: str, time_from: int, time_to: int, limit: int = 200) -> Iterator[dict]: ...

    def get_user_info(self, user: str) -> dict[str, Any]: ...

    def get_tag_top_tracks(self, tag: str, limit: int = 50, page: int = 1) -> dict[str, Any]: ...

    def get_chart_top_tracks(self, limit: int = 50, page: int = 1) -> dict[str, Any]: ...

    def get_artist_top_tags(
        self, artist: str, mbid: str | None = None, autocorrect: bool = False
    ) -> dict[str, Any]: ...


def fetch_each_user(
    fetch: Callable[[str, int, int], RecentTracksFetch], users: Sequence[str], time_from: int, time_to: int
) -> Iterator[UserWindow]:
    """``(user, fetch(user, time_from, time_to))`` for each user; a ``skippable`` error becomes that
    user's outcome, any other propagates."""
    for user in users:
        try:
            outcome: RecentTracksFetch | SourceError = fetch(user, time_from, time_to)
        except SourceError as error:
            if not error.skippable:
                raise
            outcome = error
        yield user, outcome
