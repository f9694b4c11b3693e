"""Pure functions turning Last.fm JSON payloads into raw-table rows.

Each ``parse_*`` function takes one decoded JSON payload (as the API, the fake server or
the synthetic source returns it) and gives a :class:`ParseResult`:

- ``rows``: dicts with exactly the columns of the raw table in ``schemas.py`` minus the
  audit columns ``source``/``ingested_at`` (the caller adds them, e.g. with :func:`to_raw_frame`);
- ``rejects``: items that could not become a row (no name, no artist, no date, bad number),
  each with the reason and the item as received, so the caller quarantines and counts them
  instead of losing them;
- ``now_playing_dropped``: recent-tracks only, the "now playing" item, which is not a
  scrobble (no date, not counted in ``total``) and is dropped on purpose.

Quirks normalised here (see ``docs/data-source/stream-source-validation.md``): numbers sent
as strings, a single item sent as an object instead of a list, ``""`` for a missing mbid /
album / url, the literal country ``"None"``, duration ``"0"`` meaning unknown, the extended
recent-tracks artist shape (``name`` instead of ``#text``).

Timestamps are naive ``datetime`` values in UTC (the raw tables use ``timestamp`` without
time zone on every warehouse); ``scrobble_date`` is the UTC calendar date.

A payload that is a Last.fm error body raises the typed ``LastfmApiError`` from
:func:`raise_for_api_error`; a payload without the expected top-level object raises
``ResponseFormatError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa

from music_platform.sources.errors import ResponseFormatError
from music_platform.sources.lastfm.errors import find_api_error, lastfm_error
from music_platform.sources.schemas import (
    LASTFM_ARTIST_TAGS,
    LASTFM_CHART_TOP_TRACKS,
    LASTFM_SCROBBLES,
    LASTFM_TAG_TOP_TRACKS,
    LASTFM_USERS,
    RawTable,
)

AUDIT_COLUMNS = ("source", "ingested_at")


def data_columns(table: RawTable) -> list[str]:
    """The columns a parser fills: the table's columns without the audit columns."""
    return [c for c in table.column_names if c not in AUDIT_COLUMNS]


@dataclass(frozen=True)
class Reject:
    """One item that could not be parsed: why, where, and the item exactly as received."""

    reason: str
    position: int
    record: Any


@dataclass
class ParseResult:
    table: RawTable
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    now_playing_dropped: int = 0
    # Items the payloads held, counted before parsing: the ledger of the load checks that every
    # one became a row, a reject or the dropped now-playing item.
    items_received: int = 0

    @property
    def item_count(self) -> int:
        """Items in the payload that were scrobbles/entries (rows + rejects, not now-playing)."""
        return len(self.rows) + len(self.rejects)

    def frame(self, *, source: str | None = None, ingested_at: datetime | None = None) -> pd.DataFrame:
        return to_raw_frame(self.rows, self.table, source=source, ingested_at=ingested_at)

    def extend(self, other: ParseResult) -> None:
        """Merge another page's result into this one (same table)."""
        if other.table.name != self.table.name:
            raise ValueError(f"cannot merge {other.table.name} rows into {self.table.name}")
        offset = self.item_count + self.now_playing_dropped
        self.rows.extend(other.rows)
        self.rejects.extend(Reject(r.reason, r.position + offset, r.record) for r in other.rejects)
        self.now_playing_dropped += other.now_playing_dropped
        self.items_received += other.items_received


class Paging(NamedTuple):
    page: int
    total_pages: int
    total: int


class _BadItem(ValueError):
    """Raised inside a row builder; becomes a Reject with this message."""


# -- small coercions -----------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """Last.fm sends a single item as an object and no item as ``""``, ``None`` or ``[]``."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


def _text(value: Any) -> str | None:
    """A name that may be a plain string, ``{"#text": ...}`` or ``{"name": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("#text", value.get("name"))
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _mbid(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("mbid")
    return _optional_str(value)


def _int(value: Any, what: str) -> int | None:
    """Int from an int, float or numeric string; None when absent/empty; error otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise _BadItem(f"{what} is not a number: {value!r}")
    if isinstance(value, int):
        return value
    try:
        number = float(value) if not isinstance(value, str) else float(value.strip())
    except (TypeError, ValueError):
        raise _BadItem(f"{what} is not a number: {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number != int(number):
        raise _BadItem(f"{what} is not a whole number: {value!r}")
    return int(number)


def _bool_flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise _BadItem(f"not a 0/1 flag: {value!r}")


def utc_datetime(uts: int) -> datetime:
    """Naive UTC datetime of unix seconds (the raw tables' ``timestamp`` convention)."""
    return datetime.fromtimestamp(uts, tz=UTC).replace(tzinfo=None)


def _positive_duration(value: Any, what: str) -> int | None:
    """Durations of list endpoints are seconds; ``"0"`` means unknown."""
    seconds = _int(value, what)
    if seconds is None or seconds == 0:
        return None
    if seconds < 0:
        raise _BadItem(f"{what} is negative: {value!r}")
    return seconds


def _require(value: str | None, what: str) -> str:
    if value is None:
        raise _BadItem(f"missing {what}")
    return value


def _non_negative(value: Any, what: str) -> int | None:
    number = _int(value, what)
    if number is not None and number < 0:
        raise _BadItem(f"{what} is negative: {value!r}")
    return number


# -- payload structure ---------------------------------------------------------------------


def raise_for_api_error(payload: Any, *, operation: str = "", context: Mapping[str, object] | None = None) -> None:
    """Raise the typed ``LastfmApiError`` when ``payload`` is an error body."""
    found = find_api_error(payload)
    if found is not None:
        code, message = found
        raise lastfm_error(code, message, operation=operation, context=context)


def _root(payload: Any, root_key: str, operation: str) -> Mapping:
    raise_for_api_error(payload, operation=operation)
    if not isinstance(payload, Mapping) or not isinstance(payload.get(root_key), Mapping):
        keys = sorted(payload)[:5] if isinstance(payload, Mapping) else type(payload).__name__
        raise ResponseFormatError(
            f"Last.fm {operation}: expected a JSON object with key {root_key!r}, got {keys}",
            source="lastfm",
            operation=operation,
        )
    return payload[root_key]


def _container(payload: Any, root_key: str, list_key: str, operation: str) -> tuple[Mapping, list[Any]]:
    root = _root(payload, root_key, operation)
    return root, as_list(root.get(list_key))


def _attr(root: Mapping) -> Mapping:
    attr = root.get("@attr")
    return attr if isinstance(attr, Mapping) else {}


def _paging_of(root: Mapping, operation: str) -> Paging:
    attr = _attr(root)
    try:
        page = _int(attr.get("page"), "page") or 1
        total_pages = _int(attr.get("totalPages"), "totalPages") or 0
        total = _int(attr.get("total"), "total") or 0
    except _BadItem as exc:
        raise ResponseFormatError(f"Last.fm {operation}: bad paging attributes: {exc}", source="lastfm") from None
    return Paging(page, total_pages, total)


def _per_page(root: Mapping) -> int | None:
    try:
        return _int(_attr(root).get("perPage"), "perPage")
    except _BadItem:
        return None


def _collect(table: RawTable, items: Iterable[Any], build) -> ParseResult:
    items = list(items)
    result = ParseResult(table=table, items_received=len(items))
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            result.rejects.append(Reject(f"item is a {type(item).__name__}, not an object", position, item))
            continue
        try:
            row = build(position, item)
        except _BadItem as exc:
            result.rejects.append(Reject(str(exc), position, item))
            continue
        if row is not None:
            result.rows.append(row)
    return result


# -- user.getRecentTracks --------------------------------------------------------------------


def is_now_playing(item: Mapping) -> bool:
    attr = item.get("@attr")
    return isinstance(attr, Mapping) and str(attr.get("nowplaying", "")).lower() == "true"


def recent_tracks_paging(payload: Mapping) -> Paging:
    """``(page, total_pages, total)`` of a recent-tracks page; ``total`` excludes now-playing."""
    return _paging_of(_root(payload, "recenttracks", "user.getRecentTracks"), "user.getRecentTracks")


def parse_recent_tracks(
    payload: Mapping,
    user_name: str,
    *,
    window: tuple[int, int] | None = None,
) -> ParseResult:
    """Rows of ``raw.lastfm_scrobbles`` from one ``user.getRecentTracks`` page.

    The now-playing item is dropped and counted. With ``window=(from, to)`` a scrobble
    outside ``[from, to)`` is rejected with a reason (a guard against a server that
    interprets the bounds differently; the real API and the fake honour them).
    """
    root, items = _container(payload, "recenttracks", "track", "user.getRecentTracks")
    now_playing = 0

    def build(position: int, item: Mapping) -> dict[str, Any] | None:
        nonlocal now_playing
        if is_now_playing(item):
            now_playing += 1
            return None
        track_name = _require(_text(item.get("name")), "track name")
        artist_name = _require(_text(item.get("artist")), "artist name")
        when = item.get("date")
        uts_raw = when.get("uts") if isinstance(when, Mapping) else None
        uts = _int(uts_raw, "date.uts")
        if uts is None:
            raise _BadItem("missing date.uts (and not the now-playing item)")
        if uts <= 0:
            raise _BadItem(f"date.uts is not a positive unix time: {uts_raw!r}")
        if window is not None and not (window[0] <= uts < window[1]):
            raise _BadItem(f"date.uts {uts} outside the requested window [{window[0]}, {window[1]})")
        played_at = utc_datetime(uts)
        album = item.get("album")
        return {
            "user_name": user_name,
            "played_at_uts": uts,
            "played_at": played_at,
            "scrobble_date": played_at.date(),
            "track_name": track_name,
            "track_mbid": _mbid(item.get("mbid")),
            "artist_name": artist_name,
            "artist_mbid": _mbid(item.get("artist")),
            "album_name": _text(album),
            "album_mbid": _mbid(album),
            "track_url": _optional_str(item.get("url")),
        }

    result = _collect(LASTFM_SCROBBLES, items, build)
    result.now_playing_dropped = now_playing
    return result


# -- user.getInfo ------------------------------------------------------------------------------


def parse_user_info(payload: Mapping, user_name: str | None = None) -> ParseResult:
    """One row of ``raw.lastfm_users`` (or one reject) from a ``user.getInfo`` payload.

    Normalised: ``age`` 0 (hidden) → None, ``country`` "None"/"" → None, ``subscriber``
    "0"/"1" → bool, ``registered.unixtime`` → UTC timestamp.
    """
    raise_for_api_error(payload, operation="user.getInfo", context={"user": user_name})
    if not isinstance(payload, Mapping) or not isinstance(payload.get("user"), Mapping):
        raise ResponseFormatError("Last.fm user.getInfo: expected a JSON object with key 'user'", source="lastfm")

    def build(position: int, user: Mapping) -> dict[str, Any]:
        name = _require(_text(user.get("name")) or (user_name if user_name and user_name.strip() else None), "name")
        country = _optional_str(user.get("country"))
        if country is not None and country.lower() == "none":
            country = None
        age = _non_negative(user.get("age"), "age")
        registered = user.get("registered")
        registered_uts = None
        if isinstance(registered, Mapping):
            registered_uts = _int(registered.get("unixtime", registered.get("#text")), "registered.unixtime")
        elif registered not in (None, ""):
            registered_uts = _int(registered, "registered")
        return {
            "user_name": name,
            "real_name": _optional_str(user.get("realname")),
            "country": country,
            "age": age or None,
            "gender": _optional_str(user.get("gender")),
            "subscriber": _bool_flag(user.get("subscriber")),
            "playcount": _non_negative(user.get("playcount"), "playcount"),
            "registered_at": utc_datetime(registered_uts) if registered_uts and registered_uts > 0 else None,
            "url": _optional_str(user.get("url")),
        }

    return _collect(LASTFM_USERS, [payload["user"]], build)


# -- artist.getTopTags -------------------------------------------------------------------------


def parse_artist_top_tags(payload: Mapping, artist_name: str, artist_mbid: str | None = None) -> ParseResult:
    """Rows of ``raw.lastfm_artist_tags``: ``tag_rank`` is the position (1 = strongest),
    ``tag_count`` Last.fm's 0..100 weight. Keyed by the artist name we asked for (Last.fm's
    ``@attr.artist`` may be an autocorrected spelling)."""
    _root, items = _container(payload, "toptags", "tag", "artist.getTopTags")

    def build(position: int, tag: Mapping) -> dict[str, Any]:
        tag_name = _require(_text(tag.get("name")), "tag name")
        count = _int(tag.get("count"), "count")
        if count is None:
            raise _BadItem("missing count")
        if not 0 <= count <= 100:
            raise _BadItem(f"count {count} outside 0..100")
        return {
            "artist_name": artist_name,
            "artist_mbid": _optional_str(artist_mbid),
            "tag_name": tag_name,
            "tag_count": count,
            "tag_rank": position + 1,
        }

    return _collect(LASTFM_ARTIST_TAGS, items, build)


# -- tag.getTopTracks / chart.getTopTracks ---------------------------------------------------


def _rank(item: Mapping, position: int, offset: int) -> int:
    attr = item.get("@attr")
    rank = _int(attr.get("rank"), "@attr.rank") if isinstance(attr, Mapping) else None
    if rank is None:
        rank = offset + position + 1
    if rank <= 0:
        raise _BadItem(f"rank is not positive: {rank}")
    return rank


def _page_offset(root: Mapping, operation: str) -> int:
    paging = _paging_of(root, operation)
    per_page = _per_page(root) or 0
    return max(paging.page - 1, 0) * per_page


def parse_tag_top_tracks(payload: Mapping, tag_name: str) -> ParseResult:
    """Rows of ``raw.lastfm_tag_top_tracks``; rank from ``@attr.rank`` (position when absent),
    ``duration_s`` in seconds (``"0"`` → None). An unknown tag gives no rows (Last.fm answers 200 with [])."""
    root, items = _container(payload, "tracks", "track", "tag.getTopTracks")
    offset = _page_offset(root, "tag.getTopTracks")

    def build(position: int, item: Mapping) -> dict[str, Any]:
        artist = item.get("artist")
        return {
            "tag_name": tag_name,
            "track_rank": _rank(item, position, offset),
            "track_name": _require(_text(item.get("name")), "track name"),
            "track_mbid": _mbid(item.get("mbid")),
            "artist_name": _require(_text(artist), "artist name"),
            "artist_mbid": _mbid(artist),
            "duration_s": _positive_duration(item.get("duration"), "duration"),
            "track_url": _optional_str(item.get("url")),
        }

    return _collect(LASTFM_TAG_TOP_TRACKS, items, build)


def parse_chart_top_tracks(payload: Mapping) -> ParseResult:
    """Rows of ``raw.lastfm_chart_top_tracks``; rank = position on the chart (the chart
    carries no ``@attr.rank``), counting earlier pages."""
    root, items = _container(payload, "tracks", "track", "chart.getTopTracks")
    offset = _page_offset(root, "chart.getTopTracks")

    def build(position: int, item: Mapping) -> dict[str, Any]:
        artist = item.get("artist")
        return {
            "chart_rank": _rank(item, position, offset),
            "track_name": _require(_text(item.get("name")), "track name"),
            "track_mbid": _mbid(item.get("mbid")),
            "artist_name": _require(_text(artist), "artist name"),
            "artist_mbid": _mbid(artist),
            "playcount": _non_negative(item.get("playcount"), "playcount"),
            "listeners": _non_negative(item.get("listeners"), "listeners"),
            "duration_s": _positive_duration(item.get("duration"), "duration"),
            "track_url": _optional_str(item.get("url")),
        }

    return _collect(LASTFM_CHART_TOP_TRACKS, items, build)


# -- helpers for lists the raw tables do not store (top artists, similar artists) ------------


def list_items(payload: Mapping, root_key: str, list_key: str, operation: str = "") -> list[Mapping]:
    """The items of any list-shaped Last.fm payload (single object and ``""`` normalised)."""
    _root, items = _container(payload, root_key, list_key, operation or root_key)
    return [item for item in items if isinstance(item, Mapping)]


def list_paging(payload: Mapping, root_key: str, operation: str = "") -> Paging:
    return _paging_of(_root(payload, root_key, operation or root_key), operation or root_key)


def artist_names(payload: Mapping, root_key: str, list_key: str = "artist") -> list[str]:
    """Artist names of a top-artists / similar-artists payload, in order, blanks skipped."""
    names = []
    for item in list_items(payload, root_key, list_key):
        name = _text(item.get("name")) or _text(item.get("artist"))
        if name is not None:
            names.append(name)
    return names


# -- DataFrames ----------------------------------------------------------------------------------

# Raw frames are Arrow-backed (``pd.ArrowDtype``): the warehouse loaders hand Arrow buffers to
# DuckDB, PostgreSQL's CSV writer and Snowflake's Parquet writer without converting millions of
# Python strings first (that conversion cost more than DuckDB's whole insert).
_ARROW_TYPES = {
    "varchar": pa.string(),
    "bigint": pa.int64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}


def _arrow_column(values: list[Any], sql_type: str, name: str, table: str) -> pa.Array:
    try:
        return pa.array(values, type=_ARROW_TYPES[sql_type])
    except KeyError:
        raise ValueError(f"raw.{table}.{name} has SQL type {sql_type!r}, which raw frames do not support") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"raw.{table}.{name} ({sql_type}) holds a value of another type: {exc}") from exc


def to_raw_frame(
    rows: Sequence[Mapping[str, Any]],
    table: RawTable,
    *,
    source: str | None = None,
    ingested_at: datetime | None = None,
) -> pd.DataFrame:
    """A DataFrame with exactly the raw table's columns, in contract order, Arrow-backed types.

    Without ``source`` the audit columns are left out (the caller adds them); with it both
    ``source`` and ``ingested_at`` (default: now, naive UTC) are filled. Missing values are
    ``pd.NA``; timestamps are naive UTC (microseconds), dates Arrow ``date32``.
    """
    columns = data_columns(table)
    expected = set(columns)
    for row in rows:
        if set(row) != expected:
            # A renamed contract column must fail loudly, never load as an all-null column.
            raise ValueError(
                f"row does not match the columns of raw.{table.name}: "
                f"missing {sorted(expected - set(row))}, unexpected {sorted(set(row) - expected)}"
            )
    arrays = {
        column.name: _arrow_column([row[column.name] for row in rows], column.sql_type, column.name, table.name)
        for column in table.columns
        if column.name in expected
    }
    if source is not None:
        stamp = ingested_at or datetime.now(UTC).replace(tzinfo=None)
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
        arrays["source"] = pa.repeat(pa.scalar(source, pa.string()), len(rows))
        arrays["ingested_at"] = pa.repeat(pa.scalar(stamp, pa.timestamp("us")), len(rows))
        arrays = {name: arrays[name] for name in table.column_names}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def rejects_frame(
    rejects: Sequence[Reject], *, table: str, context: Mapping[str, object] | None = None
) -> pd.DataFrame:
    """Quarantine rows: one per reject with the reason and the raw item as JSON text."""
    records = [
        {
            "table_name": table,
            "position": r.position,
            "reason": r.reason,
            "record_json": json.dumps(r.record, ensure_ascii=False, sort_keys=True, default=str),
            **{k: (None if v is None else str(v)) for k, v in (context or {}).items()},
        }
        for r in rejects
    ]
    return pd.DataFrame.from_records(
        records, columns=["table_name", "position", "reason", "record_json", *(context or {})]
    )
