"""Partitions shared by ingestion, schedules and sensors: daily UTC days of listening."""

from __future__ import annotations

import os

import dagster as dg

# The first day the platform keeps; MUSIC_PLATFORM_PARTITIONS_START moves it (the demo does,
# when asked for a longer history than the default covers).
PARTITIONS_START = os.environ.get("MUSIC_PLATFORM_PARTITIONS_START") or "2025-01-01"

# end_offset=1: today is a partition while it runs (issue 19, real time). The near-real-time
# sensor loads it incrementally through the day-replace; the 01:00 schedule's final load of the
# previous day settles it (docs/DATA_FLOW.md, "The real-time path").
daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
