"""Platform-wide policies: freshness windows, owners and retries, in one place.

Values follow PRODUCT.md: scrobbles warn after 6 h and fail after 26 h, marts fail after
26 h, the model fails after 8 days, recommendations fail after 26 h.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

OWNERS: dict[str, list[str]] = {
    "ingestion": ["team:data-engineering"],
    "transform": ["team:analytics-engineering"],
    "ml": ["team:ml"],
}

SCROBBLES_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=6))
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=12))
# Reference data (tags, charts, the Kaggle file) changes slowly: a week is still trustworthy.
REFERENCE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=2))
MARTS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26))
MODEL_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7))
RECOMMENDATIONS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26))
# Applied by the root definitions to any asset that did not set its own.
DEFAULT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36))

# Transient failures of whole steps (an API hiccup, a locked warehouse file) are retried.
STEP_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def freshness_for_layer(layer: str) -> dg.FreshnessPolicy:
    return MARTS_FRESHNESS if layer == "marts" else DAILY_FRESHNESS
