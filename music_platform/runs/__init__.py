"""Crash consistency of Dagster runs: no dead run blocks another, and a signal stops a run cleanly.

- ``leases``: a locked file per running run; the kernel releases it when the process dies.
- ``recovery``: marks dead runs failed, stops what they left running and frees their pool slots.
- ``executor``: the job executor, preceded by recovery and holding the run's lease.
- ``guard``: the same for runs executed in-process (``music-platform demo``), plus SIGINT/SIGTERM.
- ``dagster_instance``: the DagsterInstance calls these need (one adapter, contract-tested).
"""
