"""``SyntheticLastfmSource``: the Last.fm client's methods, answered from the synthetic world.

A :class:`~music_platform.sources.lastfm.protocol.LastfmSource`, like the real Last.fm client,
so raw assets take either.
Time windows follow the real API: ``from`` inclusive, ``to`` exclusive, UTC unix seconds,
newest first; nothing later than "now" is ever returned (today's listens appear as the day
goes on, which is what a near-real-time sensor expects).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Container, Iterator, Sequence

import numpy as np
import pandas as pd

from music_platform.sources.lastfm.errors import LastfmNotFoundError, lastfm_error
from music_platform.sources.lastfm.parsing import parse_recent_tracks
from music_platform.sources.lastfm.protocol import RecentTracksFetch, UserWindow, day_bounds, days_between
from music_platform.sources.synthetic import payloads
from music_platform.sources.synthetic.world import DEFAULT_USERS, SyntheticWorld, get_world

MAX_LIMIT = 1000  # Last.fm's bounds for ``limit`` (1-1000)


def _check_paging(limit: int, page: int = 1) -> None:
    # The same check, and the same exception, as the real client makes before calling Last.fm.
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT} (Last.fm's bounds), got {limit}")
    if page < 1:
        raise ValueError(f"page must be 1 or more, got {page}")


class SyntheticLastfmSource:
    """A deterministic Last.fm for ``n_users`` synthetic listeners (same seed, same answers).

    Errors are those of the real client: ``ValueError`` for a bad ``limit``/``page`` (checked
    before any call), the typed ``LastfmNotFoundError`` (error 6, ``skippable``) for an
    unknown user or artist. ``now`` returns the current unix time (injectable for tests);
    windows end at ``min(time_to, now)`` like the real client's pinned walks.
    ``now_playing`` adds the real API's extra now-playing entry (no date, not counted in
    ``total``) to page 1 of every recent-tracks answer, to exercise parsers on that quirk.
    """

    source_name = "synthetic"
    #: A landing batch of a week of days: a warehouse write costs about as much fixed as a day's
    #: rows, so a backfill of hundreds of days writes a seventh as often (~175k rows at 5,000 users).
    days_per_batch = 7

    def __init__(
        self,
        n_users: int = DEFAULT_USERS,
        seed: int = 42,
        *,
        n_artists: int | None = None,
        now: Callable[[], float] = time.time,
        now_playing: bool = False,
    ) -> None:
        self.seed = seed
        self.world: SyntheticWorld = get_world(seed, n_users, n_artists)
        self._now = now
        self.now_playing = now_playing

    # -- catalogue and users ------------------------------------------------------------------
    @property
    def users(self) -> list[str]:
        return list(self.world.listeners.names)

    @property
    def artists(self) -> list[str]:
        return list(self.world.catalogue.artist_names)

    @property
    def tags(self) -> list[str]:
        """The genre tags (also the Kaggle ``track_genre`` values of the synthetic CSV)."""
        return list(self.world.catalogue.genres)

    def _user(self, user: str, operation: str) -> int:
        index = self.world.user_index.get(user)
        if index is None:  # Last.fm usernames are case-insensitive
            folded = {name.casefold(): i for name, i in self.world.user_index.items()}
            index = folded.get(user.casefold())
        if index is None:
            raise lastfm_error(6, "User not found", operation=operation, status=404, context={"user": user})
        return index

    # -- user.getRecentTracks --------------------------------------------------------------------
    def _user_window(self, user: int, time_from: int, time_to: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's scrobbles in [time_from, time_to), newest first."""
        time_to = min(int(time_to), self._cutoff())
        time_from = max(int(time_from), int(self.world.listeners.registered_uts[user]))
        if time_from >= time_to:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        first = dt.datetime.fromtimestamp(time_from, dt.UTC).date()
        last = dt.datetime.fromtimestamp(time_to - 1, dt.UTC).date()
        uts_parts, track_parts = [], []
        for ordinal in range(last.toordinal(), first.toordinal() - 1, -1):
            uts, tracks = self.world.listens_for_day(dt.date.fromordinal(ordinal)).for_user(user)
            keep = (uts >= time_from) & (uts < time_to)
            uts_parts.append(uts[keep][::-1])
            track_parts.append(tracks[keep][::-1])
        return np.concatenate(uts_parts), np.concatenate(track_parts)

    def _cutoff(self) -> int:
        """Exclusive upper bound of what has been scrobbled by now."""
        return int(self._now())

    def _now_playing_track(self, user: int) -> int | None:
        return int(self.world.listeners.favourite_tracks[user, 0]) if self.now_playing else None

    def get_recent_tracks_page(
        self, user: str, page: int = 1, limit: int = 200, time_from: int | None = None, time_to: int | None = None
    ) -> dict:
        """One page of user.getRecentTracks; past the last page the track list is empty."""
        _check_paging(limit, page)
        index = self._user(user, "user.getRecentTracks")
        uts, tracks = self._user_window(
            index, 0 if time_from is None else time_from, self._cutoff() if time_to is None else time_to
        )
        return payloads.recent_tracks_page(
            self.world, self.world.listeners.names[index], uts, tracks, page, limit, self._now_playing_track(index)
        )

    def get_recent_tracks_pages(self, user: str, time_from: int, time_to: int, limit: int = 200) -> Iterator[dict]:
        """Every page of the user's scrobbles in [time_from, time_to), as the real client walks them:
        ``to`` pinned to ``min(time_to, now)``; one page with ``"track": []`` when the window holds
        no scrobble; no page at all when the pinned window is empty (it starts now or later)."""
        _check_paging(limit)
        if time_to <= time_from:
            raise ValueError(f"empty window: time_from {time_from} must be before time_to {time_to}")
        index = self._user(user, "user.getRecentTracks")
        if min(int(time_to), self._cutoff()) <= time_from:
            return
        name = self.world.listeners.names[index]
        uts, tracks = self._user_window(index, time_from, time_to)
        now_playing = self._now_playing_track(index)
        pages = max(1, -(-len(uts) // limit))
        for page in range(1, pages + 1):
            yield payloads.recent_tracks_page(self.world, name, uts, tracks, page, limit, now_playing)

    def get_recent_tracks_day(self, day: dt.date, limit: int = 200) -> Iterator[tuple[str, dict]]:
        """(user, page) for every user with scrobbles on the UTC ``day``, generated for all at once."""
        _check_paging(limit)
        names = self.world.listeners.names
        for index, _count, pages in self._day_pages(day, limit, self._cutoff()):
            for page in pages:
                yield names[index], page

    def recent_tracks_for_days(
        self, users: Sequence[str], first: dt.date, last: dt.date, limit: int = 200
    ) -> Iterator[UserWindow]:
        """One window per user and day (each day drawn for every user at once: the speed of the
        synthetic source at 10M listens); users without scrobbles on a day have no window that day,
        an unknown user has the real API's ``LastfmNotFoundError`` as outcome."""
        _check_paging(limit)
        wanted: dict[int, str] = {}
        for user in users:
            try:
                wanted[self._user(user, "user.getRecentTracks")] = user
            except LastfmNotFoundError as error:
                yield user, error
        cutoff = self._cutoff()
        for day in days_between(first, last):
            start, end = day_bounds(day)
            window = (start, min(end, cutoff))
            if window[0] >= window[1]:
                continue
            for index, count, pages in self._day_pages(day, limit, cutoff, wanted):
                user = wanted[index]
                fetch = RecentTracksFetch(user=user, time_from=window[0], time_to=window[1], total_reported=count)
                for page in pages:
                    fetch.pages.append(page)
                    fetch.result.extend(parse_recent_tracks(page, user, window=window))
                yield user, fetch

    def _day_pages(
        self, day: dt.date, limit: int, cutoff: int, only: Container[int] | None = None
    ) -> Iterator[tuple[int, int, Iterator[dict]]]:
        """(user index, scrobbles, pages) of each user (of ``only``, if given) with scrobbles on
        ``day`` before ``cutoff`` (one "now" for the whole call, so pages and window agree)."""
        listens = self.world.listens_for_day(day)
        names = self.world.listeners.names
        offsets = listens.user_offsets
        for user in np.flatnonzero(np.diff(offsets)):
            if only is not None and user not in only:
                continue
            lo, hi = offsets[user], offsets[user + 1]
            uts, tracks = listens.uts[lo:hi], listens.track[lo:hi]
            if uts[-1] >= cutoff:  # today: only what has been played by now
                keep = uts < cutoff
                uts, tracks = uts[keep], tracks[keep]
                if not len(uts):
                    continue
            uts, tracks = uts[::-1], tracks[::-1]
            now_playing = self._now_playing_track(int(user))
            name = names[user]
            pages = (
                payloads.recent_tracks_page(self.world, name, uts, tracks, page, limit, now_playing)
                for page in range(1, -(-len(uts) // limit) + 1)
            )
            yield int(user), len(uts), pages

    def expected_scrobbles(self, day: dt.date) -> int:
        """Scrobbles of the UTC ``day`` over all users (what ``get_recent_tracks_day`` pages hold)."""
        listens = self.world.listens_for_day(day)
        return int(np.count_nonzero(listens.uts < self._cutoff()))

    def scrobbles_frame(self, day: dt.date) -> pd.DataFrame:
        """The day's scrobbles as the Last.fm parser would make rows of the day's pages
        (raw.lastfm_scrobbles columns without the audit ones), without building the JSON."""
        frame = payloads.scrobble_rows(self.world, day)
        return frame[frame["played_at_uts"] < self._cutoff()].reset_index(drop=True)

    # -- other methods -----------------------------------------------------------------------------
    def get_user_info(self, user: str) -> dict:
        return payloads.user_info(self.world, self._user(user, "user.getInfo"))

    def get_artist_top_tags(self, artist: str, mbid: str | None = None, autocorrect: bool = False) -> dict:
        """artist.getTopTags by name (case-insensitive, as Last.fm) or, when given, by mbid."""
        index = self.world.artist_id_by_mbid(mbid) if mbid else None
        if index is None:
            index = self.world.artist_id(artist)
        if index is None:
            folded = {n.casefold(): i for i, n in enumerate(self.world.catalogue.artist_names)}
            index = folded.get(artist.casefold())
        if index is None:
            raise lastfm_error(
                6,
                "The artist you supplied could not be found",
                operation="artist.getTopTags",
                context={"artist": artist},
            )
        return payloads.artist_top_tags(self.world, index)

    def get_tag_top_tracks(self, tag: str, limit: int = 50, page: int = 1) -> dict:
        _check_paging(limit, page)
        return payloads.tag_top_tracks(self.world, tag, limit, page)

    def get_chart_top_tracks(self, limit: int = 50, page: int = 1) -> dict:
        _check_paging(limit, page)
        return payloads.chart_top_tracks(self.world, limit, page)
