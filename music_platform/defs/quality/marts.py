"""Checks on the marts beyond dbt's own tests: completeness (blocking), ranges and coverage."""

import dagster as dg

from music_platform.defs.quality.checks import build_table_completeness_check
from music_platform.quality.contracts import DIM_TRACKS_RANGES, MART_REQUIRED_FIELDS
from music_platform.resources import WarehouseResource

MARTS = "marts"
MIN_GENRES = 6
MIN_ARTISTS = 1000

mart_completeness_checks = [
    build_table_completeness_check(dg.AssetKey([MARTS, table]), MARTS, table, rules)
    for table, rules in MART_REQUIRED_FIELDS.items()
]


@dg.asset_check(
    asset=dg.AssetKey([MARTS, "dim_tracks"]),
    name="audio_features_in_range",
    blocking=True,
    description="Audio features lie in [0, 1], tempo > 0 and popularity in 0..100 wherever present.",
)
def audio_features_in_range(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    wh = warehouse.get_warehouse()
    clauses = ", ".join(
        f"sum(case when not ({rule}) then 1 else 0 end) as {col}" for col, rule in DIM_TRACKS_RANGES.items()
    )
    frame = wh.query_df(f"select count(*) as total_rows, {clauses} from {wh.qualified(MARTS, 'dim_tracks')}")
    frame.columns = [c.lower() for c in frame.columns]
    row = frame.fillna(0).iloc[0]
    violations = {col: int(row[col]) for col in DIM_TRACKS_RANGES if int(row[col])}
    covered = wh.query_df(
        f"select count(*) as n from {wh.qualified(MARTS, 'dim_tracks')} where audio_features_source is not null"
    ).iloc[0, 0]
    return dg.AssetCheckResult(
        passed=not violations,
        metadata={
            "rows_checked": dg.MetadataValue.int(int(row["total_rows"])),
            "violations": dg.MetadataValue.json(violations),
            "tracks_with_audio_features": dg.MetadataValue.int(int(covered)),
        },
        description="all audio features in range" if not violations else f"out of range: {violations}",
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "genre_coverage",
            asset=dg.AssetKey([MARTS, "genre_summary"]),
            description=f"The marts cover at least {MIN_GENRES} genres.",
        ),
        dg.AssetCheckSpec(
            "artist_coverage",
            asset=dg.AssetKey([MARTS, "dim_artists"]),
            description=f"The marts hold at least {MIN_ARTISTS} artists.",
        ),
    ],
    can_subset=True,
)
def catalogue_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get_warehouse()
    selected = {key.name for key in context.selected_asset_check_keys}
    if "genre_coverage" in selected:
        genres = int(wh.query_df(f"select count(*) as n from {wh.qualified(MARTS, 'genre_summary')}").iloc[0, 0])
        yield dg.AssetCheckResult(
            check_name="genre_coverage",
            asset_key=dg.AssetKey([MARTS, "genre_summary"]),
            passed=genres >= MIN_GENRES,
            metadata={"genres": dg.MetadataValue.int(genres), "minimum": dg.MetadataValue.int(MIN_GENRES)},
            description=f"{genres} genres (minimum {MIN_GENRES})",
        )
    if "artist_coverage" in selected:
        artists = int(wh.query_df(f"select count(*) as n from {wh.qualified(MARTS, 'dim_artists')}").iloc[0, 0])
        yield dg.AssetCheckResult(
            check_name="artist_coverage",
            asset_key=dg.AssetKey([MARTS, "dim_artists"]),
            passed=artists >= MIN_ARTISTS,
            metadata={"artists": dg.MetadataValue.int(artists), "minimum": dg.MetadataValue.int(MIN_ARTISTS)},
            description=f"{artists} artists (minimum {MIN_ARTISTS})",
        )
