"""Load throughput of the warehouse targets: synthetic scrobbles in daily batches.

    .venv/bin/python benchmarks/load_throughput.py [--rows 1000000] [--batch-rows 200000]
        [--targets duckdb,postgres,snowflake] [--mode partition|append]

Generates ``--rows`` rows with the columns of ``raw.lastfm_scrobbles`` (numpy, one batch at a
time, so memory never holds more than one batch) in exactly the dtypes the raw Last.fm asset
hands to the warehouse (``to_raw_frame``: Arrow-backed ``string``, ``int64``, naive UTC
``timestamp[us]`` and ``date32`` columns; checked at start), and loads them into each available target:
a fresh temporary DuckDB file, a fresh PostgreSQL database (created, then dropped), and a local
fakesnow server if it starts. Each batch is one day, loaded with ``replace_partition`` (or
``append``), which is how the scrobble assets write. Prints rows/s of the load calls alone and
the peak resident memory of this process during each target's run (the PostgreSQL and fakesnow
servers run in their own processes).

Targets on a 2-core machine: DuckDB >= 1,000,000 rows/s, PostgreSQL >= 150,000 rows/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

from music_platform.sources.lastfm.parsing import to_raw_frame
from music_platform.sources.schemas import LASTFM_SCROBBLES, RAW_TABLES
from music_platform.warehouse.base import Warehouse

SCHEMA, TABLE = "raw", "lastfm_scrobbles"
COLUMNS = RAW_TABLES[TABLE].column_names
TARGET_ROWS_PER_SECOND = {"duckdb": 1_000_000, "postgres": 150_000}
FIRST_DAY = dt.date(2025, 1, 1)


class ScrobbleBatches:
    """Deterministic synthetic scrobbles, one day per batch, built from small pools of names."""

    def __init__(self, seed: int, users: int = 2_000, artists: int = 1_000, tracks: int = 20_000):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.users = np.array([f"listener_{i:05d}" for i in range(users)], dtype=object)
        self.artists = np.array([f"Artist {i:04d}" for i in range(artists)], dtype=object)
        self.artist_mbids = np.array([_mbid(rng) for _ in range(artists)], dtype=object)
        self.track_artist = rng.integers(0, artists, size=tracks)
        self.tracks = np.array([f"Track {i:05d}" for i in range(tracks)], dtype=object)
        self.track_mbids = np.array([_mbid(rng) if rng.random() < 0.6 else None for _ in range(tracks)], dtype=object)
        self.albums = np.array([f"Album {i // 10:04d}" for i in range(tracks)], dtype=object)
        self.urls = np.array(
            [f"https://www.last.fm/music/Artist+{a:04d}/_/Track+{i:05d}" for i, a in enumerate(self.track_artist)],
            dtype=object,
        )
        # Zipf-like popularity: a few tracks get most plays.
        weights = 1.0 / np.arange(1, tracks + 1) ** 0.9
        self.track_p = weights / weights.sum()
        self.ingested_at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

    def batch(self, day_index: int, rows: int) -> pd.DataFrame:
        rng = self.rng
        day = FIRST_DAY + dt.timedelta(days=day_index)
        day_start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())
        track = rng.choice(len(self.tracks), size=rows, p=self.track_p)
        artist = self.track_artist[track]
        uts = np.sort(day_start + rng.integers(0, 86_400, size=rows))
        # The dtypes of to_raw_frame (what lastfm_scrobbles writes): see check_frame_matches_asset.
        columns = {
            "user_name": pa.array(self.users[rng.integers(0, len(self.users), size=rows)], pa.string()),
            "played_at_uts": pa.array(uts, pa.int64()),
            "played_at": pa.array(uts * 1_000_000, pa.timestamp("us")),
            "scrobble_date": pa.repeat(pa.scalar(day, pa.date32()), rows),
            "track_name": pa.array(self.tracks[track], pa.string()),
            "track_mbid": pa.array(self.track_mbids[track], pa.string()),
            "artist_name": pa.array(self.artists[artist], pa.string()),
            "artist_mbid": pa.array(self.artist_mbids[artist], pa.string()),
            "album_name": pa.array(self.albums[track], pa.string()),
            "album_mbid": pa.nulls(rows, pa.string()),
            "track_url": pa.array(self.urls[track], pa.string()),
            "source": pa.repeat(pa.scalar("synthetic", pa.string()), rows),
            "ingested_at": pa.repeat(pa.scalar(self.ingested_at, pa.timestamp("us")), rows),
        }
        return pa.table({name: columns[name] for name in COLUMNS}).to_pandas(types_mapper=pd.ArrowDtype)


def check_frame_matches_asset(generator: ScrobbleBatches) -> None:
    """Fail unless the synthetic frame has the dtypes the raw asset's parser produces.

    The load cost depends on the dtypes (object strings cost far more than Arrow strings), so
    a benchmark on other dtypes would not measure the real path.
    """
    sample = generator.batch(0, 50)
    records = sample.drop(columns=["source", "ingested_at"]).to_dict("records")
    reference = to_raw_frame(records, LASTFM_SCROBBLES, source="synthetic")
    if sample.dtypes.to_dict() != reference.dtypes.to_dict():
        raise SystemExit(f"synthetic dtypes {sample.dtypes.to_dict()} != the asset's {reference.dtypes.to_dict()}")
    for column in ("scrobble_date", "played_at_uts"):
        if type(sample[column].iloc[0]) is not type(reference[column].iloc[0]):
            raise SystemExit(f"synthetic {column} values are not of the asset's type")


def _mbid(rng: np.random.Generator) -> str:
    h = rng.bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PeakMemory:
    """Samples this process's RSS every few milliseconds while the block runs."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@dataclass
class Result:
    target: str
    rows: int
    load_seconds: float
    cpu_seconds: float  # this process only (DuckDB runs inside it; PostgreSQL and fakesnow do not)
    peak_rss_mb: float
    verified_rows: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.load_seconds if self.load_seconds else float("inf")


@contextmanager
def duckdb_target(workdir: Path) -> Iterator[Warehouse]:
    from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

    yield DuckDBWarehouse(workdir / "benchmark.duckdb")


@contextmanager
def postgres_target(workdir: Path) -> Iterator[Warehouse]:
    from music_platform.warehouse.postgres_warehouse import PostgresWarehouse
    from music_platform_tests.pg_utils import fresh_database, server_unavailable_reason

    reason = server_unavailable_reason()
    if reason:
        raise TargetUnavailable(reason)
    with fresh_database("mp_bench") as url:
        yield PostgresWarehouse(url)


@contextmanager
def snowflake_target(workdir: Path) -> Iterator[Warehouse]:
    from music_platform.warehouse.snowflake_warehouse import SnowflakeWarehouse
    from music_platform_tests.snowflake_utils import FakesnowUnavailable, running_fakesnow

    try:
        with running_fakesnow(workdir, database="MUSIC_PLATFORM_BENCH") as server:
            yield SnowflakeWarehouse.from_settings(server.settings())
    except FakesnowUnavailable as exc:
        raise TargetUnavailable(str(exc)) from exc


class TargetUnavailable(RuntimeError):
    pass


TARGETS: dict[str, Callable[[Path], AbstractContextManager[Warehouse]]] = {
    "duckdb": duckdb_target,
    "postgres": postgres_target,
    "snowflake": snowflake_target,
}


def run_target(name: str, rows: int, batch_rows: int, mode: str, seed: int) -> Result:
    generator = ScrobbleBatches(seed)
    with tempfile.TemporaryDirectory(prefix=f"mp_bench_{name}_") as tmp, TARGETS[name](Path(tmp)) as warehouse:
        load_seconds = cpu_seconds = 0.0
        process = psutil.Process()
        with PeakMemory() as memory:
            for day_index, start in enumerate(range(0, rows, batch_rows)):
                batch = generator.batch(day_index, min(batch_rows, rows - start))
                began, cpu_began = time.perf_counter(), sum(process.cpu_times()[:2])
                if mode == "append":
                    warehouse.append(SCHEMA, TABLE, batch)
                else:
                    day = batch["scrobble_date"].iloc[0]
                    warehouse.replace_partition(SCHEMA, TABLE, batch, "scrobble_date", [day])
                load_seconds += time.perf_counter() - began
                cpu_seconds += sum(process.cpu_times()[:2]) - cpu_began
                del batch
        verified = warehouse.row_count(SCHEMA, TABLE)
    return Result(name, rows, load_seconds, cpu_seconds, memory.peak / 2**20, verified)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=200_000)
    parser.add_argument("--targets", default="duckdb,postgres,snowflake")
    parser.add_argument("--mode", choices=("partition", "append"), default="partition")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")

    check_frame_matches_asset(ScrobbleBatches(args.seed))
    # The load average says how much of the machine the figures had (others may share it).
    print(
        f"load benchmark: {args.rows:,} scrobbles in batches of {args.batch_rows:,} ({args.mode}), "
        f"{psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"baseline RSS {psutil.Process().memory_info().rss / 2**20:.0f} MB"
    )
    print(f"{'target':<10} {'rows':>10} {'load s':>8} {'rows/s':>12} {'client CPU s':>13} {'peak RSS MB':>12}  check")
    failed = False
    for name in names:
        try:
            result = run_target(name, args.rows, args.batch_rows, args.mode, args.seed)
        except TargetUnavailable as exc:
            print(f"{name:<10} skipped: {exc}")
            continue
        goal = TARGET_ROWS_PER_SECOND.get(name)
        verdict = "" if goal is None else ("ok" if result.rows_per_second >= goal else f"BELOW {goal:,}/s")
        if result.verified_rows != args.rows:
            verdict += f" ROW COUNT {result.verified_rows:,} != {args.rows:,}"
        failed |= "BELOW" in verdict or "ROW COUNT" in verdict
        print(
            f"{name:<10} {result.rows:>10,} {result.load_seconds:>8.2f} {result.rows_per_second:>12,.0f} "
            f"{result.cpu_seconds:>13.2f} {result.peak_rss_mb:>12.0f}  {verdict}".rstrip()
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
