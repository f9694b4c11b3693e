"""Parser tests on real recorded Last.fm responses and on the quirks the API is known for."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pytest

from music_platform.sources.errors import (
    InvalidCredentialsError,
    LastfmInvalidApiKeyError,
    LastfmInvalidRequestError,
    LastfmNotFoundError,
    LastfmPrivateDataError,
    LastfmRateLimitError,
    LastfmTransientError,
    NotFoundError,
    ResponseFormatError,
)
from music_platform.sources.lastfm.errors import find_api_error, lastfm_error
from music_platform.sources.lastfm.parsing import (
    artist_names,
    as_list,
    data_columns,
    parse_artist_top_tags,
    parse_chart_top_tracks,
    parse_recent_tracks,
    parse_tag_top_tracks,
    parse_user_info,
    raise_for_api_error,
    recent_tracks_paging,
    rejects_frame,
    to_raw_frame,
)
from music_platform.sources.schemas import (
    LASTFM_ARTIST_TAGS,
    LASTFM_CHART_TOP_TRACKS,
    LASTFM_SCROBBLES,
    LASTFM_TAG_TOP_TRACKS,
    LASTFM_USERS,
)
from music_platform_tests.conftest import require_shared_data

RECORDED = "api-fixtures/lastfm-json-recorded/user.getRecentTracks.limit200.page1.json"
SWIFT = "api-fixtures/lastfm-json-LastFM.swift"


def _load(relative: str) -> dict:
    return json.loads(require_shared_data(relative).read_text(encoding="utf-8"))


def _track(name="Song", artist="Band", uts="1700000000", **extra) -> dict:
    item = {
        "artist": {"mbid": "", "#text": artist},
        "mbid": "",
        "album": {"mbid": "", "#text": ""},
        "name": name,
        "url": "https://www.last.fm/music/Band/_/Song",
        "streamable": "0",
    }
    if uts is not None:
        item["date"] = {"uts": uts, "#text": "whatever"}
    item.update(extra)
    return item


def _recent(tracks, total=None) -> dict:
    count = len(tracks) if isinstance(tracks, list) else 1
    return {
        "recenttracks": {
            "track": tracks,
            "@attr": {"user": "u", "page": "1", "perPage": "200", "totalPages": "1", "total": str(total or count)},
        }
    }


# -- the real recorded page -------------------------------------------------------------------


def test_recorded_page_parses_all_200_tracks_with_types():
    payload = _load(RECORDED)
    result = parse_recent_tracks(payload, "IvanMalison")
    assert len(result.rows) == 200
    assert result.rejects == []
    assert result.now_playing_dropped == 0
    assert recent_tracks_paging(payload) == (1, 927, 185212)

    items = payload["recenttracks"]["track"]
    for item, row in zip(items, result.rows, strict=True):
        assert set(row) == set(data_columns(LASTFM_SCROBBLES))
        uts = int(item["date"]["uts"])
        assert row["played_at_uts"] == uts and isinstance(row["played_at_uts"], int)
        assert row["played_at"] == datetime.fromtimestamp(uts, tz=UTC).replace(tzinfo=None)
        assert row["scrobble_date"] == datetime.fromtimestamp(uts, tz=UTC).date()
        assert row["track_name"] == item["name"]
        assert row["artist_name"] == item["artist"]["#text"]
        # Empty-string mbids become None, real ones are kept.
        assert row["track_mbid"] == (item["mbid"] or None)
        assert row["artist_mbid"] == (item["artist"]["mbid"] or None)
        assert row["album_name"] == (item["album"]["#text"] or None)


def test_recorded_page_mbidless_rows_keep_their_names():
    result = parse_recent_tracks(_load(RECORDED), "IvanMalison")
    without_track_mbid = [r for r in result.rows if r["track_mbid"] is None]
    without_artist_mbid = [r for r in result.rows if r["artist_mbid"] is None]
    assert len(without_track_mbid) == 86
    assert len(without_artist_mbid) == 57
    assert all(r["track_name"] and r["artist_name"] for r in without_track_mbid + without_artist_mbid)


def test_recorded_page_frame_has_contract_columns_and_types():
    result = parse_recent_tracks(_load(RECORDED), "IvanMalison")
    frame = result.frame(source="lastfm", ingested_at=datetime(2026, 4, 13, tzinfo=UTC))
    assert list(frame.columns) == LASTFM_SCROBBLES.column_names
    # Arrow-backed columns of the contract's SQL types (the loaders hand the buffers on as they are).
    types = {name: dtype.pyarrow_dtype for name, dtype in frame.dtypes.items()}
    assert types["played_at_uts"] == pa.int64() and types["user_name"] == pa.string()
    assert types["played_at"] == pa.timestamp("us")  # naive UTC
    assert types["scrobble_date"] == pa.date32() and isinstance(frame["scrobble_date"].iloc[0], date)
    assert frame["track_mbid"].isna().sum() == len([r for r in result.rows if r["track_mbid"] is None])
    assert (frame["source"] == "lastfm").all()
    assert frame["ingested_at"].iloc[0] == pd.Timestamp("2026-04-13")
    assert frame.duplicated(list(LASTFM_SCROBBLES.key)).sum() == 0
    without_audit = result.frame()
    assert list(without_audit.columns) == data_columns(LASTFM_SCROBBLES)


# -- LastFM.swift fixtures (real shapes) ----------------------------------------------------------


def test_swift_recent_tracks_drop_now_playing_and_count_it():
    payload = _load(f"{SWIFT}/user.getRecentTracks.json")
    result = parse_recent_tracks(payload, "Duhnnie")
    assert result.now_playing_dropped == 1
    assert [r["track_name"] for r in result.rows] == ["Mountains", "What We Came Here For"]
    assert result.rows[0]["played_at_uts"] == 1697381465
    assert result.item_count == 2  # equals perPage: now-playing is extra


def test_swift_extended_recent_tracks_artist_shape():
    result = parse_recent_tracks(_load(f"{SWIFT}/user.getExtendedRecentTracks.json"), "Duhnnie")
    assert result.rejects == []
    assert result.rows[0]["artist_name"] == "Nine Inch Nails"
    assert result.rows[0]["artist_mbid"] is None


def test_swift_tag_and_chart_top_tracks():
    tag = parse_tag_top_tracks(_load(f"{SWIFT}/tag.getTopTracks.json"), "pop punk")
    assert [r["track_rank"] for r in tag.rows] == [1, 2]
    assert tag.rows[0]["duration_s"] == 400
    assert all(set(r) == set(data_columns(LASTFM_TAG_TOP_TRACKS)) for r in tag.rows)

    chart = parse_chart_top_tracks(_load(f"{SWIFT}/chart.getTopTracks.json"))
    assert [r["chart_rank"] for r in chart.rows] == [1, 2, 3, 4, 5]
    assert chart.rows[0]["playcount"] == 100 and chart.rows[0]["listeners"] == 11
    assert chart.rows[0]["duration_s"] is None  # "0" means unknown
    assert chart.rows[0]["track_mbid"] is None
    frame = chart.frame(source="lastfm")
    assert list(frame.columns) == LASTFM_CHART_TOP_TRACKS.column_names


def test_swift_top_tags_shape_parses_as_artist_tags():
    result = parse_artist_top_tags(_load(f"{SWIFT}/track.getTopTags.json"), "Some Artist")
    assert [(r["tag_name"], r["tag_count"], r["tag_rank"]) for r in result.rows] == [
        ("tag-a", 100, 1),
        ("tag-b", 63, 2),
    ]


@pytest.mark.parametrize(
    ("fixture", "error_type", "code"),
    [
        ("errorInvalidAPIKey.json", LastfmInvalidApiKeyError, 10),
        ("errorInvalidParameters.json", LastfmInvalidRequestError, 6),
    ],
)
def test_swift_error_bodies_raise_typed_errors(fixture, error_type, code):
    payload = _load(f"{SWIFT}/{fixture}")
    assert find_api_error(payload)[0] == code
    with pytest.raises(error_type) as info:
        parse_recent_tracks(payload, "someone")
    assert info.value.code == code


def test_artist_names_from_top_artists_fixture():
    payload = _load(f"{SWIFT}/user.getTopArtists.json")
    names = artist_names(payload, "topartists")
    assert names and names[0] == "Artist 0"


# -- quirks ----------------------------------------------------------------------------------------


def test_single_track_object_instead_of_list():
    result = parse_recent_tracks(_recent(_track(name="Only One")), "u")
    assert [r["track_name"] for r in result.rows] == ["Only One"]


def test_empty_history_shapes():
    for empty in ([], "", None):
        result = parse_recent_tracks(_recent(empty, total=0), "u")
        assert result.rows == [] and result.rejects == []
    assert as_list({"a": 1}) == [{"a": 1}]


def test_now_playing_with_date_is_still_dropped():
    playing = _track(name="Playing", **{"@attr": {"nowplaying": "true"}})
    result = parse_recent_tracks(_recent([playing, _track()]), "u")
    assert result.now_playing_dropped == 1 and len(result.rows) == 1


def test_unparseable_rows_are_rejected_with_reasons_not_dropped():
    items = [
        _track(name=""),
        _track(artist="  "),
        _track(uts=None),
        _track(uts="soon"),
        _track(uts="0"),
        "not an object",
        _track(name="Good"),
    ]
    result = parse_recent_tracks(_recent(items), "u")
    assert [r["track_name"] for r in result.rows] == ["Good"]
    reasons = [r.reason for r in result.rejects]
    assert reasons[0] == "missing track name"
    assert reasons[1] == "missing artist name"
    assert "missing date.uts" in reasons[2]
    assert "not a number" in reasons[3]
    assert "not a positive unix time" in reasons[4]
    assert "not an object" in reasons[5]
    assert [r.position for r in result.rejects] == [0, 1, 2, 3, 4, 5]
    assert result.rejects[0].record == items[0]
    quarantine = rejects_frame(result.rejects, table="lastfm_scrobbles", context={"user_name": "u"})
    assert len(quarantine) == 6 and (quarantine["user_name"] == "u").all()
    assert json.loads(quarantine["record_json"].iloc[0])["name"] == ""


def test_window_guard_rejects_rows_outside_from_to():
    items = [_track(uts="99"), _track(uts="100"), _track(uts="199"), _track(uts="200")]
    result = parse_recent_tracks(_recent(items), "u", window=(100, 200))
    assert [r["played_at_uts"] for r in result.rows] == [100, 199]
    assert len(result.rejects) == 2 and "outside the requested window" in result.rejects[0].reason


def test_numbers_as_numbers_or_strings():
    result = parse_recent_tracks(_recent([_track(uts=1700000000), _track(uts="1700000001")]), "u")
    assert [r["played_at_uts"] for r in result.rows] == [1700000000, 1700000001]


def test_merge_page_results_keeps_positions_distinct():
    first = parse_recent_tracks(_recent([_track(uts=None), _track()]), "u")
    second = parse_recent_tracks(_recent([_track(uts=None)]), "u")
    first.extend(second)
    assert len(first.rows) == 1 and [r.position for r in first.rejects] == [0, 2]


def test_user_info_normalisation():
    payload = {
        "user": {
            "name": "TyphoonsNotABot",
            "realname": "",
            "url": "https://www.last.fm/user/TyphoonsNotABot",
            "country": "None",
            "age": "0",
            "gender": "n",
            "subscriber": "0",
            "playcount": "138223",
            "registered": {"unixtime": "1561177193", "#text": 1561177193},
        }
    }
    (row,) = parse_user_info(payload, "TyphoonsNotABot").rows
    assert set(row) == set(data_columns(LASTFM_USERS))
    assert row["real_name"] is None and row["country"] is None and row["age"] is None
    assert row["subscriber"] is False and row["playcount"] == 138223
    assert row["registered_at"] == datetime(2019, 6, 22, 4, 19, 53)
    frame = to_raw_frame([row], LASTFM_USERS, source="lastfm")
    assert list(frame.columns) == LASTFM_USERS.column_names
    assert frame["subscriber"].dtype == pd.ArrowDtype(pa.bool_()) and not frame["subscriber"].iloc[0]
    assert frame["age"].isna().iloc[0] and frame["playcount"].iloc[0] == 138223


def test_raw_frame_names_the_column_of_a_value_of_the_wrong_type():
    row = {name: None for name in data_columns(LASTFM_USERS)} | {"user_name": "u", "playcount": "many"}
    with pytest.raises(ValueError, match=r"raw.lastfm_users.playcount \(bigint\)"):
        to_raw_frame([row], LASTFM_USERS, source="lastfm")


def test_user_info_without_name_is_a_reject_when_no_fallback():
    result = parse_user_info({"user": {"name": "", "playcount": "1"}})
    assert result.rows == [] and result.rejects[0].reason == "missing name"


def test_artist_tags_rank_and_count_rules():
    payload = {
        "toptags": {
            "tag": [
                {"count": 100, "name": "rock"},
                {"count": "78", "name": "indie"},
                {"count": 140, "name": "weird"},
                {"count": 5, "name": ""},
            ],
            "@attr": {"artist": "Audioslave"},
        }
    }
    result = parse_artist_top_tags(payload, "Audioslave")
    assert [(r["tag_name"], r["tag_count"], r["tag_rank"]) for r in result.rows] == [("rock", 100, 1), ("indie", 78, 2)]
    assert [r.reason for r in result.rejects] == ["count 140 outside 0..100", "missing tag name"]
    assert list(result.frame().columns) == data_columns(LASTFM_ARTIST_TAGS)


def test_single_tag_object_and_unknown_tag():
    one = parse_artist_top_tags({"toptags": {"tag": {"count": 7, "name": "jazz"}, "@attr": {}}}, "A")
    assert [r["tag_name"] for r in one.rows] == ["jazz"]
    unknown = parse_tag_top_tracks(
        {
            "tracks": {
                "track": [],
                "@attr": {"tag": "nope", "page": "1", "perPage": "50", "totalPages": "0", "total": "0"},
            }
        },
        "nope",
    )
    assert unknown.rows == [] and unknown.rejects == []


def test_chart_rank_continues_across_pages():
    payload = {
        "tracks": {
            "track": [{"name": "T", "artist": {"name": "A"}, "playcount": "5", "listeners": "2", "duration": "180"}],
            "@attr": {"page": "3", "perPage": "50", "totalPages": "9", "total": "450"},
        }
    }
    (row,) = parse_chart_top_tracks(payload).rows
    assert row["chart_rank"] == 101 and row["duration_s"] == 180


def test_error_detection_on_any_payload():
    assert find_api_error({"recenttracks": {}}) is None
    assert find_api_error({"error": 6, "message": "User not found", "links": []}) == (6, "User not found")
    with pytest.raises(LastfmNotFoundError) as info:
        raise_for_api_error(
            {"error": 6, "message": "User not found"}, operation="user.getInfo", context={"user": "nobody"}
        )
    assert isinstance(info.value, NotFoundError) and info.value.skippable
    assert "'nobody'" in str(info.value) and "LASTFM_USERS" in str(info.value)


@pytest.mark.parametrize(
    ("code", "error_type", "retryable"),
    [
        (8, LastfmTransientError, True),
        (11, LastfmTransientError, True),
        (16, LastfmTransientError, True),
        (29, LastfmRateLimitError, True),
        (10, LastfmInvalidApiKeyError, False),
        (26, LastfmInvalidApiKeyError, False),
        (17, LastfmPrivateDataError, False),
        (2, LastfmInvalidRequestError, False),
        (3, LastfmInvalidRequestError, False),
        (13, LastfmInvalidRequestError, False),
    ],
)
def test_error_codes_are_classified(code, error_type, retryable):
    error = lastfm_error(code, "msg", operation="user.getRecentTracks", context={"user": "rj"})
    assert isinstance(error, error_type)
    assert error.retryable is retryable
    if code in (10, 26):
        assert isinstance(error, InvalidCredentialsError) and error.fatal and "LASTFM_API_KEY" in str(error)
    if code == 17:
        assert error.skippable and "'rj'" in str(error)


def test_wrong_shape_raises_format_error():
    with pytest.raises(ResponseFormatError):
        parse_recent_tracks({"toptracks": {}}, "u")
    with pytest.raises(ResponseFormatError):
        parse_chart_top_tracks(["not", "a", "dict"])


def test_frame_refuses_rows_with_wrong_columns():
    with pytest.raises(ValueError, match="missing"):
        to_raw_frame([{"user_name": "u"}], LASTFM_SCROBBLES)


def test_empty_frames_keep_columns():
    frame = to_raw_frame([], LASTFM_SCROBBLES, source="lastfm")
    assert list(frame.columns) == LASTFM_SCROBBLES.column_names and frame.empty
