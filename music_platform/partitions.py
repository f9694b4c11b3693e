"""Partitions shared by ingestion, the dbt models, checks, schedules and sensors: UTC days of listening.

Built from the settings (``Settings.partitions_start_date``: MUSIC_PLATFORM_PARTITIONS_START, else
the first day the demo loaded into the data dir, else 2025-01-01), never at import: the
``@dg.definitions`` functions of ``music_platform/defs/`` call ``daily_partitions(settings)``.
"""

from __future__ import annotations

from functools import cache

import dagster as dg

from music_platform.config import Settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """The daily partitions of the code location built from ``settings`` (one object per start day)."""
    return _daily_partitions(settings.partitions_start_date)


@cache
def _daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today is a partition while it runs (issue 19, real time). The near-real-time
    # sensor loads it incrementally through the day-replace; the 01:00 schedule's final load of
    # the previous day settles it (docs/DATA_FLOW.md, "The real-time path").
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)
