"""One publication held in memory, built from the warehouse.

The service serves only what ``ml.model_registry`` names as the live publication (see
``published.py``): its recommendations, its model version's similar tracks and the track and
artist display fields copied when it was published -- never the live marts, never rows of a
version that is not published. With nothing published it serves nothing and says so.

A ``Snapshot`` is immutable: the service swaps the whole object when a newer publication goes
live, so a request that took a reference to it sees one publication from start to end.

Layout (1M users x 10 recommendations must load in seconds and fit in well under 1.5 GiB):
recommendations are compressed sparse rows -- ``user_offsets[u]:user_offsets[u + 1]`` slices
three numpy arrays (track index, score, reason index) -- and every track's and every reason's
JSON is serialised once, so answering is string concatenation. Rows are read as Arrow batches
and their ids turned into integer codes by Arrow's hash kernels: ten million rows never become
Python objects. When every user's answer fits the memory budget it is serialised at load.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from music_platform.identity import name_key_or_blank, track_lookup_keys
from music_platform.serving.limits import MAX_K
from music_platform.serving.published import (
    ARTISTS_TABLE,
    LIVE_PUBLICATION_SQL,
    PUBLICATION_COLUMN,
    REGISTRY_TABLE,
    TRACKS_TABLE,
    Publication,
)
from music_platform.warehouse.base import Warehouse, WarehouseError

log = logging.getLogger(__name__)

POPULAR_REASON = "popular with all listeners"
# Genre and artist candidate lists kept for cold start and similar-track fallbacks.
TRACKS_PER_GENRE = 500
TRACKS_PER_ARTIST = 50
GENRES_PER_ARTIST = 5

_VERSION_PATTERN = re.compile(r"^[\w.:+\-]{1,128}$")


class SnapshotError(WarehouseError):
    """The warehouse holds data the service cannot serve (the message says what)."""


# -- reading the warehouse ------------------------------------------------------------------
BATCH_ROWS = 1_000_000
NO_RANK = 2**20  # rows without a rank sort last


class TableReader(Protocol):
    """The reads a load needs. ``open_reader`` gives one for any warehouse."""

    def table_exists(self, schema: str, table: str) -> bool: ...

    def query_df(self, sql: str) -> pd.DataFrame: ...

    def query_batches(self, sql: str) -> Iterator[pa.RecordBatch]: ...


class _WarehouseReader:
    """Any ``Warehouse``: each query is one round trip, results converted to Arrow batches."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def table_exists(self, schema: str, table: str) -> bool:
        return self.warehouse.table_exists(schema, table)

    def query_df(self, sql: str) -> pd.DataFrame:
        return self.warehouse.query_df(sql)

    def query_batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        frame = self.warehouse.query_df(sql)
        yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches(BATCH_ROWS)


class _DuckDBReader:
    """All reads of one load through one read-only connection: a consistent view of the file,
    several workers can load at once (read-only connections do not exclude each other), and
    big results stream as Arrow batches instead of becoming millions of Python objects."""

    def __init__(self, connection) -> None:
        self.connection = connection

    def table_exists(self, schema: str, table: str) -> bool:
        if self.connection is None:
            return False
        # fetchall: a result left unfinished would block the connection's next streamed query
        found = self.connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchall()
        return bool(found and found[0][0])

    def query_df(self, sql: str) -> pd.DataFrame:
        if self.connection is None:
            raise SnapshotError("the DuckDB warehouse file does not exist yet")
        return self.connection.execute(sql).df()

    def query_batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        if self.connection is None:
            raise SnapshotError("the DuckDB warehouse file does not exist yet")
        yield from self.connection.sql(sql).to_arrow_reader(BATCH_ROWS)


@contextlib.contextmanager
def open_reader(warehouse: Warehouse) -> Iterator[TableReader]:
    """A reader for one reload: a read-only connection on DuckDB, the warehouse API elsewhere."""
    from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

    if not isinstance(warehouse, DuckDBWarehouse):
        yield _WarehouseReader(warehouse)
        return
    if not warehouse.path.exists():  # never create the file: the pipeline owns it
        yield _DuckDBReader(None)
        return
    import duckdb

    try:
        opened = warehouse.connect(read_only=True)
        connection = opened.__enter__()
    except duckdb.ConnectionException:
        # This process already has the file open for writing (DuckDB refuses to mix modes
        # within one process): read through that configuration instead.
        opened = warehouse.connect()
        connection = opened.__enter__()
    try:
        yield _DuckDBReader(connection)
    finally:
        opened.__exit__(None, None, None)


# -- which publication to serve --------------------------------------------------------------
NOTHING_PUBLISHED = "no model version is published yet: run the pipeline (music-platform demo, or materialise ml/)"


def _has_column(reader: TableReader, schema: str, table: str, column: str) -> bool:
    if not reader.table_exists(schema, table):
        return False
    return column in [str(c).lower() for c in reader.query_df(f"select * from {schema}.{table} where 1 = 0").columns]


def live_publication(reader: TableReader) -> Publication | None:
    """The publication to serve: that of the latest published version in ``ml.model_registry``.

    None when nothing is published (no registry, or no published version with a publication):
    recommendations that were written but never published are not served.
    """
    if not _has_column(reader, "ml", REGISTRY_TABLE, PUBLICATION_COLUMN):
        return None
    df = reader.query_df(LIVE_PUBLICATION_SQL)
    if df.empty or pd.isna(df.iloc[0, 0]) or pd.isna(df.iloc[0, 1]):
        return None
    return Publication(str(df.iloc[0, 0]), str(df.iloc[0, 1]))


def latest_published_version(reader: TableReader) -> str | None:
    """The model version of the live publication (None when nothing is published)."""
    publication = live_publication(reader)
    return publication.model_version if publication else None


def publication_of_version(reader: TableReader, model_version: str) -> Publication:
    """The publication a published version has (what a rollback to it would serve)."""
    if _has_column(reader, "ml", REGISTRY_TABLE, PUBLICATION_COLUMN):
        df = reader.query_df(
            f"select cast({PUBLICATION_COLUMN} as varchar) as publication_id from ml.{REGISTRY_TABLE} "
            f"where cast(model_version as varchar) = {_sql_literal(model_version)} "
            f"and lower(status) = 'published' and {PUBLICATION_COLUMN} is not null"
        )
        if not df.empty:
            return Publication(model_version, str(df.iloc[0, 0]))
    raise SnapshotError(f"model version {model_version} is not published")


def _sql_literal(value: str) -> str:
    if not _VERSION_PATTERN.fullmatch(value):
        raise SnapshotError(f"model_version {value!r} has characters the service does not accept")
    return "'" + value.replace("'", "''") + "'"


# -- the catalogue of tracks and artists -----------------------------------------------------
@dataclass(frozen=True, eq=False)
class Catalogue:
    """Every track the snapshot can name, with what cold start and fallbacks need."""

    track_ids: list[str]
    track_index: dict[str, int]
    track_fragments: list[bytes]  # '"track_id":..,"track_name":..,"artist_id":..,"artist_name":..'
    track_names: list[str | None]
    track_artist: np.ndarray  # int32 artist index, -1 when unknown
    track_listens: np.ndarray  # int64
    track_popularity: np.ndarray  # float64 in [0, 1]: log listens over log max listens
    track_genres: list[tuple[str, ...]]
    artist_ids: list[str]
    artist_index: dict[str, int]
    artist_names: list[str | None]
    artist_genres: list[tuple[str, ...]]
    artist_listens: np.ndarray  # int64, sum of the artist's track listens
    artist_by_name: dict[str, int]
    track_by_name: dict[str, int]  # normalised "title" and "artist - title" -> most listened track
    tracks_by_genre: dict[str, np.ndarray]
    tracks_by_artist: dict[int, np.ndarray]
    popular: np.ndarray  # int32 track indices, most listened first (MAX_K of them)

    @property
    def size(self) -> int:
        return len(self.track_ids)

    def track_label(self, track: int) -> str:
        name = self.track_names[track] or self.track_ids[track]
        artist = self.track_artist[track]
        if artist >= 0 and self.artist_names[artist]:
            return f"{name} by {self.artist_names[artist]}"
        return name

    def track_json(self, track: int) -> bytes:
        return b"{" + self.track_fragments[track] + b"}"


def _split_genres(*values: object) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        for part in str(value).split(";"):
            genre = part.strip().lower()
            if genre:
                seen.setdefault(genre, None)
    return tuple(seen)


def _none_if_missing(values: Iterable[object]) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v for v in values]


def _top_by_group(groups: np.ndarray, order_key: np.ndarray, limit: int) -> dict:
    """For each group value, up to ``limit`` row positions with the largest ``order_key``."""
    if len(groups) == 0:
        return {}
    order = np.lexsort((-order_key, groups))
    sorted_groups = groups[order]
    boundaries = np.flatnonzero(np.diff(sorted_groups)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(order)]))
    return {
        sorted_groups[s].item(): order[s : min(e, s + limit)].astype(np.int32)
        for s, e in zip(starts, ends, strict=True)
    }


def build_catalogue(tracks: pd.DataFrame, artists: pd.DataFrame, recommended_counts: np.ndarray) -> Catalogue:
    """``tracks`` is ordered by track index; ``artists`` has artist_id, artist_name, genre, top_tags."""
    n_tracks = len(tracks)
    track_ids = tracks["track_id"].astype(str).tolist()
    track_names = _none_if_missing(tracks["track_name"].tolist())
    track_artist_ids = _none_if_missing(tracks["artist_id"].tolist())
    track_artist_names = _none_if_missing(tracks["artist_name"].tolist())

    # Artists: the artist table first, then any artist only the track table knows.
    artist_ids = [str(a) for a in artists["artist_id"].tolist()]
    artist_names = _none_if_missing(artists["artist_name"].tolist())
    artist_genres = [
        _split_genres(g, t)[:GENRES_PER_ARTIST]
        for g, t in zip(artists["genre"].tolist(), artists["top_tags"].tolist(), strict=True)
    ]
    artist_index = {a: i for i, a in enumerate(artist_ids)}
    for artist_id, artist_name in zip(track_artist_ids, track_artist_names, strict=True):
        if artist_id is not None and artist_id not in artist_index:
            artist_index[artist_id] = len(artist_ids)
            artist_ids.append(artist_id)
            artist_names.append(artist_name)
            artist_genres.append(())
    track_artist = np.array([artist_index[a] if a is not None else -1 for a in track_artist_ids], dtype=np.int32)

    listens = pd.to_numeric(tracks["listen_count"], errors="coerce").fillna(0).clip(lower=0).to_numpy(np.int64)
    if n_tracks and listens.max() == 0:
        # No listening counts (no marts yet): how often the model recommends a track stands in.
        listens = recommended_counts.astype(np.int64)
    max_log = math.log1p(int(listens.max())) if n_tracks else 0.0
    popularity = np.log1p(listens) / max_log if max_log > 0 else np.zeros(n_tracks)

    track_genres = [
        _split_genres(g, gs) for g, gs in zip(tracks["genre"].tolist(), tracks["genres"].tolist(), strict=True)
    ]

    # Artists with no genre of their own take their tracks' genres, weighted by listens.
    weights: dict[int, dict[str, float]] = {}
    for track, genres in enumerate(track_genres):
        artist = int(track_artist[track])
        if artist >= 0 and genres and not artist_genres[artist]:
            bucket = weights.setdefault(artist, {})
            for genre in genres:
                bucket[genre] = bucket.get(genre, 0.0) + 1.0 + float(listens[track])
    for artist, bucket in weights.items():
        artist_genres[artist] = tuple(sorted(bucket, key=lambda g: (-bucket[g], g))[:GENRES_PER_ARTIST])

    fragments = [
        orjson.dumps({"track_id": tid, "track_name": name, "artist_id": aid, "artist_name": aname})[1:-1]
        for tid, name, aid, aname in zip(track_ids, track_names, track_artist_ids, track_artist_names, strict=True)
    ]

    # Name lookups; on a clash the most listened entry wins.
    by_listens = np.argsort(-listens, kind="stable")
    track_by_name: dict[str, int] = {}
    for track in by_listens.tolist():
        for key in track_lookup_keys(track_artist_names[track], track_names[track]):
            track_by_name.setdefault(key, track)
    artist_listens = np.zeros(len(artist_ids), dtype=np.int64)
    known_artist = track_artist >= 0
    np.add.at(artist_listens, track_artist[known_artist], listens[known_artist])
    artist_by_name: dict[str, int] = {}
    for artist in np.argsort(-artist_listens, kind="stable").tolist():
        if artist_names[artist]:
            artist_by_name.setdefault(name_key_or_blank(artist_names[artist]), artist)

    genre_rows = [(genre, track) for track, genres in enumerate(track_genres) for genre in genres]
    tracks_by_genre: dict[str, np.ndarray] = {}
    if genre_rows:
        genre_codes, genre_labels = pd.factorize(pd.Series([g for g, _ in genre_rows]))
        genre_tracks = np.array([t for _, t in genre_rows], dtype=np.int64)
        grouped = _top_by_group(genre_codes.astype(np.int64), listens[genre_tracks], TRACKS_PER_GENRE)
        tracks_by_genre = {
            str(genre_labels[code]): genre_tracks[rows].astype(np.int32) for code, rows in grouped.items()
        }
    tracks_by_artist = {
        int(artist): rows
        for artist, rows in _top_by_group(
            track_artist[known_artist].astype(np.int64),
            listens[known_artist],
            TRACKS_PER_ARTIST,
        ).items()
    }
    # _top_by_group returned positions within the known-artist subset: map back to track indices.
    known_positions = np.flatnonzero(known_artist).astype(np.int32)
    tracks_by_artist = {artist: known_positions[rows] for artist, rows in tracks_by_artist.items()}

    popular = np.lexsort((np.array(track_ids, dtype=object).astype(str), -listens))[:MAX_K].astype(np.int32)
    return Catalogue(
        track_ids=track_ids,
        track_index={t: i for i, t in enumerate(track_ids)},
        track_fragments=fragments,
        track_names=track_names,
        track_artist=track_artist,
        track_listens=listens,
        track_popularity=popularity,
        track_genres=track_genres,
        artist_ids=artist_ids,
        artist_index=artist_index,
        artist_names=artist_names,
        artist_genres=artist_genres,
        artist_listens=artist_listens,
        artist_by_name=artist_by_name,
        track_by_name=track_by_name,
        tracks_by_genre=tracks_by_genre,
        tracks_by_artist=tracks_by_artist,
        popular=popular,
    )


# -- the snapshot ----------------------------------------------------------------------------
_USER_HEAD = b'{"user_id":%s,"model_version":%s,"fallback":%s,"k":%d,"recommendations":['
_ITEM = b'{"rank":%d,%s,"score":%.6g,"reason":%s}'
# Estimated bytes of one answer item beyond its track fragment and reason: rank, score, keys.
_ITEM_OVERHEAD_BYTES = 48


def _format_item(rank: int, fragment: bytes, score: float, reason_json: bytes) -> bytes:
    return _ITEM % (rank, fragment, score, reason_json)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One model version in memory. ``preserialise_budget_bytes`` > 0 builds every user's
    answer items once at load when they fit in that budget (a dictionary lookup then answers);
    above it, items are formatted per request from the compact arrays."""

    model_version: str | None
    catalogue: Catalogue
    user_index: dict[str, int]
    user_offsets: np.ndarray  # int64, len = users + 1
    rec_tracks: np.ndarray  # int32
    rec_scores: np.ndarray  # float32
    rec_reasons: np.ndarray  # int32 index into reason_json
    reason_json: list[bytes]
    similar_offsets: np.ndarray  # int64, len = tracks + 1
    similar_tracks: np.ndarray  # int32
    similar_scores: np.ndarray  # float32
    sample_users: tuple[str, ...]
    preserialise_budget_bytes: int = 0
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_seconds: float = 0.0
    publication_id: str | None = None
    # Why there is nothing to serve (an empty snapshot), for /health.
    unavailable_reason: str | None = None
    fallback_items: list[bytes] = field(init=False)
    version_json: bytes = field(init=False)
    user_items: list[bytes] | None = field(init=False)  # per user: its items joined by ","
    item_ends: np.ndarray | None = field(init=False)  # per recommendation: end of it in user_items

    def __post_init__(self) -> None:
        cat = self.catalogue
        reason = orjson.dumps(POPULAR_REASON)
        items = [
            _format_item(rank, cat.track_fragments[t], float(cat.track_popularity[t]), reason)
            for rank, t in enumerate(cat.popular.tolist(), 1)
        ]
        object.__setattr__(self, "fallback_items", items)
        object.__setattr__(self, "version_json", orjson.dumps(self.model_version))
        # memoryviews index and slice to plain Python ints/floats several times faster than numpy.
        object.__setattr__(self, "_offsets", memoryview(self.user_offsets))
        object.__setattr__(self, "_tracks", memoryview(self.rec_tracks))
        object.__setattr__(self, "_scores", memoryview(self.rec_scores))
        object.__setattr__(self, "_reasons", memoryview(self.rec_reasons))
        object.__setattr__(self, "user_items", None)
        object.__setattr__(self, "item_ends", None)
        if 0 < self.estimated_answer_bytes() <= self.preserialise_budget_bytes:
            self._preserialise()

    def estimated_answer_bytes(self) -> int:
        """Bytes that every user's full answer items take (the pre-serialisation cost)."""
        if not len(self.rec_tracks):
            return 0
        fragment_bytes = np.fromiter((len(f) for f in self.catalogue.track_fragments), np.int64, self.catalogue.size)
        reason_bytes = np.fromiter((len(r) for r in self.reason_json), np.int64, len(self.reason_json))
        per_object = 40  # a bytes object's header
        return int(
            fragment_bytes[self.rec_tracks].sum()
            + reason_bytes[self.rec_reasons].sum()
            + _ITEM_OVERHEAD_BYTES * len(self.rec_tracks)
            + per_object * self.user_count
        )

    def _preserialise(self) -> None:
        fragments = self.catalogue.track_fragments
        reasons = self.reason_json
        offsets = self._offsets
        tracks, scores, reason_codes = self._tracks, self._scores, self._reasons
        user_items: list[bytes] = []
        item_ends = np.zeros(len(self.rec_tracks), dtype=np.int32)
        for user in range(self.user_count):
            start, end = offsets[user], offsets[user + 1]
            items = [
                _ITEM % (rank, fragments[t], s, reasons[r])
                for rank, t, s, r in zip(
                    range(1, end - start + 1),
                    tracks[start:end].tolist(),
                    scores[start:end].tolist(),
                    reason_codes[start:end].tolist(),
                    strict=True,
                )
            ]
            user_items.append(b",".join(items))
            # End of item i = its length plus the items and commas before it.
            item_ends[start:end] = np.cumsum([len(item) + 1 for item in items]) - 1
        object.__setattr__(self, "user_items", user_items)
        object.__setattr__(self, "item_ends", item_ends)
        object.__setattr__(self, "_ends", memoryview(item_ends))

    # -- facts ---------------------------------------------------------------------------
    @property
    def user_count(self) -> int:
        return len(self.user_index)

    @property
    def recommendation_count(self) -> int:
        return int(len(self.rec_tracks))

    @property
    def similar_count(self) -> int:
        return int(len(self.similar_tracks))

    @property
    def is_empty(self) -> bool:
        """Nothing to answer with: no catalogue at all (the pipeline has not run)."""
        return self.catalogue.size == 0

    @property
    def preserialised(self) -> bool:
        return self.user_items is not None

    # -- answers ---------------------------------------------------------------------------
    def user_recommendations_json(self, user_id: str, k: int) -> bytes:
        """The user's top ``k``; an unknown user gets the popularity list flagged as fallback."""
        user = self.user_index.get(user_id)
        if user is None:
            head = _USER_HEAD % (orjson.dumps(user_id), self.version_json, b"true", k)
            return head + b",".join(self.fallback_items[:k]) + b"]}"
        head = _USER_HEAD % (orjson.dumps(user_id), self.version_json, b"false", k)
        start = self._offsets[user]
        count = self._offsets[user + 1] - start
        user_items = self.user_items
        if user_items is not None:
            items = user_items[user]
            return head + (items if k >= count else items[: self._ends[start + k - 1]]) + b"]}"
        end = start + min(k, count)
        fragments = self.catalogue.track_fragments
        reasons = self.reason_json
        items = [
            _ITEM % (rank, fragments[t], s, reasons[r])
            for rank, t, s, r in zip(
                range(1, end - start + 1),
                self._tracks[start:end].tolist(),
                self._scores[start:end].tolist(),
                self._reasons[start:end].tolist(),
                strict=True,
            )
        ]
        return head + b",".join(items) + b"]}"

    def similar_track_indices(self, track: int, k: int) -> tuple[list[int], list[float], bool]:
        """Model neighbours of ``track``; without any, popular tracks of its genre (fallback)."""
        start = int(self.similar_offsets[track])
        end = min(int(self.similar_offsets[track + 1]), start + k)
        if end > start:
            return self.similar_tracks[start:end].tolist(), self.similar_scores[start:end].tolist(), False
        cat = self.catalogue
        genres = cat.track_genres[track]
        pool = cat.tracks_by_genre.get(genres[0]) if genres else None
        if pool is None:
            pool = cat.popular
        chosen = [t for t in pool.tolist() if t != track][:k]
        return chosen, [float(cat.track_popularity[t]) for t in chosen], True

    def similar_tracks_json(self, track_id: str, k: int) -> bytes | None:
        """Tracks like ``track_id``, or None when the catalogue does not know it."""
        cat = self.catalogue
        track = cat.track_index.get(track_id)
        if track is None:
            return None
        neighbours, scores, fallback = self.similar_track_indices(track, k)
        fragments = cat.track_fragments
        items = [
            b'{"rank":%d,%s,"score":%.6g}' % (rank, fragments[t], s)
            for rank, (t, s) in enumerate(zip(neighbours, scores, strict=True), 1)
        ]
        head = b'{"track":%s,"model_version":%s,"fallback":%s,"k":%d,"similar":['
        return (
            head % (cat.track_json(track), self.version_json, b"true" if fallback else b"false", k)
            + b",".join(items)
            + b"]}"
        )

    def health(self) -> dict[str, object]:
        return {
            "model_version": self.model_version,
            "publication_id": self.publication_id,
            "users": self.user_count,
            "tracks": self.catalogue.size,
            "recommendations": self.recommendation_count,
            "similar_pairs": self.similar_count,
            "preserialised": self.preserialised,
            "loaded_at": self.loaded_at.isoformat(),
            "load_seconds": round(self.load_seconds, 3),
        }


def empty_snapshot(reason: str | None = None) -> Snapshot:
    """What the service holds while nothing is published (``reason`` says why, for /health)."""
    tracks = pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ("track_id", "track_name", "artist_id", "artist_name", "genre", "genres")}
        | {"listen_count": pd.Series(dtype=np.int64)}
    )
    artists = pd.DataFrame({c: pd.Series(dtype=object) for c in ("artist_id", "artist_name", "genre", "top_tags")})
    return Snapshot(
        model_version=None,
        catalogue=build_catalogue(tracks, artists, np.zeros(0, dtype=np.int64)),
        user_index={},
        user_offsets=np.zeros(1, dtype=np.int64),
        rec_tracks=np.zeros(0, dtype=np.int32),
        rec_scores=np.zeros(0, dtype=np.float32),
        rec_reasons=np.zeros(0, dtype=np.int32),
        reason_json=[],
        similar_offsets=np.zeros(1, dtype=np.int64),
        similar_tracks=np.zeros(0, dtype=np.int32),
        similar_scores=np.zeros(0, dtype=np.float32),
        sample_users=(),
        unavailable_reason=reason,
    )


# -- loading ---------------------------------------------------------------------------------
def _offsets(sorted_keys: np.ndarray, size: int) -> np.ndarray:
    counts = np.bincount(sorted_keys, minlength=size) if len(sorted_keys) else np.zeros(size, dtype=np.int64)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column if column.type == pa.string() else pc.cast(column, pa.string())


def _numbers(column: pa.Array, dtype: type) -> np.ndarray:
    """A copy (never a view: a view would keep the whole Arrow batch alive). The queries
    coalesce nulls away; NaN and infinite scores become 0 (they are not valid JSON)."""
    values = np.array(column.to_numpy(zero_copy_only=False), dtype=dtype, copy=True)
    if values.dtype.kind == "f":
        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return values


class _TrackUniverse:
    """Track id -> index: the dim_tracks ids first, then any id only the ml tables mention."""

    def __init__(self, track_ids: Sequence[str]) -> None:
        self.ids = list(track_ids)
        self._value_set = pa.array(self.ids, type=pa.string())

    def codes(self, column: pa.Array) -> np.ndarray:
        column = _strings(column)
        codes = pc.index_in(column, value_set=self._value_set)
        if codes.null_count:
            unknown = pc.unique(pc.filter(column, pc.is_null(codes))).to_pylist()
            self.ids.extend(unknown)
            self._value_set = pa.array(self.ids, type=pa.string())
            codes = pc.index_in(column, value_set=self._value_set)
        return codes.to_numpy(zero_copy_only=False).astype(np.int32, copy=True)


def _ordered(primary: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
    """The permutation sorting rows by (primary, rank), or None when they already are."""
    key = primary.astype(np.int64) * (int(rank.max(initial=0)) + 1) + rank
    if len(key) < 2 or bool(np.all(key[1:] >= key[:-1])):
        return None
    return np.argsort(key, kind="stable")


def _load_similar(reader: TableReader, version: str, universe: _TrackUniverse) -> tuple[np.ndarray, ...]:
    sources, neighbours, ranks, scores = [], [], [], []
    for batch in reader.query_batches(
        f"select cast(track_id as varchar) as track_id, cast(coalesce(rank, {NO_RANK}) as integer) as rank, "
        "cast(similar_track_id as varchar) as similar_track_id, cast(coalesce(score, 0) as float8) as score "
        f"from ml.similar_tracks where cast(model_version as varchar) = {version} "
        "and track_id is not null and similar_track_id is not null"
    ):
        sources.append(universe.codes(batch.column("track_id")))
        neighbours.append(universe.codes(batch.column("similar_track_id")))
        ranks.append(_numbers(batch.column("rank"), np.int32))
        scores.append(_numbers(batch.column("score"), np.float32))
    if not sources:
        return (np.zeros(0, np.int32),) * 2 + (np.zeros(0, np.float32),)
    source, neighbour, rank, score = (np.concatenate(parts) for parts in (sources, neighbours, ranks, scores))
    keep = source != neighbour  # a track is never its own neighbour
    source, neighbour, rank, score = source[keep], neighbour[keep], rank[keep], score[keep]
    order = _ordered(source, rank)
    if order is not None:
        source, neighbour, score = source[order], neighbour[order], score[order]
    return source, neighbour, score


def _load_recommendations(
    reader: TableReader, publication_id: str, universe: _TrackUniverse
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, reasons, user code, track code, score, reason code) ordered by user and rank.

    Rows stream in Arrow batches: user ids are dictionary-encoded per batch (a batch is freed
    whole, so no column of it may be kept) and the dictionaries unified at the end, so ten
    million rows never become Python objects."""
    where = (
        f"from ml.user_recommendations where {PUBLICATION_COLUMN} = {publication_id} "
        "and user_id is not null and track_id is not null"
    )
    reason_batches = list(
        reader.query_batches(f"select distinct coalesce(cast(reason as varchar), '') as reason {where}")
    )
    reasons = (
        _strings(pa.chunked_array([b.column("reason") for b in reason_batches]))
        if reason_batches
        else pa.array([], pa.string())
    )
    user_chunks, tracks, reason_codes, ranks, scores = [], [], [], [], []
    for batch in reader.query_batches(
        f"select cast(user_id as varchar) as user_id, cast(coalesce(rank, {NO_RANK}) as integer) as rank, "
        "cast(track_id as varchar) as track_id, cast(coalesce(score, 0) as float8) as score, "
        f"coalesce(cast(reason as varchar), '') as reason {where}"
    ):
        user_chunks.append(_strings(batch.column("user_id")).dictionary_encode())
        tracks.append(universe.codes(batch.column("track_id")))
        codes = pc.index_in(_strings(batch.column("reason")), value_set=reasons)
        if codes.null_count:
            raise SnapshotError("ml.user_recommendations changed while loading (a reason appeared)")
        reason_codes.append(codes.to_numpy(zero_copy_only=False).astype(np.int32, copy=True))
        ranks.append(_numbers(batch.column("rank"), np.int32))
        scores.append(_numbers(batch.column("score"), np.float32))
        del batch
    if not user_chunks:
        return [], [], *(np.zeros(0, np.int32),) * 2, np.zeros(0, np.float32), np.zeros(0, np.int32)
    unified = pa.chunked_array(user_chunks).unify_dictionaries()
    del user_chunks
    user_ids = unified.chunk(0).dictionary.to_pylist()
    users = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in unified.chunks]).astype(np.int32)
    del unified
    track, reason, score, rank = (np.concatenate(parts) for parts in (tracks, reason_codes, scores, ranks))
    del tracks, reason_codes, scores
    order = _ordered(users, rank)
    if order is not None:
        users, track, score, reason = users[order], track[order], score[order], reason[order]
    return user_ids, reasons.to_pylist(), users, track, score, reason


def load_snapshot(
    warehouse: TableReader, publication: Publication | str | None, preserialise_budget_bytes: int = 0
) -> Snapshot:
    """Read one publication: its recommendations, its model version's similar tracks and its
    display snapshot of tracks and artists.

    ``warehouse`` is a reader from ``open_reader`` (or a ``Warehouse``). ``publication`` is a
    :class:`Publication` (see :func:`live_publication`), a published model version (its
    publication), or None: nothing is published, and the empty snapshot says so. Raises
    ``SnapshotError`` when the publication is incomplete, so a half-written one is never
    swapped in.
    """
    started = time.perf_counter()
    reader = warehouse if hasattr(warehouse, "query_batches") else _WarehouseReader(warehouse)
    if publication is None:
        return empty_snapshot(NOTHING_PUBLISHED)
    if isinstance(publication, str):
        publication = publication_of_version(reader, publication)
    model_version = publication.model_version
    version = _sql_literal(model_version)
    pid = _sql_literal(publication.publication_id)
    for table in ("user_recommendations", TRACKS_TABLE, ARTISTS_TABLE):
        if not reader.table_exists("ml", table):
            raise SnapshotError(f"publication {publication.publication_id} is live but ml.{table} does not exist")

    tracks = reader.query_df(
        "select cast(track_id as varchar) as track_id, track_name, cast(artist_id as varchar) as artist_id, "
        f"artist_name, genre, genres, listen_count from ml.{TRACKS_TABLE} "
        f"where {PUBLICATION_COLUMN} = {pid} and track_id is not null order by track_id"
    ).drop_duplicates("track_id", keep="first")
    if tracks.empty:
        raise SnapshotError(
            f"publication {publication.publication_id} has no rows in ml.{TRACKS_TABLE} (its display snapshot)"
        )
    universe = _TrackUniverse(tracks["track_id"].tolist())

    similar_source = similar_tracks = np.zeros(0, np.int32)
    similar_scores = np.zeros(0, np.float32)
    if reader.table_exists("ml", "similar_tracks"):  # without it, tracks get their genre's popular ones
        similar_source, similar_tracks, similar_scores = _load_similar(reader, version, universe)
    user_list, reasons, user_codes, rec_tracks, rec_scores, rec_reasons = _load_recommendations(reader, pid, universe)
    if len(rec_tracks) == 0:
        raise SnapshotError(f"publication {publication.publication_id} has no rows in ml.user_recommendations")

    if len(universe.ids) > len(tracks):  # ids the ml tables mention but the display snapshot lacks
        extra = pd.DataFrame({"track_id": universe.ids[len(tracks) :]})
        tracks = pd.concat([tracks.astype(object), extra], ignore_index=True)
    tracks["listen_count"] = pd.to_numeric(tracks["listen_count"], errors="coerce").fillna(0)

    artists = reader.query_df(
        "select cast(artist_id as varchar) as artist_id, artist_name, genre, top_tags "
        f"from ml.{ARTISTS_TABLE} where {PUBLICATION_COLUMN} = {pid} and artist_id is not null"
    ).drop_duplicates("artist_id")

    n_tracks = len(tracks)
    recommended_counts = np.bincount(rec_tracks, minlength=n_tracks) if n_tracks else np.zeros(0, dtype=np.int64)
    catalogue = build_catalogue(tracks, artists, recommended_counts)
    snapshot = Snapshot(
        model_version=model_version,
        catalogue=catalogue,
        user_index=dict(zip(user_list, range(len(user_list)), strict=True)),
        user_offsets=_offsets(user_codes, len(user_list)),
        rec_tracks=rec_tracks,
        rec_scores=rec_scores,
        rec_reasons=rec_reasons,
        reason_json=[orjson.dumps(r) for r in reasons],
        similar_offsets=_offsets(similar_source, n_tracks),
        similar_tracks=similar_tracks,
        similar_scores=similar_scores,
        sample_users=tuple(heapq.nsmallest(20, user_list)),
        preserialise_budget_bytes=preserialise_budget_bytes,
        publication_id=publication.publication_id,
    )
    object.__setattr__(snapshot, "load_seconds", time.perf_counter() - started)
    log.info(
        "loaded model version %s (publication %s): %d users, %d recommendations, %d tracks, %d similar pairs "
        "in %.1f s (%s)",
        model_version,
        publication.publication_id,
        snapshot.user_count,
        snapshot.recommendation_count,
        catalogue.size,
        snapshot.similar_count,
        snapshot.load_seconds,
        "answers pre-serialised" if snapshot.preserialised else "answers formatted per request",
    )
    return snapshot
