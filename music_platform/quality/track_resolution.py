"""How well Last.fm tracks were resolved to Spotify/Kaggle ids, and where the sources disagree.

Measured on the dbt outputs (``marts.dim_tracks``, ``intermediate.int_tracks_resolved``); the
Dagster checks in ``music_platform/defs/quality/track_resolution.py`` turn them into WARN
verdicts. Plain SQL that runs on DuckDB, PostgreSQL and Snowflake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from music_platform.warehouse import Warehouse

DEFAULT_MIN_MATCH_RATE = 0.5
DEFAULT_MAX_CONFLICT_SHARE = 0.05
#: Durations further apart than this disagree (the flag is computed in int_tracks_resolved).
DURATION_TOLERANCE_MS = 10_000


def _frame(warehouse: Warehouse, sql: str) -> pd.DataFrame:
    frame = warehouse.query_df(sql)
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def _plain(value: object) -> object:
    """A JSON-ready value: numpy scalars become Python ones, missing values None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _counts(warehouse: Warehouse, table: str, column: str) -> dict[str, int]:
    frame = _frame(warehouse, f"select {column} as value, count(*) as n from {table} group by {column}")
    return {("none" if pd.isna(r.value) else str(r.value)): int(r.n) for r in frame.itertuples(index=False)}


@dataclass
class MatchRate:
    """Share of the marts' tracks that have a Spotify track id (hence Spotify/Kaggle values)."""

    tracks: int
    matched: int
    listens: int
    matched_listens: int
    by_method: dict[str, int] = field(default_factory=dict)
    audio_features_by_source: dict[str, int] = field(default_factory=dict)
    genre_by_source: dict[str, int] = field(default_factory=dict)
    popularity_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.matched / self.tracks if self.tracks else 0.0

    @property
    def listen_rate(self) -> float:
        """Share of listens whose track is matched (what the recommender's features see)."""
        return self.matched_listens / self.listens if self.listens else 0.0

    def describe(self, threshold: float) -> str:
        return (
            f"{self.matched} of {self.tracks} tracks matched to a Spotify id ({self.rate:.1%}; "
            f"{self.listen_rate:.1%} of listens), threshold {threshold:.0%}; by method {self.by_method}"
        )


def measure_match_rate(warehouse: Warehouse, schema: str = "marts", table: str = "dim_tracks") -> MatchRate:
    qualified = warehouse.qualified(schema, table)
    totals = (
        _frame(
            warehouse,
            "select count(*) as tracks, "
            "sum(case when spotify_track_id is not null then 1 else 0 end) as matched, "
            "sum(listen_count) as listens, "
            "sum(case when spotify_track_id is not null then listen_count else 0 end) as matched_listens "
            f"from {qualified}",
        )
        .fillna(0)
        .iloc[0]
    )
    return MatchRate(
        tracks=int(totals["tracks"]),
        matched=int(totals["matched"]),
        listens=int(totals["listens"]),
        matched_listens=int(totals["matched_listens"]),
        by_method=_counts(warehouse, qualified, "match_method"),
        audio_features_by_source=_counts(warehouse, qualified, "audio_features_source"),
        genre_by_source=_counts(warehouse, qualified, "genre_source"),
        popularity_by_source=_counts(warehouse, qualified, "popularity_source"),
    )


@dataclass
class SourceConflicts:
    """Matched tracks whose sources disagree on the duration or on the artist's name."""

    matched: int
    duration_conflicts: int
    artist_name_conflicts: int
    examples: list[dict[str, object]] = field(default_factory=list)

    @property
    def conflicting(self) -> int:
        return self.duration_conflicts + self.artist_name_conflicts

    @property
    def share(self) -> float:
        """Conflicts per matched track (a track with both conflicts counts twice)."""
        return self.conflicting / self.matched if self.matched else 0.0

    def describe(self, max_share: float) -> str:
        return (
            f"{self.duration_conflicts} duration conflicts (> {DURATION_TOLERANCE_MS // 1000} s apart) and "
            f"{self.artist_name_conflicts} artist-name conflicts among {self.matched} matched tracks "
            f"({self.share:.1%}; at most {max_share:.0%} expected)"
        )


def measure_source_conflicts(
    warehouse: Warehouse,
    schema: str = "intermediate",
    table: str = "int_tracks_resolved",
    *,
    examples: int = 10,
) -> SourceConflicts:
    qualified = warehouse.qualified(schema, table)
    totals = (
        _frame(
            warehouse,
            "select sum(case when spotify_track_id is not null then 1 else 0 end) as matched, "
            "sum(duration_conflict) as duration_conflicts, sum(artist_name_conflict) as artist_name_conflicts "
            f"from {qualified}",
        )
        .fillna(0)
        .iloc[0]
    )
    sample = _frame(
        warehouse,
        "select artist_name, track_name, spotify_track_id, match_method, duration_conflict, artist_name_conflict "
        f"from {qualified} where duration_conflict = 1 or artist_name_conflict = 1 "
        f"order by artist_name, track_name limit {int(examples)}",
    )
    return SourceConflicts(
        matched=int(totals["matched"]),
        duration_conflicts=int(totals["duration_conflicts"]),
        artist_name_conflicts=int(totals["artist_name_conflicts"]),
        examples=[{k: _plain(v) for k, v in row.items()} for row in sample.to_dict("records")],
    )
