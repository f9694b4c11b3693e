"""Checks on the marts beyond dbt's own tests: completeness (blocking) and catalogue coverage.

Invariants inside one table (keys, not-null, relationships, value ranges such as the audio
features in [0, 1]) are dbt tests and reach Dagster as asset checks through dagster-dbt; the
Python checks here measure what dbt's tests do not: the share of complete rows and coverage
across the marts.
"""

import dagster as dg

from music_platform.defs.quality.checks import build_table_completeness_check
from music_platform.quality.contracts import MART_REQUIRED_FIELDS
from music_platform.resources import WarehouseResource

MARTS = "marts"
MIN_GENRES = 6
MIN_ARTISTS = 1000

mart_completeness_checks = [
    build_table_completeness_check(dg.AssetKey([MARTS, table]), MARTS, table, rules)
    for table, rules in MART_REQUIRED_FIELDS.items()
]


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
