"""Small Dagster jobs for the run-recovery tests: a step that holds the ``warehouse`` pool (and a
child process, as a dbt step does) until it is killed, and a quick step of the same pool.

``python -m music_platform_tests.run_workloads JOB`` executes a job in-process under
``RunGuard`` (what ``music-platform demo`` does), printing ``run <id>`` first.
"""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg

from music_platform.runs.executor import with_run_recovery
from music_platform.runs.leases import note_child_process


@dg.op(pool="warehouse")
def hold_the_pool(context) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    note_child_process(context.run_id, child.pid)
    context.log.info(f"holding the warehouse pool; child process {child.pid}")
    time.sleep(600)


@dg.op(pool="warehouse")
def use_the_pool(context) -> None:
    context.log.info("got the warehouse pool")


@dg.job(executor_def=with_run_recovery(dg.in_process_executor))
def leased_holder():
    hold_the_pool()


@dg.job(executor_def=dg.in_process_executor)
def unleased_holder():
    hold_the_pool()


@dg.job(executor_def=with_run_recovery(dg.in_process_executor))
def leased_user():
    use_the_pool()


defs = dg.Definitions(jobs=[leased_holder, unleased_holder, leased_user])


def main(job_name: str) -> int:
    from music_platform.runs.guard import Interrupted, RunGuard, exit_now

    instance = dg.DagsterInstance.get()
    guard = RunGuard(instance)
    guard.recover()
    job = defs.resolve_job_def(job_name)

    def execute(run_id: str) -> bool:
        print(f"run {run_id}", flush=True)
        return job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False).success

    try:
        return 0 if guard.execute(execute) else 1
    except Interrupted as interrupted:
        print(f"interrupted: {interrupted}", flush=True)
        exit_now(interrupted.exit_code)
        return interrupted.exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
