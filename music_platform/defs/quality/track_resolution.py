"""Checks on cross-source track resolution: the match rate, and conflicts between sources.

Both are WARN: a low match rate or disagreeing sources make the recommendations poorer (fewer
tracks with features), not wrong, so nothing downstream is blocked. Thresholds are check config
(set them in the launchpad or a run config: ``ops: {track_match_rate: {config: {min_match_rate: 0.3}}}``).
"""

import dagster as dg

from music_platform.quality.track_resolution import (
    DEFAULT_MAX_CONFLICT_SHARE,
    DEFAULT_MIN_MATCH_RATE,
    measure_match_rate,
    measure_source_conflicts,
)
from music_platform.resources import WarehouseResource

DIM_TRACKS = dg.AssetKey(["marts", "dim_tracks"])
TRACKS_RESOLVED = dg.AssetKey(["intermediate", "int_tracks_resolved"])


class TrackMatchRateConfig(dg.Config):
    min_match_rate: float = DEFAULT_MIN_MATCH_RATE


class SourceConflictsConfig(dg.Config):
    max_conflict_share: float = DEFAULT_MAX_CONFLICT_SHARE


@dg.asset_check(
    asset=DIM_TRACKS,
    name="track_match_rate",
    description=f"At least min_match_rate (default {DEFAULT_MIN_MATCH_RATE:.0%}) of the tracks are matched to a "
    "Spotify track id (through the Kaggle file's names and MBIDs, or a Spotify search), so they carry genre, "
    "popularity and audio features. WARN below; metadata has the rate, the listen-weighted rate, and the counts "
    "per match method and per value source.",
)
def track_match_rate(config: TrackMatchRateConfig, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    wh = warehouse.get_warehouse()
    rate = measure_match_rate(wh)
    return dg.AssetCheckResult(
        passed=rate.rate >= config.min_match_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "match_rate": dg.MetadataValue.float(round(rate.rate, 6)),
            "listen_match_rate": dg.MetadataValue.float(round(rate.listen_rate, 6)),
            "threshold": dg.MetadataValue.float(config.min_match_rate),
            "tracks": dg.MetadataValue.int(rate.tracks),
            "matched_tracks": dg.MetadataValue.int(rate.matched),
            "by_match_method": dg.MetadataValue.json(rate.by_method),
            "audio_features_source": dg.MetadataValue.json(rate.audio_features_by_source),
            "genre_source": dg.MetadataValue.json(rate.genre_by_source),
            "popularity_source": dg.MetadataValue.json(rate.popularity_by_source),
        },
        description=rate.describe(config.min_match_rate),
    )


@dg.asset_check(
    asset=TRACKS_RESOLVED,
    name="source_conflicts",
    description="Matched tracks whose sources disagree: durations (Spotify, Kaggle, Last.fm) more than 10 s apart, "
    "or an artist name (Kaggle, Spotify) that does not normalise to the Last.fm one. Counted; WARN when they "
    f"exceed max_conflict_share (default {DEFAULT_MAX_CONFLICT_SHARE:.0%}) of the matched tracks.",
)
def source_conflicts(config: SourceConflictsConfig, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    conflicts = measure_source_conflicts(warehouse.get_warehouse())
    return dg.AssetCheckResult(
        passed=conflicts.share <= config.max_conflict_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "matched_tracks": dg.MetadataValue.int(conflicts.matched),
            "duration_conflicts": dg.MetadataValue.int(conflicts.duration_conflicts),
            "artist_name_conflicts": dg.MetadataValue.int(conflicts.artist_name_conflicts),
            "conflict_share": dg.MetadataValue.float(round(conflicts.share, 6)),
            "threshold": dg.MetadataValue.float(config.max_conflict_share),
            "examples": dg.MetadataValue.json(conflicts.examples),
        },
        description=conflicts.describe(config.max_conflict_share),
    )
