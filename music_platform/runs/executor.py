"""The job executor: Dagster's own, preceded by run recovery and holding the run's lease.

Every run executed through a job's executor -- ``dagster asset materialize``, ``dg launch``,
runs launched from the UI, schedules and sensors -- first cleans up after dead runs (so that a
run killed earlier cannot keep the ``warehouse`` pool) and then holds a lease for its own
lifetime (so that, if it is killed in turn, the next run or the recovery sensor knows at once).
Both happen before the first step claims a pool slot. ``execute_in_process`` replaces the
executor; ``music-platform demo`` does the same work itself (``guard.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from music_platform.runs import dagster_instance as di
from music_platform.runs.leases import RunLease, drop, hold, leases_dir
from music_platform.runs.recovery import recover_dead_runs


class LeasedExecutor(dg.Executor):
    """Delegates to ``inner``; recovers dead runs, then holds this run's lease while it executes."""

    def __init__(self, inner: dg.Executor) -> None:
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        instance = plan_context.instance
        run_id = plan_context.run_id
        recovery = recover_dead_runs(instance, exclude=frozenset({run_id}))
        if recovery:
            plan_context.log.warning(f"run recovery before this run: {recovery.summary()}")
        root = di.storage_root(instance)
        if root is None:
            yield from self.inner.execute(plan_context, execution_plan)
            return
        lease = RunLease.acquire(leases_dir(root), run_id)
        hold(lease)
        try:
            yield from self.inner.execute(plan_context, execution_plan)
        finally:
            drop(lease)


def with_run_recovery(base: dg.ExecutorDefinition, requirements=None) -> dg.ExecutorDefinition:
    """``base`` (e.g. ``dg.in_process_executor``) with the same name and configuration, whose
    executor recovers dead runs and leases the run it executes."""
    create_base = base.executor_creation_fn
    if create_base is None:
        raise ValueError(f"executor {base.name} has no creation function")

    def create(init_context: dg.InitExecutorContext) -> dg.Executor:
        return LeasedExecutor(create_base(init_context))

    return dg.ExecutorDefinition(
        name=base.name,
        config_schema=base.config_schema,
        requirements=requirements,
        executor_creation_fn=create,
        description=(base.description or "") + " Recovers dead runs first and leases the run it executes.",
    )
