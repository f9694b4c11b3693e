"""Poll delay of the Last.fm sensor's poll plan in a simulated world (no server, no Dagster).

The world of ``realtime_latency.py --workload sessions``: ``--listeners`` (2,000), ``--sessions``
(173) of them in a session at a time, a track every ``--track-seconds`` (200 +- 30 %), sessions of
``--session-tracks`` (12) on average, a random idle listener starting the next one. Every
``--tick-seconds`` (45: the 42-s sensor's cadence, as a 45-s one ran ~48 s apart in the
benchmark) the plan (``plan_tick``, ``advance_state``) chooses who is asked with ``--budget``
(188) requests, 213 ms apart (the sensor's limiter: 5 a second, each a second after the answer
to the fifth before); a scrobble's poll delay is from its time to the ask that sees it, plus the rest of the
tick (the run is requested when the tick ends). Prints p50/p95 overall, for session starts and
within sessions, after ``--warmup`` seconds. Only the plan is measured: add the run, the dbt
restatement and the service's refresh for the benchmark's figures.

    .venv/bin/python benchmarks/poll_plan_simulation.py                      # the current plan
    .venv/bin/python benchmarks/poll_plan_simulation.py --max-interval 900   # the 15-min rotation of before
    .venv/bin/python benchmarks/poll_plan_simulation.py --rotation-only      # everyone in turn, no tiers
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from music_platform.sources.lastfm import recent  # noqa: E402
from music_platform.sources.lastfm.recent import PollResult, PollState, UserPoll, advance_state, plan_tick  # noqa: E402

ASK_S = 0.213  # the sensor's limiter: 5 per second, each after the answer to the one 5 before


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def simulate(args: argparse.Namespace) -> dict[str, list[float]]:
    rng = random.Random(args.seed)
    users = [f"listener{i:04d}" for i in range(args.listeners)]
    scrobbles: dict[str, list[tuple[float, bool]]] = {u: [] for u in users}
    start = 1_000_000
    idle = users[args.sessions :]
    queue: list[tuple[float, str, bool]] = []

    def gap() -> float:
        return args.track_seconds * rng.uniform(0.7, 1.3)

    for user in users[: args.sessions]:
        last = start - rng.uniform(0, args.track_seconds)
        scrobbles[user].append((last, False))
        heapq.heappush(queue, (last + gap(), user, False))
    state, seen_up_to = PollState(), {}
    delays: dict[str, list[float]] = {"session start": [], "in session": []}
    for tick in range(int(args.duration / args.tick_seconds)):
        now = start + tick * args.tick_seconds
        while queue and queue[0][0] <= now:
            at, user, first = heapq.heappop(queue)
            scrobbles[user].append((at, first))
            if rng.random() < 1.0 / args.session_tracks:  # the session ends; an idle listener starts one
                idle.append(user)
                heapq.heappush(queue, (at + gap(), idle.pop(rng.randrange(len(idle) - 1)), True))
            else:
                heapq.heappush(queue, (at + gap(), user, False))
        plan = plan_tick(
            users,
            state,
            int(now),
            args.budget,
            tick_interval_s=args.plan_tick_seconds,
            max_interval_s=args.max_interval,
        )
        result = PollResult(cursor=dict(state.seen))
        tick_end = now + len(plan.users) * ASK_S
        for i, user in enumerate(plan.users):
            asked_at = now + i * ASK_S
            poll = UserPoll(user=user, time_from=0, time_to=int(asked_at))
            new = [(at, first) for at, first in scrobbles[user] if seen_up_to.get(user, 0) < at < asked_at]
            if new:
                if now - start >= args.warmup:
                    for at, first in new:
                        delays["session start" if first else "in session"].append(tick_end - at)
                seen_up_to[user] = max(at for at, _ in new)
                poll.newest_uts, poll.days = int(seen_up_to[user]), [date(2025, 1, 1)]
                result.cursor[user] = int(seen_up_to[user])
            result.polls.append(poll)
        state = advance_state(state, users, plan, result, int(now))
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=173)
    parser.add_argument("--track-seconds", type=float, default=200.0)
    parser.add_argument("--session-tracks", type=float, default=12.0)
    parser.add_argument("--tick-seconds", type=float, default=45.0, help="the sensor's actual cadence")
    parser.add_argument("--plan-tick-seconds", type=int, default=42, help="the interval the plan assumes")
    parser.add_argument("--budget", type=int, default=188)
    parser.add_argument("--session-gap", type=int, default=recent.SESSION_GAP_S)
    parser.add_argument("--playing-interval", type=int, default=recent.PLAYING_INTERVAL_S)
    parser.add_argument("--paused-window", type=int, default=recent.HOT_WINDOW_S)
    parser.add_argument("--reserve", type=float, default=recent.PRIORITY_RESERVE_SHARE)
    parser.add_argument("--rotation-only", action="store_true", help="no recent-listener tiers")
    parser.add_argument("--max-interval", type=int, default=recent.MAX_POLL_INTERVAL_S, help="the rotation's cycle")
    parser.add_argument("--duration", type=float, default=5400.0)
    parser.add_argument("--warmup", type=float, default=1200.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    recent.SESSION_GAP_S = args.session_gap  # knobs compared (module constants of the plan)
    recent.PLAYING_INTERVAL_S = args.playing_interval
    recent.HOT_WINDOW_S = args.paused_window
    recent.PRIORITY_RESERVE_SHARE = args.reserve
    if args.rotation_only:
        recent.priority_interval = lambda _seen, _now: None
    delays = simulate(args)
    every = delays["session start"] + delays["in session"]
    print(f"poll plan, {args.listeners} listeners, {args.sessions} in a session, budget {args.budget} every "
          f"{args.tick_seconds:g} s, playing tier {args.session_gap} s:")  # fmt: skip
    for label, values in (("all", every), *delays.items()):
        print(f"  {label} ({len(values)} scrobbles): poll delay p50 {percentile(values, 0.5):.0f} s, "
              f"p95 {percentile(values, 0.95):.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
