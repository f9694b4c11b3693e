"""Last.fm raw assets (schema ``raw``): scrobbles per UTC day, profiles, tags and charts.

The source is the real API when LASTFM_API_KEY is configured, else the synthetic source,
which answers with the same payloads; the same parsing runs on both and every row records
its ``source``. Each load keeps its payloads under data/external/ (the audit trail) and
quarantines rows that cannot be parsed in ``raw.ingestion_rejects`` with the reason.
"""

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import dagster as dg
import pandas as pd

from music_platform.config import Settings, definitions_settings
from music_platform.defs.quality.checks import (
    KEY_UNIQUE,
    completeness_result,
    completeness_spec,
    key_unique_result,
    key_unique_spec,
)
from music_platform.lib.metadata import PREVIEW_ROWS, table_metadata
from music_platform.partitions import daily_partitions
from music_platform.policies import (
    DAILY_FRESHNESS,
    LASTFM_API_POOL,
    OWNERS,
    REALTIME_ASSET_KEYS,
    REFERENCE_FRESHNESS,
    SCROBBLES_FRESHNESS,
    STEP_RETRY,
    absorbs_realtime,
    fail_fast_on_permanent_source_errors,
)
from music_platform.quality.completeness import measure_completeness
from music_platform.quality.contracts import raw_required_fields
from music_platform.quality.keys import duplicate_key_count
from music_platform.quality.ledger import DUPLICATE, Ledger
from music_platform.resources import ArtifactStoreResource, LastfmResource, WarehouseResource
from music_platform.sources.errors import SourceError
from music_platform.sources.landing import (
    AuditTrailWriter,
    ScrobbleBatch,
    iter_scrobble_batches,
    parse_all,
    quarantine,
    utc_now,
)
from music_platform.sources.lastfm.landed import (
    add_new_rows,
    delete_landed,
    landed_files,
    landing_dir,
    read_landed,
)
from music_platform.sources.lastfm.parsing import (
    ParseResult,
    parse_artist_top_tags,
    parse_chart_top_tracks,
    parse_tag_top_tracks,
    parse_user_info,
    to_raw_frame,
)
from music_platform.sources.lastfm.recent import merge_user_slice, select_slice_users
from music_platform.sources.schemas import (
    LASTFM_ARTIST_TAGS,
    LASTFM_CHART_TOP_TRACKS,
    LASTFM_SCROBBLES,
    LASTFM_TAG_TOP_TRACKS,
    LASTFM_USERS,
    RawTable,
)

RAW = "raw"
SCROBBLES_ACCOUNTED_FOR = "scrobbles_accounted_for"
ROWS_ACCOUNTED_FOR = "rows_accounted_for"
# Payload items that were never data to keep: the now-playing item, an exact repeat of a scrobble.
NOT_DATA = ("now_playing", DUPLICATE)
# Artists whose tags were fetched this recently are not asked again (tags change slowly).
ARTIST_TAGS_MAX_AGE_DAYS = 30


def _key(table: RawTable) -> dg.AssetKey:
    return dg.AssetKey([RAW, table.name])


def _checks(table: RawTable) -> list[dg.AssetCheckSpec]:
    return [completeness_spec(_key(table)), key_unique_spec(_key(table), table.key)]


def _reference_checks(table: RawTable) -> list[dg.AssetCheckSpec]:
    return [
        *_checks(table),
        dg.AssetCheckSpec(
            ROWS_ACCOUNTED_FOR,
            asset=_key(table),
            blocking=True,
            description="Every item the API returned is a row of the table or quarantined with its reason "
            "(raw.ingestion_rejects), and at least 95% are rows. Blocking.",
        ),
    ]


def _days_where(days: list[date]) -> str:
    """SQL filter on the scrobble partitions from the first to the last of ``days``."""
    return f"scrobble_date between cast('{days[0].isoformat()}' as date) and cast('{days[-1].isoformat()}' as date)"


def _days_label(days: list[date]) -> str:
    """The load id of a run of days: ``2025-03-01`` or ``2025-03-01_2025-03-07``."""
    first, last = days[0].isoformat(), days[-1].isoformat()
    return first if first == last else f"{first}_{last}"


@dataclass
class _ScrobbleLoad:
    """Totals of a scrobble load over its batches, and a few rows to preview."""

    items_received: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    pages: int = 0
    now_playing_dropped: int = 0
    duplicates_removed: int = 0
    batches: int = 0
    duplicated_keys: int = 0
    users_loaded: set[str] = field(default_factory=set)
    skipped_users: dict[str, str] = field(default_factory=dict)
    sample: pd.DataFrame = field(default_factory=lambda: to_raw_frame([], LASTFM_SCROBBLES, source=""))

    def ledger(self) -> Ledger:
        """The payloads' scrobbles: each one written, quarantined, a duplicate or the now-playing item."""
        return Ledger(
            "API items -> raw.lastfm_scrobbles",
            self.items_received,
            self.rows_written,
            {
                "quarantined": self.rows_quarantined,
                "now_playing": self.now_playing_dropped,
                DUPLICATE: self.duplicates_removed,
            },
        )

    def add(self, batch: ScrobbleBatch, frame: pd.DataFrame, written: int, quarantined: int, duplicated: int) -> None:
        self.items_received += batch.result.items_received
        self.rows_written += written
        self.duplicated_keys += duplicated
        self.rows_quarantined += quarantined
        self.pages += batch.pages
        self.now_playing_dropped += batch.result.now_playing_dropped
        self.duplicates_removed += batch.duplicates_removed
        self.batches += 1
        self.users_loaded |= batch.users_loaded
        self.skipped_users = batch.skipped_users
        if self.sample.empty and not frame.empty:
            self.sample = frame.head(PREVIEW_ROWS).copy()


# The day-partitioned marts (dbt_daily_models): the listen ledger compares raw and marts within one
# dbt build, so the raw day must not change under it.
DAILY_MARTS = frozenset(key for key in REALTIME_ASSET_KEYS if key != _key(LASTFM_SCROBBLES))
#: A restatement queued, starting or running: it is about to open the warehouse (DuckDB allows one
#: writing process) and read the raw day.
_RESTATING = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]  # fmt: skip
#: How long a load waits for a restatement before it writes anyway (a build takes ~20 s).
RESTATEMENT_WAIT_S = 600.0
RESTATEMENT_POLL_S = 1.0


def daily_marts_run_active(instance: dg.DagsterInstance, *, other_than: str | None = None) -> str | None:
    """The id of a run (other than ``other_than``) queued, starting or running that restates the
    day-partitioned marts, else None. Public run storage only."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_RESTATING), limit=50):
        if run.run_id != other_than and run.asset_selection is not None and run.asset_selection & DAILY_MARTS:
            return run.run_id
    return None


def wait_for_restatement(context: dg.AssetExecutionContext, limit_s: float = RESTATEMENT_WAIT_S) -> float:
    """Wait while another run restates the day-partitioned marts (up to ``limit_s``); the seconds
    waited. No new restatement starts meanwhile: the marts' automation waits while a parent (this
    load) is in progress."""
    started = time.monotonic()
    while True:
        run_id = daily_marts_run_active(context.instance, other_than=context.run_id)
        waited = time.monotonic() - started
        if run_id is None:
            return waited
        if waited >= limit_s:
            context.log.warning(f"run {run_id} still restates the marts after {waited:.0f} s: loading anyway")
            return waited
        time.sleep(RESTATEMENT_POLL_S)


class ScrobblesLoadConfig(dg.Config):
    """Run configuration of ``raw/lastfm_scrobbles``.

    ``users``: re-fetch only these users' scrobbles of the (single) day and keep the other users'
    rows of that day as stored. ``landed_until``: add the scrobbles the near-real-time sensor
    landed for the day that are not stored yet: its files up to that name at least, and every
    later one present when the run reads them (a run that waited takes what landed meanwhile). The sensor sets
    ``landed_until`` and, in ``users``, only the listeners whose new scrobbles spanned more than
    the page it read, so a poll of the open day usually costs the run no request at all; the day
    is still replaced as a whole, in one transaction. Both empty (the schedule, a backfill): every
    tracked user, which is how the 01:00 final load settles the day.
    """

    users: list[str] = []
    #: Load the scrobbles the sensor landed for the (single) day, in its files up to this name and
    #: any landed since (``music_platform.sources.lastfm.landed``), beside the ``users`` fetched again: a run with
    #: landed scrobbles and no ``users`` does not call Last.fm at all.
    landed_until: str = ""


def lastfm_scrobbles(
    context: dg.AssetExecutionContext,
    config: ScrobblesLoadConfig,
    warehouse: WarehouseResource,
    lastfm: LastfmResource,
    artifacts: ArtifactStoreResource,
):
    window = context.partition_time_window
    days = [window.start.date() + timedelta(days=i) for i in range((window.end - window.start).days)]
    client = lastfm.get_client()
    users = lastfm.tracked_users(client)
    wh = warehouse.get_warehouse()
    ingested_at = utc_now()
    load = _ScrobbleLoad()
    landing = landing_dir(artifacts.data_dir)
    started_ns = time.time_ns()
    # The raw day must not change under a build of the day-partitioned marts (their ledger compares
    # raw and marts within one build): the load's start-up overlaps it, its writes follow it.
    waited_for_marts = wait_for_restatement(context)
    if config.landed_until and len(days) != 1:
        raise ValueError(f"landed scrobbles are loaded one day at a time, not {len(days)}: drop landed_until")
    landed_only = bool(config.landed_until) and not config.users and not lastfm.use_synthetic
    # A slice (the sensor's incremental load of one day): only the listed users that are tracked
    # are fetched; the synthetic source builds whole days, so it always reloads the day.
    slice_users = (
        [] if landed_only else select_slice_users(config.users, users, days, whole_day_source=lastfm.use_synthetic)
    )
    landed_files_used: list = []
    kept_rows = 0
    # One batch of whole days at a time (up to a week on the synthetic source): memory holds a
    # batch, never the whole range, and each batch's days are replaced in one transaction, so
    # a failure part-way leaves every day either as before or completely loaded.
    with AuditTrailWriter(artifacts.external_dir, lastfm.source_label, "scrobbles", _days_label(days)) as audit:
        fetched_users = users if slice_users is None else slice_users
        if slice_users == [] or not fetched_users:
            batches = iter([ScrobbleBatch(days=list(days))])  # nothing to fetch: the landed scrobbles only
        else:
            batches = iter_scrobble_batches(client, fetched_users, days, audit=audit)
        for batch in batches:
            frame = batch.frame(source=lastfm.source_label, ingested_at=ingested_at)
            if slice_users is None:
                written = wh.replace_partition(RAW, LASTFM_SCROBBLES.name, frame, "scrobble_date", batch.days)
            else:
                stored = _stored_day(wh, batch.days)
                day_frame = merge_user_slice(stored, frame, slice_users) if slice_users else stored
                written, added = len(frame), 0
                if config.landed_until:
                    # Every file of the day landed by now, ``landed_until`` and after: a load that
                    # waited (in the queue, for a marts build) takes what later ticks landed too,
                    # and the loads requested meanwhile find nothing left (issue 19: at a load
                    # average of 10 loads queued up behind the builds, one per tick).
                    landed_files_used = landed_files(landing, batch.days[0])
                    landed_batch, day_frame, added = _with_landed(
                        landed_files_used, batch.days[0], day_frame, frame, slice_users,
                        source=lastfm.source_label, ingested_at=ingested_at, audit=audit,
                    )  # fmt: skip
                    quarantined = quarantine(
                        wh, LASTFM_SCROBBLES.name, f"{batch.days[0]}:landed:{config.landed_until}", landed_batch.result
                    )
                    load.add(landed_batch, frame, added, quarantined, 0)
                if day_frame is None:
                    day_frame = frame
                kept_rows += len(day_frame) - written - added
                wh.replace_partition(RAW, LASTFM_SCROBBLES.name, day_frame, "scrobble_date", batch.days)
            quarantined = quarantine(wh, LASTFM_SCROBBLES.name, _days_label(batch.days), batch.result)
            # The key holds the scrobble's second, hence its day: checking each batch's days checks
            # the range, with memory bounded by one batch instead of a hash of every key in it.
            duplicated = duplicate_key_count(
                wh, RAW, LASTFM_SCROBBLES.name, LASTFM_SCROBBLES.key, _days_where(batch.days)
            )
            load.add(batch, frame, written, quarantined, duplicated)
            del batch, frame
    # The day is written: the landed files it holds now are done with (a crash before this line
    # leaves them for the next run, which finds their scrobbles stored and adds nothing). A full
    # load fetched every scrobble of its days after the files landed before it started.
    if slice_users is None:
        landed_files_used = [f for day in days for f in landed_files(landing, day, before_ns=started_ns)]
    landed_deleted = delete_landed(landed_files_used)
    for user, reason in load.skipped_users.items():
        context.log.warning(f"skipped Last.fm user {user!r}: {reason}")

    # The checks judge the whole range, whatever the batches were.
    where = _days_where(days)
    completeness = measure_completeness(
        wh,
        RAW,
        LASTFM_SCROBBLES.name,
        raw_required_fields(LASTFM_SCROBBLES.name),
        where=where,
        group_by="scrobble_date",
    )
    yield dg.MaterializeResult(
        metadata={
            # the preview is a sample; row count and completeness are the whole range's
            **table_metadata(load.sample, LASTFM_SCROBBLES, completeness),
            "dagster/row_count": dg.MetadataValue.int(load.rows_written + kept_rows),
            "data_source": dg.MetadataValue.text(lastfm.source_label),
            "days": dg.MetadataValue.text(f"{days[0]} .. {days[-1]} ({len(days)})"),
            "rows_written": dg.MetadataValue.int(load.rows_written),
            "load_kind": dg.MetadataValue.text(
                "whole day(s)"
                if slice_users is None
                else f"slice of {len(slice_users)} user(s) fetched"
                + (f", scrobbles landed by the sensor up to {config.landed_until}" if config.landed_until else "")
            ),
            "landed_files_loaded": dg.MetadataValue.int(landed_deleted),
            "seconds_waited_for_a_marts_build": dg.MetadataValue.float(round(waited_for_marts, 1)),
            "rows_kept_from_earlier_loads": dg.MetadataValue.int(kept_rows),
            "users_tracked": dg.MetadataValue.int(len(users)),
            "users_with_listens": dg.MetadataValue.int(len(load.users_loaded)),
            "users_skipped": dg.MetadataValue.json(load.skipped_users),
            "pages_fetched": dg.MetadataValue.int(load.pages),
            "now_playing_dropped": dg.MetadataValue.int(load.now_playing_dropped),
            "duplicates_removed": dg.MetadataValue.int(load.duplicates_removed),
            "rows_quarantined": dg.MetadataValue.int(load.rows_quarantined),
            "write_batches": dg.MetadataValue.int(load.batches),
            "audit_trail": dg.MetadataValue.path(str(audit.path)),
        }
    )
    # A day without listens is possible for real users; the check judges the days that have rows.
    yield completeness_result(completeness, allow_empty=True)
    yield dg.AssetCheckResult(
        check_name=KEY_UNIQUE,
        passed=load.duplicated_keys == 0,
        metadata={
            "duplicated_keys": dg.MetadataValue.int(load.duplicated_keys),
            "key": dg.MetadataValue.text(", ".join(LASTFM_SCROBBLES.key)),
        },
        description=(
            f"{load.duplicated_keys} duplicated ({', '.join(LASTFM_SCROBBLES.key)}) values over {len(days)} day(s)"
        ),
    )
    yield _ledger_result(SCROBBLES_ACCOUNTED_FOR, load.ledger())
    if load.skipped_users:
        yield dg.AssetCheckResult(
            check_name="tracked_users_loaded",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"skipped_users": dg.MetadataValue.json(load.skipped_users)},
            description=f"{len(load.skipped_users)} tracked user(s) skipped: {', '.join(load.skipped_users)}",
        )
    else:
        yield dg.AssetCheckResult(check_name="tracked_users_loaded", passed=True)


def scrobbles_asset(settings: Settings) -> dg.AssetsDefinition:
    """``raw/lastfm_scrobbles``, partitioned by day from the first partition ``settings`` name."""
    return _scrobbles_asset(daily_partitions(settings))


@cache
def _scrobbles_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    return dg.asset(
        key=_key(LASTFM_SCROBBLES),
        description="Every scrobble of the tracked users (user.getRecentTracks), one daily UTC partition per "
        "listening day. Re-materialising a partition replaces it atomically, never duplicates it.",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_checks(LASTFM_SCROBBLES),
            dg.AssetCheckSpec(
                SCROBBLES_ACCOUNTED_FOR,
                asset=_key(LASTFM_SCROBBLES),
                blocking=True,
                description="Every scrobble the API returned for the partition is in raw.lastfm_scrobbles, or "
                "quarantined "
                "with its reason (raw.ingestion_rejects), or an exact duplicate, or the now-playing item. Blocking.",
            ),
            dg.AssetCheckSpec(
                "tracked_users_loaded",
                asset=_key(LASTFM_SCROBBLES),
                description="Every tracked user could be read (WARN names users that do not exist or are private).",
            ),
        ],
        group_name="ingestion",
        owners=OWNERS["ingestion"],
        kinds={"python", "lastfm"},
        freshness_policy=SCROBBLES_FRESHNESS,
        retry_policy=STEP_RETRY,
        pool=LASTFM_API_POOL,
        tags={"source": "lastfm"},
    )(fail_fast_on_permanent_source_errors(lastfm_scrobbles))


@dg.definitions
def defs() -> dg.Definitions:
    # A module with a @dg.definitions function is loaded through it alone: every asset is listed.
    return dg.Definitions(
        assets=[
            scrobbles_asset(definitions_settings()),
            lastfm_users,
            lastfm_tag_top_tracks,
            lastfm_chart_top_tracks,
            lastfm_artist_tags,
        ]
    )


def _with_landed(files, day: date, day_frame, fetched: pd.DataFrame, fetched_users, *, source, ingested_at, audit):
    """The landed scrobbles of ``files`` added to ``day_frame`` (the day as it will be written):
    the batch they make (for the ledger), the day with the new ones, and how many were new. A
    landed scrobble already stored, or of a user whose day was just fetched whole, is a duplicate."""
    landed = read_landed(files, day)
    batch = ScrobbleBatch(days=[day])
    batch.result.extend(landed.result)
    batch.pages = len(landed.windows)
    batch.users_loaded = set(landed.users)
    for window in landed.windows:  # the audit trail keeps every payload a row came from
        audit.write(window.payload, user=window.user, window=[window.time_from, window.time_to], page=1,
                    method="user.getRecentTracks", landed_by="sensor")  # fmt: skip
    frame = batch.frame(source=source, ingested_at=ingested_at)
    covered = frame["user_name"].isin(set(fetched_users))
    frame = frame.loc[~covered].reset_index(drop=True)
    base = fetched if day_frame is None else day_frame
    merged, already = add_new_rows(base, frame)
    batch.duplicates_removed += int(covered.sum()) + already
    return batch, merged, len(frame) - already


def _stored_day(wh, days: list[date]) -> pd.DataFrame | None:
    """The rows stored for ``days`` (None before the table exists)."""
    if not wh.table_exists(RAW, LASTFM_SCROBBLES.name):
        return None
    return wh.query_df(f"select * from {wh.qualified(RAW, LASTFM_SCROBBLES.name)} where {_days_where(days)}")


def _ledger_result(check_name: str, ledger: Ledger) -> dg.AssetCheckResult:
    """Every item of the payloads written, or set aside with a reason; 95% of the data kept."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=ledger.passes(not_data=NOT_DATA),
        metadata={
            "received": dg.MetadataValue.int(ledger.received),
            "written": dg.MetadataValue.int(ledger.kept),
            "set_aside": dg.MetadataValue.json(dict(ledger.set_aside)),
            "unaccounted": dg.MetadataValue.int(ledger.lost),
        },
        description=ledger.describe(),
    )


def _write_reference_table(warehouse, table: RawTable, result: ParseResult, source: str, load_id: str):
    frame = result.frame(source=source, ingested_at=utc_now())
    wh = warehouse.get_warehouse()
    written = wh.replace_table(RAW, table.name, frame)
    quarantined = quarantine(wh, table.name, load_id, result)
    completeness = measure_completeness(wh, RAW, table.name, raw_required_fields(table.name))
    ledger = Ledger(f"API items -> raw.{table.name}", result.items_received, written, {"quarantined": quarantined})
    return frame, ledger, completeness, wh


def _reference_outputs(frame, table, ledger: Ledger, completeness, wh, extra: dict):
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(frame, table, completeness),
            "rows_quarantined": dg.MetadataValue.int(ledger.set_aside.get("quarantined", 0)),
            **extra,
        }
    )
    yield completeness_result(completeness)
    yield key_unique_result(wh, RAW, table.name, table.key)
    yield _ledger_result(ROWS_ACCOUNTED_FOR, ledger)


@dg.asset(
    key=_key(LASTFM_USERS),
    description="Profiles of the tracked users (user.getInfo).",
    check_specs=_reference_checks(LASTFM_USERS),
    group_name="ingestion",
    owners=OWNERS["ingestion"],
    kinds={"python", "lastfm"},
    freshness_policy=DAILY_FRESHNESS,
    retry_policy=STEP_RETRY,
    pool=LASTFM_API_POOL,
    automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"),
)
@fail_fast_on_permanent_source_errors
def lastfm_users(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lastfm: LastfmResource,
    artifacts: ArtifactStoreResource,
):
    client = lastfm.get_client()
    users = lastfm.tracked_users(client)
    results, skipped = [], {}
    with AuditTrailWriter(artifacts.external_dir, lastfm.source_label, "users") as audit:
        for user in users:
            try:
                payload = client.get_user_info(user)
            except SourceError as exc:
                if not exc.skippable:
                    raise
                skipped[user] = str(exc)
                continue
            audit.write(payload, user=user, method="user.getInfo")
            results.append(parse_user_info(payload, user))
    merged = parse_all(results, LASTFM_USERS)
    frame, ledger, completeness, wh = _write_reference_table(
        warehouse, LASTFM_USERS, merged, lastfm.source_label, "all"
    )
    yield from _reference_outputs(
        frame,
        LASTFM_USERS,
        ledger,
        completeness,
        wh,
        {"users_skipped": dg.MetadataValue.json(skipped), "audit_trail": dg.MetadataValue.path(str(audit.path))},
    )


@dg.asset(
    key=_key(LASTFM_TAG_TOP_TRACKS),
    description="Top tracks of each genre tag (tag.getTopTracks) for LASTFM_TAGS (at least six genres).",
    check_specs=_reference_checks(LASTFM_TAG_TOP_TRACKS),
    group_name="ingestion",
    owners=OWNERS["ingestion"],
    kinds={"python", "lastfm"},
    freshness_policy=REFERENCE_FRESHNESS,
    retry_policy=STEP_RETRY,
    pool=LASTFM_API_POOL,
    automation_condition=dg.AutomationCondition.on_cron("0 3 * * 1"),
)
@fail_fast_on_permanent_source_errors
def lastfm_tag_top_tracks(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lastfm: LastfmResource,
    artifacts: ArtifactStoreResource,
):
    client = lastfm.get_client()
    tags = lastfm.genre_tags(client)
    with AuditTrailWriter(artifacts.external_dir, lastfm.source_label, "tag_top_tracks") as audit:
        results = []
        for tag in tags:
            payload = client.get_tag_top_tracks(tag, limit=50)
            audit.write(payload, tag=tag, method="tag.getTopTracks")
            results.append(parse_tag_top_tracks(payload, tag))
    merged = parse_all(results, LASTFM_TAG_TOP_TRACKS)
    frame, ledger, completeness, wh = _write_reference_table(
        warehouse, LASTFM_TAG_TOP_TRACKS, merged, lastfm.source_label, "all"
    )
    yield from _reference_outputs(
        frame,
        LASTFM_TAG_TOP_TRACKS,
        ledger,
        completeness,
        wh,
        {"tags": dg.MetadataValue.json(list(tags)), "audit_trail": dg.MetadataValue.path(str(audit.path))},
    )


@dg.asset(
    key=_key(LASTFM_CHART_TOP_TRACKS),
    description="The global Last.fm chart (chart.getTopTracks).",
    check_specs=_reference_checks(LASTFM_CHART_TOP_TRACKS),
    group_name="ingestion",
    owners=OWNERS["ingestion"],
    kinds={"python", "lastfm"},
    freshness_policy=REFERENCE_FRESHNESS,
    retry_policy=STEP_RETRY,
    pool=LASTFM_API_POOL,
    automation_condition=dg.AutomationCondition.on_cron("0 3 * * *"),
)
@fail_fast_on_permanent_source_errors
def lastfm_chart_top_tracks(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lastfm: LastfmResource,
    artifacts: ArtifactStoreResource,
):
    client = lastfm.get_client()
    with AuditTrailWriter(artifacts.external_dir, lastfm.source_label, "chart_top_tracks") as audit:
        payload = client.get_chart_top_tracks(limit=100)
        audit.write(payload, method="chart.getTopTracks")
    result = parse_chart_top_tracks(payload)
    frame, ledger, completeness, wh = _write_reference_table(
        warehouse, LASTFM_CHART_TOP_TRACKS, result, lastfm.source_label, "all"
    )
    yield from _reference_outputs(
        frame,
        LASTFM_CHART_TOP_TRACKS,
        ledger,
        completeness,
        wh,
        {"audit_trail": dg.MetadataValue.path(str(audit.path))},
    )


@dg.asset(
    key=_key(LASTFM_ARTIST_TAGS),
    description="Top tags of every artist heard (artist.getTopTags); incremental: artists whose tags "
    f"were fetched in the last {ARTIST_TAGS_MAX_AGE_DAYS} days are not asked again.",
    deps=[_key(LASTFM_SCROBBLES), _key(LASTFM_TAG_TOP_TRACKS)],
    check_specs=_reference_checks(LASTFM_ARTIST_TAGS),
    group_name="ingestion",
    owners=OWNERS["ingestion"],
    kinds={"python", "lastfm"},
    freshness_policy=REFERENCE_FRESHNESS,
    retry_policy=STEP_RETRY,
    pool=LASTFM_API_POOL,
    # Daily for the scrobbles' new artists (not at every real-time load: it would take the Last.fm
    # rate from the sensor every few minutes); at once when the tag charts change.
    automation_condition=absorbs_realtime(),
)
@fail_fast_on_permanent_source_errors
def lastfm_artist_tags(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lastfm: LastfmResource,
    artifacts: ArtifactStoreResource,
):
    client = lastfm.get_client()
    wh = warehouse.get_warehouse()
    wanted = _artists_heard(wh)
    fresh: set[str] = set()
    if wh.table_exists(RAW, LASTFM_ARTIST_TAGS.name):
        since = (utc_now() - timedelta(days=ARTIST_TAGS_MAX_AGE_DAYS)).isoformat(sep=" ")
        fresh = set(
            wh.query_df(
                f"select distinct artist_name from {wh.qualified(RAW, LASTFM_ARTIST_TAGS.name)} "
                f"where ingested_at >= cast('{since}' as timestamp)"
            )["artist_name"]
        )
    to_fetch = sorted(set(wanted) - fresh)
    results, skipped = [], {}
    with AuditTrailWriter(artifacts.external_dir, lastfm.source_label, "artist_tags") as audit:
        for artist in to_fetch:
            try:
                payload = client.get_artist_top_tags(artist)
            except SourceError as exc:
                if not exc.skippable:
                    raise
                skipped[artist] = str(exc)
                continue
            audit.write(payload, artist=artist, method="artist.getTopTags")
            results.append(parse_artist_top_tags(payload, artist))
    merged = parse_all(results, LASTFM_ARTIST_TAGS)
    frame = merged.frame(source=lastfm.source_label, ingested_at=utc_now())
    # Replace the fetched artists' rows only: the others keep their recent tags.
    written = wh.replace_partition(RAW, LASTFM_ARTIST_TAGS.name, frame, "artist_name", to_fetch)
    quarantined = quarantine(wh, LASTFM_ARTIST_TAGS.name, utc_now().date().isoformat(), merged)
    ledger = Ledger(
        f"API items -> raw.{LASTFM_ARTIST_TAGS.name}", merged.items_received, written, {"quarantined": quarantined}
    )
    completeness = measure_completeness(wh, RAW, LASTFM_ARTIST_TAGS.name, raw_required_fields(LASTFM_ARTIST_TAGS.name))
    yield from _reference_outputs(
        frame,
        LASTFM_ARTIST_TAGS,
        ledger,
        completeness,
        wh,
        {
            "artists_heard": dg.MetadataValue.int(len(wanted)),
            "artists_fetched": dg.MetadataValue.int(len(to_fetch)),
            "artists_still_fresh": dg.MetadataValue.int(len(set(wanted) & fresh)),
            "artists_skipped": dg.MetadataValue.json(skipped),
            "audit_trail": dg.MetadataValue.path(str(audit.path)),
        },
    )


def _artists_heard(wh) -> list[str]:
    names: set[str] = set()
    for table in (LASTFM_SCROBBLES.name, LASTFM_TAG_TOP_TRACKS.name):
        if wh.table_exists(RAW, table):
            names |= set(
                wh.query_df(f"select distinct artist_name from {wh.qualified(RAW, table)}")["artist_name"].dropna()
            )
    return sorted(names)
