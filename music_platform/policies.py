"""Platform-wide policies: freshness windows, owners, retries and API pools, in one place.

Values follow PRODUCT.md: scrobbles warn after 6 h and fail after 26 h, marts fail after
26 h, the model fails after 8 days, recommendations fail after 26 h.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import dagster as dg

from music_platform.sources.errors import SourceError

OWNERS: dict[str, list[str]] = {
    "ingestion": ["team:data-engineering"],
    "transform": ["team:analytics-engineering"],
    "ml": ["team:ml"],
}

# Every step that calls Last.fm runs in this pool (limit 1 in deploy/dagster*.yaml): the 5 req/s
# token bucket is per process, so one Last.fm step at a time keeps the run processes within it.
LASTFM_API_POOL = "lastfm_api"

SCROBBLES_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=6))
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=12))
# Reference data (tags, charts, the Kaggle file) changes slowly: a week is still trustworthy.
REFERENCE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=2))
MARTS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26))
MODEL_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7))
RECOMMENDATIONS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26))
# Applied by the root definitions to any asset that did not set its own.
DEFAULT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36))

# Transient failures of whole steps (an API hiccup that outlived the client's own retries, a
# locked warehouse file, a pagination that shifted twice) are retried. Errors that a retry cannot
# fix (an invalid API key, a request we built wrong) are raised as ``dg.Failure(allow_retries=False)``
# by ``fail_fast_on_permanent_source_errors``, which this policy then does not retry.
STEP_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

# -- real time (issue 19): which assets follow the open day, and how the others absorb it ------
#: The day-partitioned assets: raw scrobbles (loaded by the near-real-time sensor while the day
#: runs) and the dbt models tagged daily. They update every few minutes during the day.
#: test_realtime_automation.py checks this list equals the graph's partitioned assets.
REALTIME_ASSET_KEYS = (
    dg.AssetKey(["raw", "lastfm_scrobbles"]),
    dg.AssetKey(["marts", "fct_listens"]),
    dg.AssetKey(["marts", "user_track_interactions"]),
    dg.AssetKey(["marts", "recent_listens"]),
    dg.AssetKey(["audit", "listen_ledger"]),
    dg.AssetKey(["audit", "listens_set_aside"]),
)
REALTIME_ASSETS = dg.AssetSelection.assets(*REALTIME_ASSET_KEYS)
#: After the 01:00 final load of the previous day (and its marts) have had time to land.
SETTLE_CRON = "30 1 * * *"

_A = dg.AutomationCondition

#: The day-partitioned assets: eager on their latest two partitions (today, and yesterday for its
#: final load and late scrobbles), as soon as new raw data of that day landed.
REALTIME_PARTITIONS = (
    _A.in_latest_time_window(timedelta(hours=48))
    & (_A.newly_missing() | _A.any_deps_updated()).since_last_handled()
    & ~_A.any_deps_missing()
    & ~_A.any_deps_in_progress()
    & ~_A.in_progress()
).with_label("eager on today and yesterday")

#: Once a day, when nothing upstream is in progress.
SETTLE_DAILY = (
    _A.cron_tick_passed(SETTLE_CRON, "UTC").since_last_handled() & ~_A.any_deps_in_progress() & ~_A.in_progress()
).with_label(f"daily after the final load ({SETTLE_CRON} UTC)")


def absorbs_realtime(condition: dg.AutomationCondition | None = None) -> dg.AutomationCondition:
    """The condition of an unpartitioned asset downstream of the real-time assets: ``condition``
    (default ``eager()``) blind to their minute-by-minute updates, plus a daily rebuild once the
    previous day has settled. Dimensions, the training data and the recommendations so keep a
    daily cadence (retraining keeps its weekly one); the service sees listens in between through
    marts.recent_listens."""
    base = condition if condition is not None else _A.eager()
    return (base.ignore(REALTIME_ASSETS) | SETTLE_DAILY).with_label("eager (daily for real-time parents)")


_Fn = TypeVar("_Fn", bound=Callable)


@contextmanager
def permanent_source_errors_fail_fast() -> Iterator[None]:
    """Turn a non-retryable ``SourceError`` into a ``dg.Failure`` that ``STEP_RETRY`` skips.

    Transient errors (``retryable``) propagate unchanged so the step is retried. Skippable
    ones (one unknown or private user) should be handled by the caller before they get here.
    """
    try:
        yield
    except SourceError as error:
        if error.retryable:
            raise
        kind = "fatal for the source" if error.fatal else "permanent"
        raise dg.Failure(
            description=f"{error} [{type(error).__name__}, {kind}: the step is not retried]",
            metadata={
                "error_type": dg.MetadataValue.text(type(error).__name__),
                "source": dg.MetadataValue.text(error.source or "unknown"),
                "operation": dg.MetadataValue.text(error.operation or "unknown"),
            },
            allow_retries=False,
        ) from error


def fail_fast_on_permanent_source_errors(fn: _Fn) -> _Fn:
    """Decorator for asset functions (plain or generator) that call an API client.

    Put it between ``@dg.asset`` and the function; the signature Dagster inspects is kept.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            with permanent_source_errors_fail_fast():
                yield from fn(*args, **kwargs)

        return generator_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with permanent_source_errors_fail_fast():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def freshness_for_layer(layer: str) -> dg.FreshnessPolicy:
    return MARTS_FRESHNESS if layer == "marts" else DAILY_FRESHNESS
