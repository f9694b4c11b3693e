"""Last.fm JSON payloads built from the synthetic world, shaped like the real API answers.

Shapes follow the recorded ``user.getRecentTracks`` response and the documented examples of
the other methods, quirks included: numbers as strings (``"uts"``, ``@attr`` paging,
``playcount``) except where Last.fm sends numbers (tag ``count``, ``registered.#text``),
empty-string mbids, ``album.#text`` and image URLs, ``streamable`` as ``"0"`` in recent
tracks but as an object in tag/chart lists, images as four sized entries, the key order of
the real responses. Each call builds fresh dicts, so a parser may mutate what it receives.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from urllib.parse import quote_plus

import numpy as np
import orjson
import pandas as pd

from music_platform.sources.synthetic.world import SyntheticWorld

IMAGE_ROOT = "https://lastfm.freetls.fastly.net/i/u/"
IMAGE_SIZES = (("small", "34s"), ("medium", "64s"), ("large", "174s"), ("extralarge", "300x300"))
# Last.fm stopped serving artist images in 2019; artist-level lists carry this placeholder.
ARTIST_PLACEHOLDER_HASH = "2a96cbd8b46e442fc41c2b86b821562f"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# fmt: off
SCROBBLE_COLUMNS = (
    "user_name", "played_at_uts", "played_at", "scrobble_date", "track_name", "track_mbid", "artist_name",
    "artist_mbid", "album_name", "album_mbid", "track_url",
)
# fmt: on


def lastfm_date_text(uts: int) -> str:
    """'12 Apr 2026, 20:07' (UTC), independent of the process locale."""
    t = time.gmtime(uts)
    return f"{t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year}, {t.tm_hour:02d}:{t.tm_min:02d}"


def image_urls(image_hash: str) -> tuple[str, str, str, str]:
    """The four sized image URLs of a cover hash ("" for each when there is no cover)."""
    if not image_hash:
        return ("", "", "", "")
    ext = "png" if image_hash == ARTIST_PLACEHOLDER_HASH or int(image_hash[0], 16) % 3 == 0 else "jpg"
    small, medium, large, extralarge = (f"{IMAGE_ROOT}{path}/{image_hash}.{ext}" for _, path in IMAGE_SIZES)
    return small, medium, large, extralarge


def image_list(image_hash: str, *, text_first: bool = False) -> list[dict[str, str]]:
    return _image_entries(image_urls(image_hash), text_first=text_first)


def _image_entries(urls: tuple[str, str, str, str], *, text_first: bool = False) -> list[dict[str, str]]:
    if text_first:  # key order of tag/chart lists
        return [
            {"#text": urls[0], "size": "small"},
            {"#text": urls[1], "size": "medium"},
            {"#text": urls[2], "size": "large"},
            {"#text": urls[3], "size": "extralarge"},
        ]
    return [
        {"size": "small", "#text": urls[0]},
        {"size": "medium", "#text": urls[1]},
        {"size": "large", "#text": urls[2]},
        {"size": "extralarge", "#text": urls[3]},
    ]


def artist_url(name: str) -> str:
    return f"https://www.last.fm/music/{quote_plus(name)}"


def tag_url(name: str) -> str:
    return f"https://www.last.fm/tag/{quote_plus(name)}"


@dataclass(eq=False)
class TrackStrings:
    """The Last.fm strings of every track, as lists indexed by track id (built once per world)."""

    world: SyntheticWorld
    _arrays: dict = field(default_factory=dict, repr=False)

    @cached_property
    def _columns(self) -> dict[str, list[str]]:
        cat = self.world.catalogue
        artist_of = cat.track_artist
        artist_name = [cat.artist_names[a] for a in artist_of]
        album = cat.track_album
        visible = cat.track_album_visible
        album_name = [cat.album_names[b] if v else "" for b, v in zip(album, visible, strict=True)]
        album_mbid = [cat.album_mbids[b] if v else "" for b, v in zip(album, visible, strict=True)]
        artist_quoted = [quote_plus(n) for n in cat.artist_names]
        album_images = [image_urls(h) for h in cat.album_image_hashes]
        url = [
            f"https://www.last.fm/music/{artist_quoted[a]}/_/{quote_plus(t)}"
            for a, t in zip(artist_of, cat.track_lastfm_name, strict=True)
        ]
        return {
            "name": list(cat.track_lastfm_name),
            "mbid": list(cat.track_mbid),
            "artist": artist_name,
            "artist_mbid": [cat.artist_mbids[a] for a in artist_of],
            "album": album_name,
            "album_mbid": album_mbid,
            "url": url,
            "image": [album_images[b] for b in album],
        }

    def __getitem__(self, column: str) -> list:
        return self._columns[column]

    def array(self, column: str, *, blank_to_none: bool) -> np.ndarray:
        """The column as an object array (cached), ``""`` turned into None when asked."""
        key = (column, blank_to_none)
        cached = self._arrays.get(key)
        if cached is None:
            cached = np.asarray(self._columns[column], dtype=object)
            if blank_to_none:
                cached = cached.copy()
                cached[cached == ""] = None
            self._arrays[key] = cached
        return cached


def track_strings(world: SyntheticWorld) -> TrackStrings:
    if world.track_strings_cache is None:
        world.track_strings_cache = TrackStrings(world)
    return world.track_strings_cache  # type: ignore[return-value]


# -- user.getRecentTracks --------------------------------------------------------------------


def recent_track_item(strings: TrackStrings, track: int, uts: int | None) -> dict:
    """One entry of ``recenttracks.track``; ``uts=None`` gives the now-playing entry (no date)."""
    item = {
        "artist": {"mbid": strings["artist_mbid"][track], "#text": strings["artist"][track]},
        "streamable": "0",
        "image": _image_entries(strings["image"][track]),
        "mbid": strings["mbid"][track],
        "album": {"mbid": strings["album_mbid"][track], "#text": strings["album"][track]},
        "name": strings["name"][track],
    }
    if uts is None:
        item["@attr"] = {"nowplaying": "true"}
        item["url"] = strings["url"][track]
    else:
        item["url"] = strings["url"][track]
        item["date"] = {"uts": str(uts), "#text": lastfm_date_text(uts)}
    return item


def recent_tracks_page(
    world: SyntheticWorld,
    user: str,
    uts_desc: np.ndarray,
    tracks_desc: np.ndarray,
    page: int,
    limit: int,
    now_playing_track: int | None = None,
) -> dict:
    """Page ``page`` of a user's scrobbles given newest first; ``total`` excludes now-playing.

    Built as JSON text and decoded, the way the real client receives it: each track's constant
    part is rendered once per world (:class:`_RecentItemJson`), so a page costs a join and one
    ``orjson.loads`` (fresh dicts, same keys in the same order as :func:`recent_track_item`)
    instead of a dozen dicts per scrobble. Bulk loads of millions of scrobbles spend their time
    in the shared parser, not here.
    """
    rendered = _recent_item_json(world)
    total = len(uts_desc)
    total_pages = math.ceil(total / limit)
    lo, hi = (page - 1) * limit, min(page * limit, total)
    items = rendered.items(tracks_desc[lo:hi], uts_desc[lo:hi])
    if now_playing_track is not None and page == 1:
        items.insert(0, orjson.dumps(recent_track_item(track_strings(world), now_playing_track, None)))
    attr = {"perPage": str(limit), "totalPages": str(total_pages), "page": str(page), "user": user, "total": str(total)}
    return orjson.loads(b'{"recenttracks":{"track":[%b],"@attr":%b}}' % (b",".join(items), orjson.dumps(attr)))


class _RecentItemJson:
    """Every track's recent-tracks entry as JSON text up to its ``date`` (built once per world)."""

    def __init__(self, world: SyntheticWorld):
        strings = track_strings(world)
        heads = []
        for track in range(len(strings["name"])):
            item = recent_track_item(strings, track, 0)
            del item["date"]
            heads.append(orjson.dumps(item)[:-1] + b',"date":{"uts":"')
        self.heads = heads

    def items(self, tracks: np.ndarray, uts: np.ndarray) -> list[bytes]:
        heads, minute_text = self.heads, self._minute_text
        return [
            b'%b%d","#text":"%b"}}' % (heads[t], u, minute_text(u // 60))
            for t, u in zip(tracks.tolist(), uts.tolist(), strict=True)
        ]

    @staticmethod
    @lru_cache(maxsize=1 << 16)
    def _minute_text(minute: int) -> bytes:
        """The date text shows minutes: a day of listens needs at most 1,440 of them."""
        return lastfm_date_text(minute * 60).encode()


def _recent_item_json(world: SyntheticWorld) -> _RecentItemJson:
    if world.recent_item_json_cache is None:
        world.recent_item_json_cache = _RecentItemJson(world)
    return world.recent_item_json_cache  # type: ignore[return-value]


# -- user.getInfo ------------------------------------------------------------------------------


def user_info(world: SyntheticWorld, user: int) -> dict:
    people = world.listeners
    name = people.names[user]
    registered = int(people.registered_uts[user])
    return {
        "user": {
            "playlists": "0",
            "playcount": str(int(people.lifetime_playcount[user])),
            "gender": people.genders[user],
            "name": name,
            "subscriber": "1" if people.subscriber[user] else "0",
            "url": f"https://www.last.fm/user/{name}",
            "country": people.countries[user],
            "image": image_list(people.image_hashes[user]),
            "registered": {"unixtime": str(registered), "#text": registered},
            "type": "user",
            "age": str(int(people.ages[user])),
            "bootstrap": "0",
            "realname": people.real_names[user],
        }
    }


# -- artist.getTopTags ---------------------------------------------------------------------------


def artist_top_tags(world: SyntheticWorld, artist: int) -> dict:
    cat = world.catalogue
    return {
        "toptags": {
            "tag": [{"count": count, "name": name, "url": tag_url(name)} for name, count in cat.artist_tags[artist]],
            "@attr": {"artist": cat.artist_names[artist]},
        }
    }


# -- tag.getTopTracks / chart.getTopTracks --------------------------------------------------------


def _list_track(world: SyntheticWorld, track: int, *, duration_known: bool) -> dict:
    cat = world.catalogue
    strings = track_strings(world)
    artist = int(cat.track_artist[track])
    return {
        "name": strings["name"][track],
        "duration": str(int(cat.track_duration_ms[track] // 1000)) if duration_known else "0",
        "mbid": strings["mbid"][track],
        "url": strings["url"][track],
        "streamable": {"#text": "0", "fulltrack": "0"},
        "artist": {
            "name": cat.artist_names[artist],
            "mbid": cat.artist_mbids[artist],
            "url": artist_url(cat.artist_names[artist]),
        },
        "image": image_list(ARTIST_PLACEHOLDER_HASH, text_first=True),
    }


def _paging(total: int, page: int, limit: int) -> tuple[int, int, int]:
    total_pages = math.ceil(total / limit)
    lo = (page - 1) * limit
    return total_pages, lo, min(lo + limit, total)


def tag_top_tracks(world: SyntheticWorld, tag: str, limit: int, page: int) -> dict:
    """Tracks of the genre by popularity; an unknown tag gives an empty list, as on Last.fm."""
    cat = world.catalogue
    genre = {g.casefold(): i for i, g in enumerate(cat.genres)}.get(tag.strip().casefold())
    ranked = np.zeros(0, dtype=np.int64)
    if genre is not None:
        ids = cat.genre_track_ids[genre]
        ranked = ids[np.argsort(-cat.track_weight[ids], kind="stable")]
    total_pages, lo, hi = _paging(len(ranked), page, limit)
    items = []
    for rank, track in enumerate(ranked[lo:hi], start=lo + 1):
        # Some tracks lack a duration on Last.fm ("0"): a deterministic ~15% of them.
        item = _list_track(world, int(track), duration_known=int(track) % 7 != 0)
        item["@attr"] = {"rank": str(rank)}
        items.append(item)
    return {
        "tracks": {
            "track": items,
            "@attr": {
                "tag": tag,
                "page": str(page),
                "perPage": str(limit),
                "totalPages": str(total_pages),
                "total": str(len(ranked)),
            },
        }
    }


CHART_TOTAL_PLAYS = 5e8  # plays the chart's weights are scaled to


def chart_top_tracks(world: SyntheticWorld, limit: int, page: int) -> dict:
    cat = world.catalogue
    ranked = np.argsort(-cat.track_weight, kind="stable")
    total_pages, lo, hi = _paging(len(ranked), page, limit)
    items = []
    for track in ranked[lo:hi]:
        track = int(track)
        playcount = int(cat.track_weight[track] * CHART_TOTAL_PLAYS)
        listeners = int(playcount / (8 + (track * 7919) % 13))  # 8-20 plays per listener
        base = _list_track(world, track, duration_known=False)  # the chart sends "0"
        item = {
            "name": base["name"],
            "duration": base["duration"],
            "playcount": str(playcount),
            "listeners": str(listeners),
        }
        item.update((k, base[k]) for k in ("mbid", "url", "streamable", "artist", "image"))
        items.append(item)
    return {
        "tracks": {
            "track": items,
            "@attr": {
                "page": str(page),
                "perPage": str(limit),
                "totalPages": str(total_pages),
                "total": str(len(ranked)),
            },
        }
    }


# -- flat scrobble rows --------------------------------------------------------------------------


def scrobble_rows(world: SyntheticWorld, day: dt.date) -> pd.DataFrame:
    """The day's scrobbles as the Last.fm parser would turn its pages into rows.

    Columns of ``raw.lastfm_scrobbles`` without the audit ones; ``""`` becomes None and
    ``played_at`` is a naive UTC timestamp, as ``lastfm.parsing.parse_recent_tracks`` gives.
    """
    listens = world.listens_for_day(day)
    strings = track_strings(world)
    track = listens.track

    def column(name: str, blank_to_none: bool = True) -> np.ndarray:
        return strings.array(name, blank_to_none=blank_to_none)[track]

    played_at = pd.to_datetime(listens.uts, unit="s")
    return pd.DataFrame(
        {
            "user_name": np.asarray(world.listeners.names, dtype=object)[listens.user],
            "played_at_uts": listens.uts,
            "played_at": played_at,
            "scrobble_date": played_at.date,
            "track_name": column("name", blank_to_none=False),
            "track_mbid": column("mbid"),
            "artist_name": column("artist", blank_to_none=False),
            "artist_mbid": column("artist_mbid"),
            "album_name": column("album"),
            "album_mbid": column("album_mbid"),
            "track_url": column("url"),
        },
        columns=list(SCROBBLE_COLUMNS),
    )
