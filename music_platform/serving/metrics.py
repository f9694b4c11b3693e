"""Prometheus metrics: request counts, a latency histogram and the loaded model version.

Request counts and latencies are counted per request, so they are kept in plain dictionaries
(a fraction of a microsecond per request; prometheus_client's own Counter and Histogram cost
several, more than the lookup they measure) and exposed through a custom collector, the
client library's public interface for that. Reloads and the served version change rarely and
use prometheus_client's metrics as they are.

With several workers, ``run_server`` gives the server ``PROMETHEUS_MULTIPROC_DIR``: each
worker writes its request counts to a file there once a second (``persist``) and
prometheus_client keeps its own values in files there too, so ``/metrics`` -- answered by
whichever worker gets the scrape -- reports the sum over all workers (other workers' last
second of requests shows up at the next write). A dead worker's counts stay in the sum, so
counters never go back; its gauges are dropped when a new worker starts.
"""

from __future__ import annotations

import contextlib
import os
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

# Milliseconds matter here: the service answers in well under one.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUESTS_NAME = "music_platform_http_requests"
LATENCY_NAME = "music_platform_http_request_duration_seconds"
STATS_FILE_PREFIX = "requests_"


class RequestStats:
    """One worker's requests: one cell per (route, method, status), so a request costs one
    dictionary lookup. A cell is a list: the count, one count per bucket of
    ``LATENCY_BUCKETS`` and one for +Inf, then the sum of the observed seconds. The latency
    histograms of a route are the sums of its cells."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = _new_cell()
        cell[0] += 1
        cell[bisect_left(LATENCY_BUCKETS, seconds) + 1] += 1
        cell[-1] += seconds

    @property
    def counts(self) -> dict[tuple[str, str, int], int]:
        """Requests by (route, method, status)."""
        return {key: int(cell[0]) for key, cell in self.cells.items()}

    @property
    def latency(self) -> dict[str, list[float]]:
        """Per route: one count per bucket, one for +Inf, then the sum of the seconds."""
        by_route: dict[str, list[float]] = {}
        for (route, _, _), cell in self.cells.items():
            histogram = by_route.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1) + [0.0])
            for i, value in enumerate(cell[1:]):
                histogram[i] += value
        return by_route

    def as_json(self) -> bytes:
        return orjson.dumps({"cells": [[*key, cell] for key, cell in self.cells.items()]})

    def add(self, other: dict) -> None:
        """Add another worker's persisted stats (``as_json``) into this one."""
        for route, method, status, values in other.get("cells", []):
            key = (route, method, int(status))
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = _new_cell()
            if len(values) == len(cell):
                for i, value in enumerate(values):
                    cell[i] += value


def _new_cell() -> list[float]:
    return [0] * (len(LATENCY_BUCKETS) + 2) + [0.0]


class RequestStatsCollector:
    """Exposes the summed request stats of every worker (a prometheus_client custom collector)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        total = self.metrics.all_request_stats()
        requests = CounterMetricFamily(
            REQUESTS_NAME,
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), n in sorted(total.counts.items()):
            requests.add_metric([route, method, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            LATENCY_NAME,
            "Time from receiving the request to handing the answer to the server, inside the worker.",
            labels=["route"],
        )
        for route, histogram in sorted(total.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), histogram[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, histogram[-1])
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry()
        self.request_stats = RequestStats()
        self.reloads = Counter(
            "music_platform_snapshot_reloads",
            "Reload attempts by outcome (loaded, unchanged, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "music_platform_model_version_info",
            "1 for the model version a worker serves.",
            ["model_version"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.users = Gauge(
            "music_platform_snapshot_users",
            "Users with recommendations in the loaded snapshot.",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self._collector = RequestStatsCollector(self)
        if not self.multiprocess_dir:
            self.registry.register(self._collector)
        self._served_version: str | None = None
        # Bound once: this runs for every request.
        self.observe = self.request_stats.observe

    def all_request_stats(self) -> RequestStats:
        """This worker's live stats plus every other worker's last persisted ones."""
        if not self.multiprocess_dir:
            return self.request_stats
        total = RequestStats()
        total.add(orjson.loads(self.request_stats.as_json()))
        own = f"{STATS_FILE_PREFIX}{os.getpid()}.json"
        for path in Path(self.multiprocess_dir).glob(f"{STATS_FILE_PREFIX}*.json"):
            if path.name != own:
                with contextlib.suppress(OSError, orjson.JSONDecodeError):
                    total.add(orjson.loads(path.read_bytes()))
        return total

    def persist(self) -> None:
        """Write this worker's request stats for the other workers' /metrics (atomically)."""
        if not self.multiprocess_dir:
            return
        target = Path(self.multiprocess_dir) / f"{STATS_FILE_PREFIX}{os.getpid()}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(self.request_stats.as_json())
        os.replace(temporary, target)

    def record_reload(self, outcome: str, model_version: str | None, users: int) -> None:
        self.reloads.labels(outcome).inc()
        version = model_version or "none"
        if version != self._served_version:
            if self._served_version is not None:
                self.model_info.labels(self._served_version).set(0)
            self.model_info.labels(version).set(1)
            self._served_version = version
        self.users.set(users)

    def forget_dead_processes(self) -> None:
        """Drop the live gauges of worker processes that died (a restarted worker calls this),
        so /metrics does not report a dead worker's model version; counters keep counting."""
        if not self.multiprocess_dir:
            return
        pids = {path.stem.rsplit("_", 1)[-1] for path in Path(self.multiprocess_dir).glob("gauge_live*_*.db")}
        for pid in sorted(p for p in pids if p.isdigit()):
            if not _process_alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), self.multiprocess_dir)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every worker's metrics."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            registry.register(self._collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
