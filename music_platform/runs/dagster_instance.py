"""The DagsterInstance operations run recovery and the check alerts need, in one place: the adapter.

Public API where dagster 1.13 has one (``get_run_records``, ``get_run_by_id``, ``RunsFilter``).
The rest has no public ``DagsterInstance`` method in dagster 1.13 and is confined to this module:

- a run's events (its RUN_START's process id, its asset-check evaluations):
  ``instance.get_records_for_run`` -- the public ``fetch_*`` methods cover materializations,
  observations and run-status changes only;
- ending a dead run: ``instance.report_run_failed`` / ``report_run_canceled`` (what Dagster's own
  run monitoring calls);
- the concurrency pools (who holds a slot, releasing a dead run's slots):
  ``instance.event_log_storage`` -- the same calls Dagster's daemon makes when it frees the slots
  of finished runs (``dagster/_daemon/monitoring/concurrency.py``);
- whether run storage is SQLite (``instance.run_storage``), the instance's folder.

Pinned by the contract tests ``music_platform_tests/test_run_recovery.py::
test_dagster_instance_adapter_contract_and_a_killed_run_never_blocks_the_next`` and
``music_platform_tests/test_alerts.py::test_the_adapter_reads_a_runs_check_evaluations``, and by
the ``dagster<1.14`` cap in pyproject.toml. Nothing else in music_platform may use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster import DagsterRunStatus, RunsFilter

# Runs that a process may still be executing. QUEUED runs have no process yet (the daemon's
# queue owns them); SUSPENDED runs have none by design.
UNFINISHED = (
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class PoolHolding:
    """What one run holds in the concurrency pools: claimed slots and queue entries."""

    run_id: str
    claimed: tuple[str, ...]  # "pool:step_key"
    queued: tuple[str, ...]


def storage_root(instance: dg.DagsterInstance) -> Path | None:
    """Where this instance keeps local files (DAGSTER_HOME), or None for an in-memory instance."""
    if instance.is_ephemeral:
        return None
    return Path(instance.root_directory)


def unfinished_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records(filters=RunsFilter(statuses=list(UNFINISHED)))]


def run_start(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, timestamp) of the run's RUN_START event: the process that executes it."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event else None
    return (int(pid), float(entry.timestamp)) if pid else None


@dataclass(frozen=True)
class CheckEvaluation:
    """One asset-check evaluation recorded in a run, as plain values."""

    asset: str  # "group/name"
    check: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    description: str | None
    partition: str | None


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[CheckEvaluation]:
    """The asset-check evaluations of one run, in the order they were recorded."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if evaluation is None:
            continue
        evaluations.append(
            CheckEvaluation(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                passed=bool(evaluation.passed),
                severity=evaluation.severity.value,
                description=evaluation.description,
                partition=evaluation.partition,
            )
        )
    return evaluations


def report_failed(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """End an unfinished run as FAILURE with ``message`` (its event log says why)."""
    instance.report_run_failed(run, message)


def report_canceled(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """End an unfinished run as CANCELED with ``message``."""
    instance.report_run_canceled(run, message)


def storage_is_single_host(instance: dg.DagsterInstance) -> bool:
    """SQLite run storage (the local DAGSTER_HOME of `make dev`, `make demo`, `dagster asset
    materialize`): every run it records ran on this machine, so a process id in its events can
    be checked here. PostgreSQL storage is shared between hosts and containers: no such inference."""
    return type(instance.run_storage).__name__.startswith("Sqlite")


def pool_holdings(instance: dg.DagsterInstance) -> list[PoolHolding]:
    """Every run holding a slot or a queue entry in any concurrency pool."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    claimed: dict[str, list[str]] = {}
    queued: dict[str, list[str]] = {}
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            claimed.setdefault(slot.run_id, []).append(f"{pool}:{slot.step_key}")
        for step in info.pending_steps:
            queued.setdefault(step.run_id, []).append(f"{pool}:{step.step_key}")
    return [
        PoolHolding(run_id, tuple(claimed.get(run_id, ())), tuple(queued.get(run_id, ())))
        for run_id in sorted(set(claimed) | set(queued))
    ]


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Release the run's claimed slots and drop its queue entries (waiting steps of other runs
    are then assigned the freed slots)."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def statuses(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> dict[str, DagsterRunStatus]:
    if not run_ids:
        return {}
    records = instance.get_run_records(filters=RunsFilter(run_ids=list(run_ids)))
    return {r.dagster_run.run_id: r.dagster_run.status for r in records}
