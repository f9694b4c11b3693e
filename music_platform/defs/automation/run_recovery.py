"""Dead-run recovery while nothing new starts (runs also recover dead runs before they execute).

A run whose process died (SIGKILL, OOM, a container restart) stays STARTED and keeps its
concurrency-pool slots; the next run would recover it, but with four such runs the queue (at
most four runs at once) would never start that next run. This sensor runs the same recovery
every minute in the code server, beside the run workers it launches (see
``music_platform.runs.recovery``).
"""

import dagster as dg

from music_platform.runs.recovery import recover_dead_runs


@dg.sensor(
    name="dead_run_recovery_sensor",
    minimum_interval_seconds=60,
    description="Marks runs whose process died as failed, stops the processes they left running "
    "and releases their concurrency-pool slots and queue entries (music_platform.runs.recovery).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def dead_run_recovery_sensor(context: dg.SensorEvaluationContext):
    recovery = recover_dead_runs(context.instance)
    return dg.SkipReason(recovery.summary())
