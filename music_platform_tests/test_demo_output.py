"""The demo's progress display on its own (music_platform/runs/progress.py), without a demo run:
the heartbeat, where dbt's lines go, and the contract of the one instance API it reads.
The demo itself, piped, is checked in test_pipeline.py."""

from __future__ import annotations

import io
import re
import sys
import time

import dagster as dg
from rich.console import Console

from music_platform.runs.progress import DemoProgress, TimestampedLog, dbt_node, run_records

DBT_START = "14 of 60 START sql table model marts.dim_users ................................ [RUN]"


def _piped_console(buffer: io.StringIO) -> Console:
    return Console(file=buffer, width=400, force_terminal=False)


def test_dbt_progress_lines_name_the_node():
    assert dbt_node(DBT_START) == "dbt 14/60 marts.dim_users"
    assert dbt_node("3 of 23 PASS not_null_fct_listens_user_id .............. [PASS in 0.05s]") == (
        "dbt 3/23 not_null_fct_listens_user_id"
    )
    assert dbt_node("Running with dbt=1.11.16") is None
    assert dbt_node("Completed successfully") is None


def test_the_log_keeps_whole_lines_with_their_time(tmp_path):
    log = TimestampedLog(tmp_path / "logs" / "dbt.log")
    log.write("Running with dbt")
    log.write("=1.11\n1 of 2 START x [RUN]\n\nRegistered adapter: 名前 ✓\n")
    log.write("unfinished")
    assert log.last_line == "Registered adapter: 名前 ✓" and log.lines == 3
    log.close()
    lines = (tmp_path / "logs" / "dbt.log").read_text(encoding="utf-8").splitlines()
    assert [re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", line) for line in lines] == [
        "Running with dbt=1.11",
        "1 of 2 START x [RUN]",
        "",
        "Registered adapter: 名前 ✓",
        "unfinished",
    ]


def test_a_stage_sends_stdout_to_the_log_and_the_heartbeat_to_the_console(tmp_path):
    buffer = io.StringIO()
    log_path = tmp_path / "dbt.log"
    real_stdout = sys.stdout
    with DemoProgress(_piped_console(buffer), log_path, heartbeat_seconds=0.3) as progress:
        with progress.stage("[1/1] transform: テスト"):
            assert sys.stdout is not real_stdout
            print(DBT_START)  # what dagster-dbt does with each dbt event
            progress.watch_run("run-1")  # no instance: the run's events are not read
            time.sleep(1.5)
        progress.stage_done("[1/1] transform: テスト", True, 1.5)
    assert sys.stdout is real_stdout
    out = buffer.getvalue()
    assert "START" not in out, out
    heartbeats = [line for line in out.splitlines() if line.startswith("  … ")]
    assert len(heartbeats) >= 2, out
    assert "[1/1] transform: テスト" in heartbeats[-1] and "dbt 14/60 marts.dim_users" in heartbeats[-1]
    assert "▶ [1/1] transform: テスト" in out and "■ [1/1] transform: テスト ok in 1.5s" in out
    logged = log_path.read_text(encoding="utf-8")
    assert "stage: [1/1] transform: テスト" in logged and "---- run run-1" in logged and DBT_START in logged


def test_no_heartbeat_outside_a_phase_and_none_on_a_terminal(tmp_path):
    piped = io.StringIO()
    with DemoProgress(_piped_console(piped), tmp_path / "a.log", heartbeat_seconds=0.2):
        time.sleep(0.8)
    assert piped.getvalue() == ""
    terminal = io.StringIO()
    console = Console(file=terminal, width=100, force_terminal=True)
    with DemoProgress(console, tmp_path / "b.log", heartbeat_seconds=0.2) as progress:
        with progress.phase("starting"):
            time.sleep(0.8)
    # a terminal gets the live status line (redrawn in place), not a line per heartbeat
    assert "… starting" not in terminal.getvalue() and "starting" in terminal.getvalue()


def test_run_records_contract_steps_in_order_and_a_cursor_to_resume_from(tmp_path):
    """The one instance API the progress display reads (DagsterInstance.get_records_for_run)."""

    @dg.asset
    def first() -> int:
        return 1

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([first, second], instance=instance)
        records, cursor = run_records(instance, result.run_id, None)
        kinds = [
            (r.event_log_entry.dagster_event.event_type, r.event_log_entry.dagster_event.step_key) for r in records
        ]
        assert kinds.index((dg.DagsterEventType.STEP_START, "first")) < kinds.index(
            (dg.DagsterEventType.STEP_SUCCESS, "first")
        )
        assert (dg.DagsterEventType.ASSET_MATERIALIZATION, "second") in kinds
        assert all(r.event_log_entry.timestamp > 0 for r in records)
        later, _ = run_records(instance, result.run_id, cursor)
        assert later == []

        # the display follows a real run: its steps are printed as they end
        buffer = io.StringIO()
        with DemoProgress(_piped_console(buffer), tmp_path / "dbt.log", heartbeat_seconds=10) as progress:
            progress.instance = instance
            with progress.phase("replay"):
                progress.watch_run(result.run_id)
                time.sleep(1.2)
        assert "✓ first" in buffer.getvalue() and "✓ second" in buffer.getvalue()


def test_piped_to_a_file_descriptor_a_child_process_prints_the_heartbeat(tmp_path):
    """Piped to a real stdout, the heartbeat comes from a child process: it keeps printing while
    the demo's own threads cannot run (a C extension holding the GIL)."""
    import os

    read_end, write_end = os.pipe()
    with open(write_end, "w", encoding="utf-8") as stream:
        console = Console(file=stream, width=400, force_terminal=False)
        with DemoProgress(console, tmp_path / "dbt.log", heartbeat_seconds=0.3) as progress:
            assert progress._child is not None
            with progress.phase("[2/4] ml: 训练"):
                time.sleep(0.6)  # the status reaches the child
                progress._stop.set()  # the demo's threads stop, as when the GIL is held
                time.sleep(1.5)
    with open(read_end, encoding="utf-8") as pipe:
        lines = pipe.read().splitlines()
    heartbeats = [line for line in lines if line.startswith("  … [2/4] ml: 训练 ")]
    assert len(heartbeats) >= 3, lines
    assert heartbeats[-1].split("训练 ")[1].startswith(("1s", "2s")), heartbeats
