"""The project's Last.fm parsers read synthetic payloads exactly as they read real ones."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from music_platform.sources.lastfm import parsing
from music_platform.sources.synthetic import SyntheticLastfmSource, day_bounds

DAY = dt.date(2025, 5, 10)


@pytest.fixture(scope="module")
def source() -> SyntheticLastfmSource:
    return SyntheticLastfmSource(n_users=300, seed=42, now_playing=True)


def test_recent_tracks_pages_parse_without_rejects_and_match_the_fast_rows(source):
    window = day_bounds(DAY)
    rows, now_playing = [], 0
    for user, page in source.get_recent_tracks_day(DAY):
        result = parsing.parse_recent_tracks(page, user, window=window)
        assert result.rejects == []
        paging = parsing.recent_tracks_paging(page)
        assert paging.total == int(page["recenttracks"]["@attr"]["total"])
        rows.extend(result.rows)
        now_playing += result.now_playing_dropped
    assert len(rows) == source.expected_scrobbles(DAY) and now_playing > 0

    parsed = pd.DataFrame(rows)
    fast = source.scrobbles_frame(DAY)
    assert list(fast.columns) == parsing.data_columns(parsing.LASTFM_SCROBBLES)
    key = ["user_name", "played_at_uts"]
    parsed = parsed.sort_values(key).reset_index(drop=True)
    fast = fast.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(fast.astype(object), parsed[fast.columns].astype(object), check_dtype=False)


def test_every_other_payload_parses_without_rejects(source):
    for user in source.users[:50]:
        result = parsing.parse_user_info(source.get_user_info(user), user)
        assert result.rejects == [] and len(result.rows) == 1
    for artist in source.artists[:200]:
        result = parsing.parse_artist_top_tags(source.get_artist_top_tags(artist), artist)
        assert result.rejects == [] and result.rows
    for tag in source.tags:
        result = parsing.parse_tag_top_tracks(source.get_tag_top_tracks(tag, limit=50), tag)
        assert result.rejects == [] and len(result.rows) == 50
    result = parsing.parse_chart_top_tracks(source.get_chart_top_tracks(limit=50, page=2))
    assert result.rejects == [] and [r["chart_rank"] for r in result.rows] == list(range(51, 101))
