"""Prometheus metrics: request counts, a latency histogram and the loaded model version.

With several uvicorn workers, ``run_server`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, so every worker writes its values to shared files and ``/metrics`` -- answered
by whichever worker gets the scrape -- reports the sum over all workers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Milliseconds matter here: the service answers in well under one.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "music_platform_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "music_platform_http_request_duration_seconds",
            "Time from receiving the request to sending the last byte of the answer, inside the worker.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
        # labels() takes a lock and builds a key: look each child up once.
        self._request_children: dict[tuple[str, str, int], object] = {}
        self._latency_children: dict[str, object] = {}
        self._served_version: str | None = None

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def record_reload(self, outcome: str, model_version: str | None, users: int) -> None:
        self.reloads.labels(outcome).inc()
        version = model_version or "none"
        if version != self._served_version:
            if self._served_version is not None:
                self.model_info.labels(self._served_version).set(0)
            self.model_info.labels(version).set(1)
            self._served_version = version
        self.users.set(users)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every worker's metrics."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
