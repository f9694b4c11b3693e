"""Speed of the synthetic source, printed as figures (speed is measured here, not in unit tests).

    python -m music_platform.sources.synthetic.benchmark --users 2000 --days 30
    python -m music_platform.sources.synthetic.benchmark --users 20000 --days 100 --skip-payloads

Reports the world build time, raw listen generation (listens/s, numpy only), Last.fm JSON
page building for one day of all users, the flat-rows fast path and the Kaggle CSV.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

from music_platform.sources.synthetic.kaggle import kaggle_tracks_frame
from music_platform.sources.synthetic.source import SyntheticLastfmSource
from music_platform.sources.synthetic.world import get_world


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(users: int, days: int, seed: int, skip_payloads: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    start = time.perf_counter()
    world = get_world(seed, users)
    figures["world_build_s"] = time.perf_counter() - start
    figures["artists"] = world.catalogue.n_artists
    figures["tracks"] = world.catalogue.n_tracks

    world.day_cache_size = 0  # measure generation, not the cache
    first_day = dt.date(2025, 1, 1)
    start = time.perf_counter()
    listens = sum(len(world.listens_for_day(first_day + dt.timedelta(days=i))) for i in range(days))
    elapsed = time.perf_counter() - start
    figures["listens"] = listens
    figures["listen_generation_s"] = elapsed
    figures["listens_per_s"] = listens / elapsed
    world.day_cache_size = 40

    source = SyntheticLastfmSource(n_users=users, seed=seed)
    day = first_day + dt.timedelta(days=days // 2)
    source.world.listens_for_day(day)
    if not skip_payloads:
        start = time.perf_counter()
        pages = list(source.get_recent_tracks_day(day))
        figures["day_payload_pages"] = len(pages)
        figures["day_payload_scrobbles"] = source.expected_scrobbles(day)
        figures["day_payload_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    frame = source.scrobbles_frame(day)
    figures["day_rows_fast_path_s"] = time.perf_counter() - start
    figures["day_rows"] = len(frame)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        kaggle = kaggle_tracks_frame(world)
        kaggle.to_csv(Path(tmp) / "dataset.csv", index=False)
        figures["kaggle_csv_s"] = time.perf_counter() - start
        figures["kaggle_rows"] = len(kaggle)
    figures["peak_rss_mb"] = _peak_rss_mb()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-payloads", action="store_true", help="skip the JSON page building step")
    args = parser.parse_args(argv)
    for name, value in run(args.users, args.days, args.seed, args.skip_payloads).items():
        print(f"{name:>24}: {value:,.3f}" if isinstance(value, float) else f"{name:>24}: {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
