"""Where the time of *every* scrobble of a real-time benchmark went, read back from its work dir.

``benchmarks/realtime_latency.py --workdir DIR`` keeps the warehouse, the audit trail and the
Dagster instance. For each scrobble played after ``--since`` (default: the start of the first tick
whose window the sensor landed, i.e. the live phase), this script finds:

1. the tick that saw it: the first window the sensor landed for its listener that holds it (the
   audit trail, ``external/lastfm/scrobbles/*.jsonl.gz``, ``context.window`` = [from, to), ``to``
   being the tick's start; the ask came within the tick's 40 s after it);
2. when it was written to ``raw.lastfm_scrobbles`` (``ingested_at``: the load that added it);
3. the end of the first successful restatement of the daily marts that started after that write
   (Dagster's run storage): from then on it is in ``marts.fct_listens``, and the service sees it
   at its next refresh (every 10 s).

It prints p50/p95/max of each stage, for all scrobbles and for session starts (no scrobble of the
listener in the 10 minutes before). Reads only; load-independent once the benchmark has run.

    .venv/bin/python benchmarks/realtime_stages.py --workdir /tmp/rt/run
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realtime_latency import dagster_run_times, percentile  # noqa: E402

SESSION_GAP_S = 600


def landed_windows(external: Path) -> dict[str, list[tuple[int, int]]]:
    """Listener -> the windows [from, to) the sensor landed for them, as the loads copied them."""
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for path in sorted((external / "lastfm" / "scrobbles").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                context = json.loads(line).get("context", {})
                if context.get("landed_by") == "sensor" and context.get("window"):
                    windows[context["user"]].append((int(context["window"][0]), int(context["window"][1])))
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--since", type=float, default=None, help="Unix time: scrobbles played after it")
    parser.add_argument("--until", type=float, default=None, help="Unix time: scrobbles played before it")
    args = parser.parse_args()
    runs = dagster_run_times(args.workdir / "dagster_home", 0.0)
    marts = sorted((r for r in runs if r[0] == "daily marts" and r[1] == "SUCCESS"), key=lambda r: r[3])
    windows = landed_windows(args.workdir / "data" / "external")
    if not windows:
        raise SystemExit("nothing landed by the sensor in that work dir")
    since = args.since if args.since is not None else min(to for spans in windows.values() for _frm, to in spans)
    with duckdb.connect(str(args.workdir / "data" / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "select user_name, played_at_uts, epoch(ingested_at) from raw.lastfm_scrobbles "
            "where played_at_uts >= ? and played_at_uts < ? order by user_name, played_at_uts",
            [int(since), int(args.until if args.until is not None else 2**62)],
        ).fetchall()
        previous = dict(
            conn.execute(
                "select user_name, max(played_at_uts) from raw.lastfm_scrobbles where played_at_uts < ? group by 1",
                [int(since)],
            ).fetchall()
        )
    stages = ("scrobble -> start of the tick that saw it", "tick start -> written to raw (load)",
              "written -> daily marts restated", "scrobble -> in marts.fct_listens")  # fmt: skip
    out: dict[str, dict[str, list[float]]] = {kind: {s: [] for s in stages} for kind in ("all", "session start")}
    unseen = 0
    last_of: dict[str, int] = dict(previous)
    for user, uts, written in rows:
        start = uts - last_of.get(user, 0) > SESSION_GAP_S
        last_of[user] = uts
        seen = [to for frm, to in windows.get(user, []) if frm <= uts < to]
        built = next((r[4] for r in marts if r[3] >= written), None)
        if not seen or built is None:
            unseen += 1
            continue
        tick = min(seen)
        values = (tick - uts, written - tick, built - written, built - uts)
        for kind in ("all", "session start") if start else ("all",):
            for stage, value in zip(stages, values, strict=True):
                out[kind][stage].append(value)
    print(f"real-time stages of {args.workdir}: scrobbles played after "
          f"{datetime.fromtimestamp(since, UTC):%Y-%m-%d %H:%M:%S} UTC; {unseen} without a landed window "
          "(fetched by a run) or a restatement after them left out")  # fmt: skip
    for kind, figures in out.items():
        count = len(figures[stages[0]])
        if not count:
            continue
        print(f"  {kind} ({count} scrobbles): p50 / p95 / max s")
        for stage, values in figures.items():
            print(f"    {stage}: {percentile(values, 0.5):.0f} / {percentile(values, 0.95):.0f} / {max(values):.0f}")


if __name__ == "__main__":
    main()
