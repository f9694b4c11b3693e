"""Required fields of every checked table: the raw contracts plus the marts.

Each entry maps a column to its validity predicate (SQL over ``{col}``), the input of
``completeness_sql``. Raw tables take theirs from ``sources.schemas``; marts are listed here.
"""

from __future__ import annotations

from music_platform.sources.schemas import NOT_BLANK, NOT_IN_FUTURE, NOT_NULL, RAW_TABLES, UNIT_INTERVAL


def _rules(spec: dict[str, str]) -> dict[str, str]:
    return {col: "(" + rule.format(col=col) + ")" for col, rule in spec.items()}


MART_REQUIRED_FIELDS: dict[str, dict[str, str]] = {
    "dim_users": _rules({"user_id": NOT_BLANK, "listen_count": "{col} is not null and {col} >= 0"}),
    "dim_artists": _rules({"artist_id": NOT_BLANK, "artist_name": NOT_BLANK}),
    "artist_tags": _rules({"artist_id": NOT_BLANK, "tag_name": NOT_BLANK, "tag_weight": UNIT_INTERVAL}),
    "dim_tracks": _rules(
        {"track_id": NOT_BLANK, "track_name": NOT_BLANK, "artist_id": NOT_BLANK, "artist_name": NOT_BLANK}
    ),
    "fct_listens": _rules(
        {"listen_id": NOT_BLANK, "user_id": NOT_BLANK, "track_id": NOT_BLANK, "played_at": NOT_IN_FUTURE}
    ),
    "user_track_interactions": _rules(
        {"user_id": NOT_BLANK, "track_id": NOT_BLANK, "play_count": "{col} is not null and {col} >= 1"}
    ),
    "genre_summary": _rules({"genre": NOT_BLANK, "track_count": "{col} is not null and {col} > 0"}),
    "recent_listens": _rules(
        {
            "user_id": NOT_BLANK,
            "track_id": NOT_BLANK,
            "play_count": "{col} is not null and {col} >= 1",
            "last_played_at": NOT_IN_FUTURE,
        }
    ),
}

# Value ranges inside one mart (audio features in [0, 1], tempo > 0, popularity 0..100) are dbt
# tests (accepted_range in dbt/models/marts/_marts__models.yml), not Python checks.

ML_REQUIRED_FIELDS: dict[str, dict[str, str]] = {
    "user_recommendations": _rules(
        {
            "user_id": NOT_BLANK,
            "track_id": NOT_BLANK,
            "rank": "{col} is not null and {col} >= 1",
            "score": NOT_NULL,
            "reason": NOT_BLANK,
            "model_version": NOT_BLANK,
        }
    ),
    "similar_tracks": _rules(
        {
            "track_id": NOT_BLANK,
            "similar_track_id": NOT_BLANK,
            "rank": "{col} is not null and {col} >= 1",
            "score": NOT_NULL,
            "model_version": NOT_BLANK,
        }
    ),
}


def raw_required_fields(table: str) -> dict[str, str]:
    return {c.name: c.validity_sql() for c in RAW_TABLES[table].required_columns}
