"""Partitions shared by ingestion, schedules and sensors: daily UTC days of listening."""

from __future__ import annotations

import os

import dagster as dg

# The first day the platform keeps; MUSIC_PLATFORM_PARTITIONS_START moves it (the demo does,
# when asked for a longer history than the default covers).
PARTITIONS_START = os.environ.get("MUSIC_PLATFORM_PARTITIONS_START") or "2025-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
