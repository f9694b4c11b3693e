"""The open day's feed check on ``raw/lastfm_scrobbles``: a partial day passes, a stall fails.

Today's partition fills while the day runs (issue 19), so a low row count is no failure; a feed
that stopped is. The check reads the open day's rows and the newest ``ingested_at`` and lets
``quality.open_day.judge_open_day`` decide. It runs every 15 minutes by automation, because a
stall is exactly when nothing materialises. Not blocking: the last good data flows on.
"""

from datetime import UTC, datetime

import dagster as dg

from music_platform.quality.open_day import DEFAULT_STALL_AFTER, judge_open_day
from music_platform.resources import LastfmResource, WarehouseResource

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
CHECK_NAME = "open_day_feed"
EVERY_15_MIN = dg.AutomationCondition.cron_tick_passed("*/15 * * * *") & ~dg.AutomationCondition.in_progress()

# Tests move the check's clock.
clock = lambda: datetime.now(UTC)  # noqa: E731


def open_day_rows(wh, now: datetime) -> tuple[int, datetime | None]:
    """Rows of the open day (UTC) and the newest ingested_at among them."""
    if not wh.table_exists("raw", "lastfm_scrobbles"):
        return 0, None
    day = now.astimezone(UTC).date().isoformat()
    frame = wh.query_df(
        f"select count(*) as n, max(ingested_at) as newest from {wh.qualified('raw', 'lastfm_scrobbles')} "
        f"where scrobble_date = cast('{day}' as date)"
    )
    rows = int(frame["n"].iloc[0])
    newest = frame["newest"].iloc[0]
    return rows, (None if rows == 0 or newest is None or newest != newest else newest.to_pydatetime())


@dg.asset_check(
    asset=SCROBBLES,
    name=CHECK_NAME,
    description="The open day (today, UTC) is loaded while it runs: a partial day passes; nothing landed for "
    f"{DEFAULT_STALL_AFTER.total_seconds() / 3600:g} h means the feed stalled (ERROR, not blocking).",
    automation_condition=EVERY_15_MIN,
)
def open_day_feed(warehouse: WarehouseResource, lastfm: LastfmResource) -> dg.AssetCheckResult:
    now = clock()
    rows, newest = open_day_rows(warehouse.get_warehouse(), now)
    verdict = judge_open_day(now, rows, newest, live_feed=not lastfm.use_synthetic)
    metadata = {
        "day": dg.MetadataValue.text(verdict.day.isoformat()),
        "status": dg.MetadataValue.text(verdict.status),
        "rows_so_far": dg.MetadataValue.int(verdict.rows),
        "stall_after_minutes": dg.MetadataValue.float(DEFAULT_STALL_AFTER.total_seconds() / 60),
    }
    if verdict.newest_landed_at is not None:
        metadata["newest_landed_at"] = dg.MetadataValue.timestamp(verdict.newest_landed_at)
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=verdict.description,
    )
