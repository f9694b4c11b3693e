"""Spotify raw assets: track and artist metadata and audio features for the tracks the marts know.

The Spotify ids come from ``intermediate/int_tracks_kaggle_matched`` (Last.fm tracks matched to
the Kaggle file's Spotify ids by normalised names and MBIDs), so these assets sit between two
parts of the dbt project; Dagster runs the dbt models upstream of them first and the rest
after them. Logic lives in ``music_platform.sources.spotify.ingest``.

What they do when Spotify cannot give everything:

- **not configured** (no SPOTIFY_CLIENT_ID/SECRET): nothing is asked, the tables are created
  empty with their columns (so the dbt sources exist) or left as they are, and the metadata
  says so. The marts then take every value from the Kaggle file.
- **capability withdrawn** (HTTP 403 for development-mode apps): recorded in the metadata
  (``unavailable_capabilities``) and in a WARN check; the run goes on and dbt falls back to
  the Kaggle file's values for what is missing.
- **rate limited past the cap, or an outage**: what was fetched is kept, the rest is asked
  again next run; a WARN check says how many ids were not answered and why.
- **bad credentials**: the asset fails without retry (a retry cannot fix a wrong secret).
"""

import dagster as dg

from music_platform.defs.quality.checks import (
    completeness_result,
    completeness_spec,
    key_unique_result,
    key_unique_spec,
)
from music_platform.lib.metadata import table_metadata
from music_platform.policies import OWNERS, REFERENCE_FRESHNESS, STEP_RETRY, fail_fast_on_permanent_source_errors
from music_platform.quality.completeness import measure_completeness
from music_platform.quality.contracts import raw_required_fields
from music_platform.resources import ArtifactStoreResource, SpotifyResource, WarehouseResource
from music_platform.sources.landing import AuditTrailWriter, quarantine, utc_now
from music_platform.sources.schemas import SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES, SPOTIFY_TRACKS, RawTable
from music_platform.sources.spotify.ingest import (
    CANDIDATES_SCHEMA,
    CANDIDATES_TABLE,
    LOOKUPS_TABLE,
    RAW,
    SpotifyLoad,
    empty_frame,
    fetch_artists,
    fetch_audio_features,
    fetch_tracks,
    plan_artist_lookups,
    plan_audio_feature_lookups,
    plan_track_lookups,
    unanswered_reasons,
)

# Every step that calls Spotify runs in this pool (one slot by default): the client's rate
# limiter is per process.
SPOTIFY_API_POOL = "spotify_api"
CAPABILITIES_CHECK = "capabilities_available"
COMPLETE_CHECK = "lookups_complete"
NOT_CONFIGURED = (
    "Spotify not configured (SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET unset): nothing fetched; "
    "genre, popularity and audio features come from the Kaggle file."
)
CANDIDATES_KEY = dg.AssetKey([CANDIDATES_SCHEMA, CANDIDATES_TABLE])


def _key(table: RawTable) -> dg.AssetKey:
    return dg.AssetKey([RAW, table.name])


def _check_specs(table: RawTable) -> list[dg.AssetCheckSpec]:
    key = _key(table)
    return [
        completeness_spec(key),
        key_unique_spec(key, table.key),
        dg.AssetCheckSpec(
            CAPABILITIES_CHECK,
            asset=key,
            description="Every Spotify endpoint this asset needs is available to the app (WARN lists the ones "
            "Spotify withdrew, HTTP 403; their values come from the Kaggle file).",
        ),
        dg.AssetCheckSpec(
            COMPLETE_CHECK,
            asset=key,
            description="Every id asked for was answered (WARN when the client stopped on a rate limit or an "
            "outage, or the single-lookup budget ran out: those ids are asked again next run).",
        ),
    ]


def _not_configured(warehouse: WarehouseResource, table: RawTable):
    wh = warehouse.get_warehouse()
    if not wh.table_exists(RAW, table.name):
        wh.replace_table(RAW, table.name, empty_frame(table))
    rows = wh.row_count(RAW, table.name)
    note = NOT_CONFIGURED + (f" {rows} rows from earlier loads kept." if rows else "")
    completeness = _completeness(wh, table)
    yield dg.MaterializeResult(
        asset_key=_key(table),
        metadata={
            **table_metadata(empty_frame(table), table, completeness),
            "dagster/row_count": dg.MetadataValue.int(rows),
            "data_source": dg.MetadataValue.text(
                "none: Spotify not configured" + (" (earlier loads kept)" if rows else "")
            ),
            "spotify_configured": dg.MetadataValue.bool(False),
            "note": dg.MetadataValue.text(note),
        },
    )
    yield from _table_checks(wh, table, completeness)
    for check_name in (CAPABILITIES_CHECK, COMPLETE_CHECK):
        yield dg.AssetCheckResult(asset_key=_key(table), check_name=check_name, passed=True, description=NOT_CONFIGURED)


def _completeness(wh, table: RawTable):
    return measure_completeness(wh, RAW, table.name, raw_required_fields(table.name))


def _table_checks(wh, table: RawTable, completeness):
    yield completeness_result(completeness, asset_key=_key(table), allow_empty=True)
    yield key_unique_result(wh, RAW, table.name, table.key, asset_key=_key(table))


def _upsert(wh, table_name: str, frame, key: str, chunk_rows: int = 10_000) -> None:
    """Rows replace the rows with the same key, in chunks (PostgreSQL binds at most 65,535 values
    per statement). Each key is independent, so a chunk is as consistent as the whole."""
    if frame.empty:
        if not wh.table_exists(RAW, table_name):
            wh.replace_partition(RAW, table_name, frame, key, [])  # the table, with its columns
        return
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        wh.replace_partition(RAW, table_name, part, key, list(part[key]))


def _land(context: dg.AssetExecutionContext, warehouse: WarehouseResource, load: SpotifyLoad, client, extra: dict):
    """Upsert the answers, record the lookups, quarantine rejects; then metadata and checks."""
    table = load.table
    now = utc_now()
    frame = load.frame(ingested_at=now)
    wh = warehouse.get_warehouse()
    # Replace the rows of the ids answered now; the others keep their earlier answers.
    _upsert(wh, table.name, frame, table.key[0])
    _upsert(wh, LOOKUPS_TABLE, load.lookups_frame(looked_up_at=now), "lookup_key")
    quarantined = quarantine(wh, table.name, now.strftime("%Y%m%dT%H%M%S"), load.result)

    report = client.report.as_metadata()
    counts = load.counts()
    reasons = unanswered_reasons(report)
    for reason in reasons:
        context.log.warning(f"Spotify {table.name}: {reason}")
    completeness = _completeness(wh, table)
    yield dg.MaterializeResult(
        asset_key=_key(table),
        metadata={
            **table_metadata(frame, table, completeness),
            "dagster/row_count": dg.MetadataValue.int(wh.row_count(RAW, table.name)),
            "rows_written": dg.MetadataValue.int(len(frame)),
            "rows_quarantined": dg.MetadataValue.int(quarantined),
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
            "spotify_configured": dg.MetadataValue.bool(True),
            "unavailable_capabilities": dg.MetadataValue.json(report["unavailable_capabilities"]),
            "spotify_report": dg.MetadataValue.json(report),
            "requests_sent": dg.MetadataValue.int(client.request_count),
            "data_source": dg.MetadataValue.text("spotify"),
            **extra,
        },
    )
    yield from _table_checks(wh, table, completeness)
    unavailable = report["unavailable_capabilities"]
    yield dg.AssetCheckResult(
        asset_key=_key(table),
        check_name=CAPABILITIES_CHECK,
        passed=not unavailable,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unavailable_capabilities": dg.MetadataValue.json(unavailable)},
        description=(
            "every endpoint needed is available"
            if not unavailable
            else "withdrawn for this app (batch endpoints fall back to one-by-one lookups, the rest to the Kaggle "
            "file's values): " + ", ".join(sorted(unavailable))
        ),
    )
    not_answered = counts["ids_not_answered"]
    yield dg.AssetCheckResult(
        asset_key=_key(table),
        check_name=COMPLETE_CHECK,
        passed=not_answered == 0 and report["stopped_reason"] is None,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ids_requested": dg.MetadataValue.int(counts["ids_requested"]),
            "ids_not_answered": dg.MetadataValue.int(not_answered),
            "stopped_reason": dg.MetadataValue.text(report["stopped_reason"] or "none"),
        },
        description=f"{counts['ids_requested'] - not_answered} of {counts['ids_requested']} ids answered"
        + (f"; {'; '.join(reasons)}" if reasons else ""),
    )


TRACKS_KEY, ARTISTS_KEY, AUDIO_FEATURES_KEY = (
    _key(t) for t in (SPOTIFY_TRACKS, SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES)
)


def _spec(table: RawTable, deps: list[dg.AssetKey], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=_key(table),
        deps=deps,
        description=description,
        group_name="ingestion",
        owners=OWNERS["ingestion"],
        kinds={"python", "spotify"},
        freshness_policy=REFERENCE_FRESHNESS,
        tags={"source": "spotify"},
        automation_condition=dg.AutomationCondition.eager(),
    )


@dg.multi_asset(
    name="spotify_metadata",
    specs=[
        _spec(
            SPOTIFY_TRACKS,
            [CANDIDATES_KEY],
            "Spotify track metadata (GET /tracks, or GET /tracks/{id} where the batch endpoint is withdrawn) for "
            "the Spotify ids of the Last.fm tracks matched through the Kaggle file, plus a bounded number of "
            "searches for unmatched tracks. Incremental: ids answered recently are not asked again. Empty when "
            "Spotify is not configured.",
        ),
        _spec(
            SPOTIFY_ARTISTS,
            [TRACKS_KEY],
            "Spotify artist metadata (genres, popularity, followers) for the primary artists of raw.spotify_tracks "
            "(GET /artists, or GET /artists/{id} where the batch endpoint is withdrawn). Incremental. Empty when "
            "Spotify is not configured.",
        ),
        _spec(
            SPOTIFY_AUDIO_FEATURES,
            [CANDIDATES_KEY, TRACKS_KEY],
            "Spotify audio features (GET /audio-features) of every known Spotify track id. Withdrawn for "
            "development-mode apps since Nov 2024: then recorded as an unavailable capability (WARN) and the marts "
            "use the Kaggle file's features. Incremental. Empty when Spotify is not configured.",
        ),
    ],
    check_specs=[
        spec for table in (SPOTIFY_TRACKS, SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES) for spec in _check_specs(table)
    ],
    can_subset=True,
    retry_policy=STEP_RETRY,
    pool=SPOTIFY_API_POOL,
)
@fail_fast_on_permanent_source_errors
def spotify_metadata(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    spotify: SpotifyResource,
    artifacts: ArtifactStoreResource,
):
    """One step for the three tables, in order (tracks, then their artists and audio features), so a
    whole-graph run splits the dbt project once around it. Each table gets its own client, whose
    report (withdrawn endpoints, early stop) goes to that table's metadata and checks."""
    selected = context.selected_asset_keys
    selected_checks = context.selected_asset_check_keys
    steps = (
        (TRACKS_KEY, SPOTIFY_TRACKS, _load_tracks),
        (ARTISTS_KEY, SPOTIFY_ARTISTS, _load_artists),
        (AUDIO_FEATURES_KEY, SPOTIFY_AUDIO_FEATURES, _load_audio_features),
    )
    for key, table, load in steps:
        if key not in selected:
            continue
        events = (
            _not_configured(warehouse, table)
            if not spotify.configured
            else load(context, warehouse, spotify, artifacts)
        )
        for event in events:
            if (
                isinstance(event, dg.AssetCheckResult)
                and dg.AssetCheckKey(key, event.check_name) not in selected_checks
            ):
                continue  # a check left out of this run's selection
            yield event


def _load_tracks(context, warehouse: WarehouseResource, spotify: SpotifyResource, artifacts: ArtifactStoreResource):
    plan = plan_track_lookups(
        warehouse.get_warehouse(),
        now=utc_now(),
        refetch_after_days=spotify.refetch_after_days,
        max_searches=spotify.max_searches_per_run,
    )
    if plan.candidates_missing:
        context.log.warning(
            f"{CANDIDATES_SCHEMA}.{CANDIDATES_TABLE} is not built yet: no Spotify id to ask for. "
            "Materialise the dbt models first (a run of the whole graph orders them)."
        )
    with spotify.get_client() as client, AuditTrailWriter(artifacts.external_dir, "spotify", "tracks") as audit:
        load = fetch_tracks(client, plan.track_ids, plan.searches, audit=audit)
    yield from _land(
        context,
        warehouse,
        load,
        client,
        {
            "lookup_plan": dg.MetadataValue.json(plan.metadata()),
            "candidates_built": dg.MetadataValue.bool(not plan.candidates_missing),
            "audit_trail": dg.MetadataValue.path(str(audit.path)),
        },
    )


def _load_artists(context, warehouse: WarehouseResource, spotify: SpotifyResource, artifacts: ArtifactStoreResource):
    artist_ids, fresh = plan_artist_lookups(
        warehouse.get_warehouse(), now=utc_now(), refetch_after_days=spotify.refetch_after_days
    )
    with spotify.get_client() as client, AuditTrailWriter(artifacts.external_dir, "spotify", "artists") as audit:
        load = fetch_artists(client, artist_ids, audit=audit)
    yield from _land(
        context,
        warehouse,
        load,
        client,
        {"ids_fetched_recently": dg.MetadataValue.int(fresh), "audit_trail": dg.MetadataValue.path(str(audit.path))},
    )


def _load_audio_features(
    context, warehouse: WarehouseResource, spotify: SpotifyResource, artifacts: ArtifactStoreResource
):
    track_ids, fresh = plan_audio_feature_lookups(
        warehouse.get_warehouse(), now=utc_now(), refetch_after_days=spotify.refetch_after_days
    )
    with spotify.get_client() as client, AuditTrailWriter(artifacts.external_dir, "spotify", "audio_features") as audit:
        load = fetch_audio_features(client, track_ids, audit=audit)
    yield from _land(
        context,
        warehouse,
        load,
        client,
        {"ids_fetched_recently": dg.MetadataValue.int(fresh), "audit_trail": dg.MetadataValue.path(str(audit.path))},
    )
