"""Column contracts of every raw table (schema ``raw``).

One place says what each raw table holds, which fields are required and what counts as a
valid value. Loaders order their DataFrames by it, the completeness checks are generated
from it, and the dbt sources document the same columns.

Validity rules are SQL predicates over a column ``{col}``; they must work on DuckDB,
PostgreSQL and Snowflake alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_BLANK = "{col} is not null and trim(cast({col} as varchar)) <> ''"
NOT_NULL = "{col} is not null"
UNIT_INTERVAL = "{col} is not null and {col} >= 0 and {col} <= 1"
POSITIVE = "{col} is not null and {col} > 0"
NON_NEGATIVE = "{col} is not null and {col} >= 0"
# NOW_UTC is replaced by a UTC timestamp literal when the check runs (portable across
# warehouses and independent of the session time zone); one hour allows for clock skew.
NOW_UTC = "__NOW_UTC__"
NOT_IN_FUTURE = "{col} is not null and {col} <= " + NOW_UTC


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool = False
    rule: str | None = None  # validity predicate; defaults to NOT_NULL/NOT_BLANK when required

    def validity_sql(self) -> str | None:
        if not self.required and self.rule is None:
            return None
        rule = self.rule or (NOT_BLANK if self.sql_type == "varchar" else NOT_NULL)
        return "(" + rule.format(col=self.name) + ")"


@dataclass(frozen=True)
class RawTable:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_column: str | None = None
    description: str = ""
    extra_rules: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[Column]:
        return [c for c in self.columns if c.validity_sql() is not None]


def _audit_columns() -> tuple[Column, ...]:
    return (
        Column("source", "varchar", required=True),
        Column("ingested_at", "timestamp", required=True),
    )


LASTFM_SCROBBLES = RawTable(
    name="lastfm_scrobbles",
    description="One row per scrobble (user.getRecentTracks), now-playing rows excluded.",
    partition_column="scrobble_date",
    key=("user_name", "played_at_uts", "artist_name", "track_name"),
    columns=(
        Column("user_name", "varchar", required=True),
        Column("played_at_uts", "bigint", required=True, rule="{col} is not null and {col} > 0"),
        Column("played_at", "timestamp", required=True, rule=NOT_IN_FUTURE),
        Column("scrobble_date", "date", required=True),
        Column("track_name", "varchar", required=True),
        Column("track_mbid", "varchar"),
        Column("artist_name", "varchar", required=True),
        Column("artist_mbid", "varchar"),
        Column("album_name", "varchar"),
        Column("album_mbid", "varchar"),
        Column("track_url", "varchar"),
        *_audit_columns(),
    ),
)

LASTFM_USERS = RawTable(
    name="lastfm_users",
    description="Profiles of the tracked users (user.getInfo).",
    key=("user_name",),
    columns=(
        Column("user_name", "varchar", required=True),
        Column("real_name", "varchar"),
        Column("country", "varchar"),
        Column("age", "integer"),
        Column("gender", "varchar"),
        Column("subscriber", "boolean"),
        Column("playcount", "bigint", rule="{col} is null or {col} >= 0"),
        Column("registered_at", "timestamp", rule="{col} is null or {col} <= " + NOW_UTC),
        Column("url", "varchar"),
        *_audit_columns(),
    ),
)

LASTFM_ARTIST_TAGS = RawTable(
    name="lastfm_artist_tags",
    description="Top tags of each artist (artist.getTopTags); tag_count is Last.fm's 0-100 weight.",
    key=("artist_name", "tag_name"),
    columns=(
        Column("artist_name", "varchar", required=True),
        Column("artist_mbid", "varchar"),
        Column("tag_name", "varchar", required=True),
        Column("tag_count", "integer", required=True, rule="{col} is not null and {col} >= 0 and {col} <= 100"),
        Column("tag_rank", "integer", required=True, rule=POSITIVE),
        *_audit_columns(),
    ),
)

LASTFM_TAG_TOP_TRACKS = RawTable(
    name="lastfm_tag_top_tracks",
    description="Top tracks of each genre tag (tag.getTopTracks).",
    key=("tag_name", "track_rank"),
    columns=(
        Column("tag_name", "varchar", required=True),
        Column("track_rank", "integer", required=True, rule=POSITIVE),
        Column("track_name", "varchar", required=True),
        Column("track_mbid", "varchar"),
        Column("artist_name", "varchar", required=True),
        Column("artist_mbid", "varchar"),
        Column("duration_s", "integer", rule="{col} is null or {col} >= 0"),
        Column("track_url", "varchar"),
        *_audit_columns(),
    ),
)

LASTFM_CHART_TOP_TRACKS = RawTable(
    name="lastfm_chart_top_tracks",
    description="Global chart (chart.getTopTracks).",
    key=("chart_rank",),
    columns=(
        Column("chart_rank", "integer", required=True, rule=POSITIVE),
        Column("track_name", "varchar", required=True),
        Column("track_mbid", "varchar"),
        Column("artist_name", "varchar", required=True),
        Column("artist_mbid", "varchar"),
        Column("playcount", "bigint", rule="{col} is null or {col} >= 0"),
        Column("listeners", "bigint", rule="{col} is null or {col} >= 0"),
        Column("duration_s", "integer", rule="{col} is null or {col} >= 0"),
        Column("track_url", "varchar"),
        *_audit_columns(),
    ),
)

KAGGLE_TRACKS = RawTable(
    name="kaggle_tracks",
    description="Kaggle Spotify Tracks dataset: one row per distinct track_id, all its genres joined.",
    key=("track_id",),
    columns=(
        Column("track_id", "varchar", required=True),
        Column("artists", "varchar", required=True),
        Column("primary_artist", "varchar", required=True),
        Column("album_name", "varchar"),
        Column("track_name", "varchar", required=True),
        Column("popularity", "integer", required=True, rule="{col} is not null and {col} >= 0 and {col} <= 100"),
        Column("duration_ms", "bigint", required=True, rule=NON_NEGATIVE),
        Column("explicit", "boolean"),
        Column("danceability", "double", required=True, rule=UNIT_INTERVAL),
        Column("energy", "double", required=True, rule=UNIT_INTERVAL),
        Column("key", "integer", rule="{col} is null or ({col} >= -1 and {col} <= 11)"),
        Column("loudness", "double"),
        Column("mode", "integer", rule="{col} is null or {col} in (0, 1)"),
        Column("speechiness", "double", required=True, rule=UNIT_INTERVAL),
        Column("acousticness", "double", required=True, rule=UNIT_INTERVAL),
        Column("instrumentalness", "double", required=True, rule=UNIT_INTERVAL),
        Column("liveness", "double", required=True, rule=UNIT_INTERVAL),
        Column("valence", "double", required=True, rule=UNIT_INTERVAL),
        # The real file has tempo 0 for some tracks (silence); "tempo > 0" is checked in marts.
        Column("tempo", "double", required=True, rule=NON_NEGATIVE),
        Column("time_signature", "integer"),
        Column("track_genre", "varchar", required=True),
        Column("genres", "varchar", required=True),
        Column("source_file", "varchar", required=True),
        *_audit_columns(),
    ),
)

KAGGLE_TRACKS_REJECTED = RawTable(
    name="kaggle_tracks_rejected",
    description=(
        "Quarantine of the Kaggle loader: every CSV row that failed parsing or value validation, "
        "verbatim as JSON, with the file, its data-row number (1 = first row after the header) and why."
    ),
    key=("source_file", "row_number"),
    columns=(
        Column("source_file", "varchar", required=True),
        Column("row_number", "bigint", required=True, rule=POSITIVE),
        Column("raw_row", "varchar", required=True),
        Column("reason", "varchar", required=True),
        *_audit_columns(),
    ),
)

KAGGLE_FILES_REJECTED = RawTable(
    name="kaggle_files_rejected",
    description=(
        "Quarantine of the Kaggle loader, per file: every drop-folder CSV that could not be read at all "
        "(not UTF-8, not CSV, expected columns missing), with its sha256 and why. A copy of the file is "
        "kept in the audit trail (external/kaggle/kaggle_tracks/<time>/rejected/)."
    ),
    key=("source_file", "sha256"),
    columns=(
        Column("source_file", "varchar", required=True),
        Column("sha256", "varchar"),
        Column("reason", "varchar", required=True),
        Column("ingested_at", "timestamp", required=True),
    ),
)

SPOTIFY_TRACKS = RawTable(
    name="spotify_tracks",
    description=(
        "Spotify track metadata (GET /tracks?ids=, or GET /tracks/{id} where the batch endpoint is withdrawn). "
        "popularity is null where Spotify no longer sends it (development-mode apps since 2026)."
    ),
    key=("track_id",),
    columns=(
        Column("track_id", "varchar", required=True),
        Column("track_name", "varchar", required=True),
        Column("artist_ids", "varchar", required=True),  # ';'-joined, in credit order
        Column("artist_names", "varchar", required=True),  # ';'-joined, same order
        Column("primary_artist_id", "varchar", required=True),
        Column("primary_artist_name", "varchar", required=True),
        Column("album_id", "varchar"),
        Column("album_name", "varchar"),
        Column("album_release_date", "varchar"),  # '2004', '2004-06' or '2004-06-07' (see precision)
        Column("album_release_date_precision", "varchar"),
        Column("duration_ms", "bigint", required=True, rule=NON_NEGATIVE),
        Column("explicit", "boolean"),
        Column("popularity", "integer", rule="{col} is null or ({col} >= 0 and {col} <= 100)"),
        Column("isrc", "varchar"),
        Column("disc_number", "integer"),
        Column("track_number", "integer"),
        *_audit_columns(),
    ),
)

SPOTIFY_ARTISTS = RawTable(
    name="spotify_artists",
    description=(
        "Spotify artist metadata (GET /artists?ids= or GET /artists/{id}); genres, popularity and followers "
        "are null where Spotify no longer sends them."
    ),
    key=("artist_id",),
    columns=(
        Column("artist_id", "varchar", required=True),
        Column("artist_name", "varchar", required=True),
        Column("genres", "varchar"),  # ';'-joined as Spotify lists them
        Column("popularity", "integer", rule="{col} is null or ({col} >= 0 and {col} <= 100)"),
        Column("followers", "bigint", rule="{col} is null or {col} >= 0"),
        *_audit_columns(),
    ),
)

SPOTIFY_AUDIO_FEATURES = RawTable(
    name="spotify_audio_features",
    description=(
        "Spotify audio features (GET /audio-features?ids=; withdrawn for development-mode apps since Nov 2024)."
    ),
    key=("track_id",),
    columns=(
        Column("track_id", "varchar", required=True),
        Column("danceability", "double", required=True, rule=UNIT_INTERVAL),
        Column("energy", "double", required=True, rule=UNIT_INTERVAL),
        Column("key", "integer", rule="{col} is null or ({col} >= -1 and {col} <= 11)"),
        Column("loudness", "double"),
        Column("mode", "integer", rule="{col} is null or {col} in (0, 1)"),
        Column("speechiness", "double", required=True, rule=UNIT_INTERVAL),
        Column("acousticness", "double", required=True, rule=UNIT_INTERVAL),
        Column("instrumentalness", "double", required=True, rule=UNIT_INTERVAL),
        Column("liveness", "double", required=True, rule=UNIT_INTERVAL),
        Column("valence", "double", required=True, rule=UNIT_INTERVAL),
        Column("tempo", "double", required=True, rule=NON_NEGATIVE),
        Column("duration_ms", "bigint", rule="{col} is null or {col} >= 0"),
        Column("time_signature", "integer"),
        *_audit_columns(),
    ),
)

RAW_TABLES: dict[str, RawTable] = {
    t.name: t
    for t in (
        LASTFM_SCROBBLES,
        LASTFM_USERS,
        LASTFM_ARTIST_TAGS,
        LASTFM_TAG_TOP_TRACKS,
        LASTFM_CHART_TOP_TRACKS,
        KAGGLE_TRACKS,
        KAGGLE_TRACKS_REJECTED,
        KAGGLE_FILES_REJECTED,
        SPOTIFY_TRACKS,
        SPOTIFY_ARTISTS,
        SPOTIFY_AUDIO_FEATURES,
    )
}
