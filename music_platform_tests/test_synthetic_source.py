"""The synthetic Last.fm source: determinism, real payload shapes, windows and paging."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import math
import re
import time

import numpy as np
import pytest

from music_platform.sources.errors import LastfmNotFoundError
from music_platform.sources.landing import collect_scrobbles, iter_scrobble_batches
from music_platform.sources.lastfm.client import LastfmClient
from music_platform.sources.lastfm.parsing import parse_recent_tracks
from music_platform.sources.lastfm.protocol import LastfmSource
from music_platform.sources.synthetic import SyntheticLastfmSource, day_bounds
from music_platform.sources.synthetic.kaggle import kaggle_tracks_frame
from music_platform.sources.synthetic.profiles import COUNTRIES
from music_platform.sources.synthetic.world import REFERENCE_DAY, _catalogue, day_start_uts, get_world
from music_platform_tests.conftest import require_shared_data

USERS = 300
SEED = 42
DAY = dt.date(2025, 3, 1)  # a Saturday


@pytest.fixture(scope="module")
def source() -> SyntheticLastfmSource:
    return SyntheticLastfmSource(n_users=USERS, seed=SEED)


def _heaviest_user(src: SyntheticLastfmSource, days: list[dt.date]) -> str:
    totals = np.zeros(len(src.users), dtype=int)
    for day in days:
        totals += np.diff(src.world.listens_for_day(day).user_offsets)
    return src.users[int(totals.argmax())]


# -- determinism ---------------------------------------------------------------------------------


def _fingerprint(seed: int) -> str:
    src = SyntheticLastfmSource(n_users=50, seed=seed)
    user = src.users[3]
    day_pages = list(src.get_recent_tracks_day(DAY + dt.timedelta(days=1)))
    start, _ = day_bounds(DAY)
    return json.dumps(
        {
            "day": day_pages,
            "window": list(src.get_recent_tracks_pages(user, start, start + 3 * 86400)),
            "info": src.get_user_info(user),
            "tags": src.get_artist_top_tags(src.artists[10]),
            "chart": src.get_chart_top_tracks(limit=5),
            "kaggle": kaggle_tracks_frame(src.world).head(50).to_json(),
        },
        sort_keys=True,
    )


def test_same_seed_gives_identical_payloads_after_a_fresh_build():
    first = _fingerprint(7)
    get_world.cache_clear()
    _catalogue.cache_clear()
    assert _fingerprint(7) == first
    assert _fingerprint(8) != first


def test_a_day_does_not_depend_on_which_days_were_generated_before():
    world = get_world(SEED, USERS)
    fresh = type(world)(seed=world.seed, catalogue=world.catalogue, listeners=world.listeners)
    later = fresh.listens_for_day(DAY + dt.timedelta(days=9))  # generated first here
    fresh.listens_for_day(DAY)
    reference = world.listens_for_day(DAY + dt.timedelta(days=9))
    assert np.array_equal(later.uts, reference.uts) and np.array_equal(later.track, reference.track)


# -- size and structure -------------------------------------------------------------------------------


def test_catalogue_has_enough_artists_genres_and_unique_names(source):
    assert len(source.artists) >= 1000
    assert len(source.tags) >= 6
    assert len({a.casefold() for a in source.artists}) == len(source.artists)
    assert len({u.casefold() for u in source.users}) == len(source.users) == USERS
    for user in source.users:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{1,14}", user), user


def test_catalogue_grows_with_users_but_never_below_the_minimum():
    from music_platform.sources.synthetic.world import default_artist_count

    assert default_artist_count(10) == 1500
    assert default_artist_count(20_000) == 15_000
    with pytest.raises(ValueError, match="1000 artists"):
        get_world(SEED, 10, n_artists=500)


def test_a_day_averages_about_five_scrobbles_per_user(source):
    days = [DAY + dt.timedelta(days=i) for i in range(14)]
    mean = sum(source.world.expected_scrobbles(d) for d in days) / len(days) / USERS
    assert 4.0 <= mean <= 6.5


# -- shapes --------------------------------------------------------------------------------------------


def _string_leaves(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _string_leaves(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _string_leaves(v, f"{path}[]")
    else:
        yield path, value


def test_recent_tracks_page_has_the_recorded_real_shape(source):
    real = json.loads(
        (
            require_shared_data("api-fixtures/lastfm-json-recorded") / "user.getRecentTracks.limit200.page1.json"
        ).read_text()
    )
    user, page = next(source.get_recent_tracks_day(DAY))
    ours, theirs = page["recenttracks"], real["recenttracks"]
    assert list(ours) == list(theirs)
    assert list(ours["@attr"]) == list(theirs["@attr"])
    item, real_item = ours["track"][0], theirs["track"][0]
    assert list(item) == list(real_item)
    for key in ("artist", "album", "date"):
        assert list(item[key]) == list(real_item[key])
    assert [list(i) for i in item["image"]] == [list(i) for i in real_item["image"]]
    assert [i["size"] for i in item["image"]] == [i["size"] for i in real_item["image"]]


def test_every_value_of_a_recent_tracks_page_is_a_string_as_on_last_fm(source):
    for _user, page in list(source.get_recent_tracks_day(DAY))[:50]:
        for path, value in _string_leaves(page):
            assert isinstance(value, str), (path, value)
        for item in page["recenttracks"]["track"]:
            assert item["date"]["uts"].isdigit()
            assert dt.datetime.strptime(item["date"]["#text"], "%d %b %Y, %H:%M")
            assert item["url"].startswith("https://www.last.fm/music/")


def test_empty_mbids_appear_for_a_share_of_tracks_and_artists(source):
    items = [i for _, p in source.get_recent_tracks_day(DAY) for i in p["recenttracks"]["track"]]
    empty_track = np.mean([i["mbid"] == "" for i in items])
    empty_artist = np.mean([i["artist"]["mbid"] == "" for i in items])
    assert 0.15 <= empty_track <= 0.5
    assert 0.08 <= empty_artist <= 0.45
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(uuid.fullmatch(i["mbid"]) for i in items if i["mbid"])


@pytest.mark.parametrize(
    ("fixture", "method"), [("tag.getTopTracks.json", "tag"), ("chart.getTopTracks.json", "chart")]
)
def test_tag_and_chart_lists_have_the_real_shape(source, fixture, method):
    real = json.loads((require_shared_data("api-fixtures/lastfm-json-LastFM.swift") / fixture).read_text())
    ours = source.get_tag_top_tracks("rock", limit=3) if method == "tag" else source.get_chart_top_tracks(limit=3)
    assert list(ours) == list(real) == ["tracks"]
    assert set(ours["tracks"]["@attr"]) == set(real["tracks"]["@attr"])
    item, real_item = ours["tracks"]["track"][0], real["tracks"]["track"][0]
    assert list(item) == list(real_item)
    assert list(item["artist"]) == list(real_item["artist"])
    assert list(item["streamable"]) == list(real_item["streamable"])
    for path, value in _string_leaves(ours):
        assert isinstance(value, str), (path, value)


def test_user_info_has_the_documented_shape_and_realistic_values(source):
    # Keys of the documented example (lastfm-api-docs/user_getInfo.md), in its order.
    documented = [
        "playlists",
        "playcount",
        "gender",
        "name",
        "subscriber",
        "url",
        "country",
        "image",
        "registered",
        "type",
        "age",
        "bootstrap",
        "realname",
    ]
    countries = {c.name for c in COUNTRIES} | {"None"}
    hidden = 0
    for user in source.users:
        info = source.get_user_info(user)["user"]
        assert list(info) == documented
        assert info["name"] == user
        assert info["gender"] in ("m", "f", "n")
        assert info["country"] in countries
        hidden += info["country"] == "None"
        age = int(info["age"])
        assert age == 0 or 14 <= age <= 75
        assert isinstance(info["registered"]["#text"], int)  # the one number Last.fm sends as a number
        assert info["registered"]["unixtime"] == str(info["registered"]["#text"])
        assert info["registered"]["#text"] < day_start_uts(REFERENCE_DAY)
        assert int(info["playcount"]) >= 0
    assert 0 < hidden < USERS * 0.3


def test_artist_top_tags_put_the_primary_genre_first_at_100(source):
    genres = set(source.tags)
    descriptive = 0
    for artist in source.artists[:300]:
        payload = source.get_artist_top_tags(artist)
        assert list(payload) == ["toptags"] and payload["toptags"]["@attr"] == {"artist": artist}
        tags = payload["toptags"]["tag"]
        assert tags[0]["count"] == 100 and tags[0]["name"] in genres
        counts = [t["count"] for t in tags]
        assert all(isinstance(c, int) for c in counts) and counts == sorted(counts, reverse=True)
        assert all(list(t) == ["count", "name", "url"] for t in tags)
        descriptive += sum(t["name"] not in genres for t in tags)
    assert descriptive > 300


def test_tag_top_tracks_rank_the_genre_and_unknown_tags_are_empty(source):
    payload = source.get_tag_top_tracks("jazz", limit=20)["tracks"]
    assert [t["@attr"]["rank"] for t in payload["track"]] == [str(i) for i in range(1, 21)]
    assert payload["@attr"]["perPage"] == "20"
    assert int(payload["@attr"]["totalPages"]) == math.ceil(int(payload["@attr"]["total"]) / 20)
    for track in payload["track"]:
        tags = source.get_artist_top_tags(track["artist"]["name"])["toptags"]["tag"]
        assert tags[0]["name"] == "jazz"
    page2 = source.get_tag_top_tracks("jazz", limit=20, page=2)["tracks"]["track"]
    assert page2[0]["@attr"]["rank"] == "21"
    unknown = source.get_tag_top_tracks("no-such-genre")["tracks"]
    assert unknown["track"] == [] and unknown["@attr"]["total"] == "0"


def test_chart_is_ordered_by_playcount(source):
    tracks = source.get_chart_top_tracks(limit=50)["tracks"]["track"]
    plays = [int(t["playcount"]) for t in tracks]
    assert plays == sorted(plays, reverse=True) and plays[0] > plays[-1]
    assert all(int(t["listeners"]) < int(t["playcount"]) for t in tracks)


def test_errors_are_those_of_the_real_client(source):
    with pytest.raises(LastfmNotFoundError) as err:
        source.get_user_info("nobody-here-at-all")
    assert err.value.code == 6 and err.value.skippable and "nobody-here-at-all" in str(err.value)
    with pytest.raises(LastfmNotFoundError):
        list(source.get_recent_tracks_pages("nobody-here-at-all", 0, 10))
    with pytest.raises(LastfmNotFoundError):
        source.get_artist_top_tags("No Such Artist 123")
    with pytest.raises(ValueError, match="limit"):
        list(source.get_recent_tracks_pages(source.users[0], 0, 10, limit=0))
    with pytest.raises(ValueError, match="page"):
        source.get_tag_top_tracks("rock", page=0)
    # Usernames and artist names are case-insensitive, as on Last.fm; artists also resolve by mbid.
    assert source.get_user_info(source.users[0].upper())["user"]["name"] == source.users[0]
    assert source.get_artist_top_tags(source.artists[0].lower())["toptags"]["@attr"]["artist"] == source.artists[0]
    with_mbid = next(i for i, m in enumerate(source.world.catalogue.artist_mbids) if m)
    by_mbid = source.get_artist_top_tags("", mbid=source.world.catalogue.artist_mbids[with_mbid])
    assert by_mbid["toptags"]["@attr"]["artist"] == source.artists[with_mbid]


# -- windows and paging -------------------------------------------------------------------------------------


def _items(pages):
    return [i for p in pages for i in p["recenttracks"]["track"]]


def test_from_is_inclusive_and_to_is_exclusive(source):
    user, page = next(source.get_recent_tracks_day(DAY))
    uts = int(page["recenttracks"]["track"][0]["date"]["uts"])
    exact = _items(source.get_recent_tracks_pages(user, uts, uts + 1))
    assert [i["date"]["uts"] for i in exact] == [str(uts)]
    assert _items(source.get_recent_tracks_pages(user, uts - 3600, uts)) == [
        i for i in _items(source.get_recent_tracks_pages(user, uts - 3600, uts + 1)) if i["date"]["uts"] != str(uts)
    ]
    # A window without scrobbles gives one empty page, as Last.fm answers it (a user's scrobbles are
    # at least a track's duration apart, so the second before one is free).
    empty = list(source.get_recent_tracks_pages(user, uts - 1, uts))
    assert len(empty) == 1 and empty[0]["recenttracks"]["track"] == []
    assert empty[0]["recenttracks"]["@attr"]["total"] == "0" and empty[0]["recenttracks"]["@attr"]["totalPages"] == "0"
    # Like the real client: an inverted window is a caller error, one starting in the future has no page.
    with pytest.raises(ValueError, match="empty window"):
        list(source.get_recent_tracks_pages(user, uts, uts))
    future = int(time.time()) + 86400
    assert list(source.get_recent_tracks_pages(user, future, future + 60)) == []


def test_pagination_over_a_long_window(source):
    days = [DAY + dt.timedelta(days=i) for i in range(30)]
    user = _heaviest_user(source, days)
    start, _ = day_bounds(days[0])
    _, end = day_bounds(days[-1])
    pages = list(source.get_recent_tracks_pages(user, start, end, limit=200))
    total = sum(np.diff(source.world.listens_for_day(d).user_offsets)[source.world.user_index[user]] for d in days)
    assert total > 200
    assert len(pages) == math.ceil(total / 200)
    for number, page in enumerate(pages, start=1):
        attr = page["recenttracks"]["@attr"]
        assert attr == {
            "perPage": "200",
            "totalPages": str(len(pages)),
            "page": str(number),
            "user": user,
            "total": str(total),
        }
        assert len(page["recenttracks"]["track"]) == (200 if number < len(pages) else total - 200 * (len(pages) - 1))
    stamps = [int(i["date"]["uts"]) for i in _items(pages)]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps) == total
    assert start <= min(stamps) and max(stamps) < end
    # The single-page method agrees, and a page past the end is empty.
    assert source.get_recent_tracks_page(user, page=2, limit=200, time_from=start, time_to=end) == pages[1]
    past = source.get_recent_tracks_page(user, page=len(pages) + 1, limit=200, time_from=start, time_to=end)
    assert past["recenttracks"]["track"] == []


def test_day_pages_hold_exactly_the_expected_scrobbles(source):
    start, end = day_bounds(DAY)
    pages = list(source.get_recent_tracks_day(DAY, limit=5))
    items = _items(p for _, p in pages)
    assert len(items) == source.expected_scrobbles(DAY) == source.world.expected_scrobbles(DAY)
    assert all(start <= int(i["date"]["uts"]) < end for i in items)
    by_user = source.world.expected_scrobbles_by_user(DAY)
    for user, page in pages:
        assert page["recenttracks"]["@attr"]["total"] == str(by_user[user])
    # The per-user window gives the same scrobbles as the day's fast path.
    user = pages[0][0]
    window = _items(source.get_recent_tracks_pages(user, start, end, limit=5))
    assert window == _items(p for u, p in pages if u == user)
    frame = source.scrobbles_frame(DAY)
    assert len(frame) == len(items) and set(frame["scrobble_date"]) == {DAY}


def test_nothing_after_now_is_returned():
    noon = day_start_uts(DAY) + 12 * 3600
    src = SyntheticLastfmSource(n_users=USERS, seed=SEED, now=lambda: noon)
    items = _items(p for _, p in src.get_recent_tracks_day(DAY))
    assert items and all(int(i["date"]["uts"]) < noon for i in items)
    assert len(items) == src.expected_scrobbles(DAY) < src.world.expected_scrobbles(DAY)
    assert src.expected_scrobbles(DAY + dt.timedelta(days=1)) == 0
    assert len(src.scrobbles_frame(DAY)) == len(items)


def test_now_playing_entry_is_extra_and_not_counted():
    src = SyntheticLastfmSource(n_users=USERS, seed=SEED, now_playing=True)
    user, page = next(
        (u, p) for u, p in src.get_recent_tracks_day(DAY, limit=3) if int(p["recenttracks"]["@attr"]["total"]) >= 3
    )
    tracks = page["recenttracks"]["track"]
    assert tracks[0]["@attr"] == {"nowplaying": "true"} and "date" not in tracks[0]
    assert len(tracks) == 4 and all("date" in t for t in tracks[1:])
    assert page["recenttracks"]["@attr"]["total"] == str(src.world.expected_scrobbles_by_user(DAY)[user])


# -- the LastfmSource protocol: one landing path for the real and the synthetic source -----------


def _protocol_members() -> dict[str, inspect.Signature | None]:
    members = {}
    for name, value in vars(LastfmSource).items():
        if name.startswith("_"):
            continue
        members[name] = inspect.signature(value) if callable(value) else None
    members.update(dict.fromkeys(LastfmSource.__annotations__))
    return members


@pytest.mark.parametrize("cls", [SyntheticLastfmSource, LastfmClient], ids=["synthetic", "lastfm"])
def test_both_sources_offer_every_protocol_member_with_its_parameters(cls):
    """Structural typing checked at test time (what a type checker would say): every method of the
    protocol exists with the protocol's parameters, in order, with the same defaults."""
    for name, signature in _protocol_members().items():
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        if signature is None:
            continue
        actual = inspect.signature(getattr(cls, name))
        wanted = list(signature.parameters.values())
        got = list(actual.parameters.values())[: len(wanted)]
        assert [(p.name, p.default) for p in got] == [(p.name, p.default) for p in wanted], (cls.__name__, name)
    assert cls.source_name in ("synthetic", "lastfm") and cls.days_per_batch >= 1


def test_synthetic_windows_hold_what_the_per_user_walk_holds(source):
    """The fast path (a day drawn for every user at once) gives each user exactly the rows that
    user's own walk over the day gives, with the count the pages report."""
    users = source.users[:40]
    days = [DAY, DAY + dt.timedelta(days=1)]
    by_user_day: dict[tuple[str, int], list] = {}
    for user, fetch in source.recent_tracks_for_days(users, days[0], days[-1]):
        assert fetch.complete and fetch.total_reported == len(fetch.result.rows) > 0
        assert (fetch.time_from, fetch.time_to) in {day_bounds(day) for day in days}
        by_user_day[(user, fetch.time_from)] = fetch.result.rows
    assert {user for user, _ in by_user_day} <= set(users)
    for user in users[:10]:
        for day in days:
            start, end = day_bounds(day)
            walked = [
                row
                for page in source.get_recent_tracks_pages(user, start, end)
                for row in parse_recent_tracks(page, user, window=(start, end)).rows
            ]
            assert by_user_day.get((user, start), []) == walked


@pytest.mark.parametrize("stranger", ["Никто", "誰でもない", "없는사용자", "لا_أحد", "אף_אחד", "ไม่มีใคร", "!!!"])
def test_an_unknown_user_is_the_real_apis_not_found_and_the_others_load(source, stranger):
    outcomes = list(source.recent_tracks_for_days([stranger, source.users[0]], DAY, DAY))
    errors = [(user, outcome) for user, outcome in outcomes if isinstance(outcome, Exception)]
    assert len(errors) == 1 and errors[0][0] == stranger
    assert isinstance(errors[0][1], LastfmNotFoundError) and errors[0][1].skippable
    batches = list(iter_scrobble_batches(source, [stranger, *source.users[:5]], [DAY]))
    assert list(batches[0].skipped_users) == [stranger]
    assert batches[0].users_loaded <= set(source.users[:5])


def test_a_day_in_progress_ends_at_now_in_window_and_rows_alike():
    day_start = day_start_uts(DAY)
    src = SyntheticLastfmSource(n_users=80, seed=SEED, now=lambda: day_start + 15 * 3600)
    batch = collect_scrobbles(src, src.users, [DAY, DAY + dt.timedelta(days=1)])
    frame = batch.frame(source="synthetic")
    assert len(frame) == src.expected_scrobbles(DAY) > 0
    assert frame["played_at_uts"].max() < day_start + 15 * 3600
    assert not batch.result.rejects  # no row falls outside its pinned window
