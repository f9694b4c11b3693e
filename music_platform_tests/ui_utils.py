"""Helpers for the end-to-end tests that drive the real Dagster UI stack.

``DagsterStack`` starts what an operator starts with ``make dev``: ``dagster dev -w workspace.yaml``,
i.e. the webserver, the daemon (schedules, sensors, backfills, run queue, freshness) and one code
server they share, on a free port, against a temporary ``DAGSTER_HOME`` (holding the project's
``deploy/dagster.local.yaml``) and a temporary data directory with a tiny synthetic world.

The tests talk to it through its GraphQL endpoint, the API the UI itself uses; the queries below
are the ones the UI's pages need (asset graph, checks, freshness, runs, sensors, schedules).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_INSTANCE_YAML = PROJECT_ROOT / "deploy" / "dagster.local.yaml"
WORKSPACE_YAML = PROJECT_ROOT / "workspace.yaml"
SCREENSHOTS_DIR = PROJECT_ROOT / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")

# The tiny world the UI tests run on: enough listeners for the model gate and the checks to be
# meaningful, few enough partitions (days) and rows for the whole graph to build in about a minute.
TINY_WORLD_USERS = 200
TINY_WORLD_DAYS = 3

T = TypeVar("T")


class StackError(RuntimeError):
    """The Dagster stack did not start or answer; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], *, timeout: float, interval: float = 1.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, GraphQLError) as exc:  # the server may still be starting
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def partitions_start(days: int = TINY_WORLD_DAYS, today: datetime | None = None) -> str:
    """The first partition day so that the daily partitions are exactly the last ``days`` full days."""
    today = (today or datetime.now(UTC)).date()
    return (today - timedelta(days=days)).isoformat()


def stack_environment(data_dir: Path, dagster_home: Path, **overrides: str) -> dict[str, str]:
    """A clean environment for the stack: no API keys (synthetic source), a private data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MUSIC_PLATFORM_", "LASTFM_", "SPOTIFY_", "SNOWFLAKE_", "DAGSTER_"))
    }
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        DAGSTER_HOME=str(dagster_home),
        MUSIC_PLATFORM_TARGET="duckdb",
        MUSIC_PLATFORM_DATA_DIR=str(data_dir),
        MUSIC_PLATFORM_SYNTHETIC_USERS=str(TINY_WORLD_USERS),
        MUSIC_PLATFORM_PARTITIONS_START=partitions_start(),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def prepare_dagster_home(dagster_home: Path) -> Path:
    """A DAGSTER_HOME with the project's local instance settings (SQLite storage, pools)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LOCAL_INSTANCE_YAML, dagster_home / "dagster.yaml")
    return dagster_home


class GraphQLError(RuntimeError):
    pass


class DagsterStack:
    """``dagster dev`` (webserver + daemon + code server) in a process group of its own."""

    def __init__(self, root: Path, **env_overrides: str):
        self.root = root
        self.data_dir = root / "data"
        self.dagster_home = prepare_dagster_home(root / "dagster_home")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = stack_environment(self.data_dir, self.dagster_home, **env_overrides)
        self.log_path = root / "dagster-dev.log"
        self.process: subprocess.Popen | None = None
        self._client = httpx.Client(base_url=self.url, timeout=60.0)
        self._location: tuple[str, str] | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> DagsterStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            str(WORKSPACE_YAML),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        log = self.log_path.open("wb")
        # Started in its own folder, not the project's: `dagster dev` loads a `.env` from its working
        # directory over the environment, and a developer's .env (API keys) must not reach the test.
        # workspace.yaml resolves the code location's working directory relative to itself.
        self.process = subprocess.Popen(
            command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_for(self._answers_graphql, timeout=timeout, interval=1.0, what=f"the Dagster webserver on {self.url}")
            wait_for(self._location_loaded, timeout=timeout, interval=2.0, what="the code location to load")
        except (TimeoutError, StackError) as exc:
            self.stop()
            raise StackError(f"{exc}\n--- {self.log_path} (tail) ---\n{self.log_tail()}") from exc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT to ``dagster dev`` (it asks its webserver and daemon to shut down), then SIGKILL to
        the whole process group: run workers and the code server are started in it too."""
        self._client.close()
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the group id is the leader's pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)

    def __enter__(self) -> DagsterStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- GraphQL ----------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.post("/graphql", json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"])[:2000])
        return body["data"]

    def _answers_graphql(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise StackError(f"dagster dev exited with {self.process.returncode}\n{self.log_tail()}")
        return bool(self.graphql("{ version }")["version"])

    def location_entry(self) -> dict[str, Any]:
        data = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        if data["__typename"] != "Workspace":
            raise GraphQLError(str(data))
        entries = data["locationEntries"]
        if len(entries) != 1:
            raise AssertionError(f"expected one code location, got {[e['name'] for e in entries]}")
        return entries[0]

    def _location_loaded(self) -> bool:
        entry = self.location_entry()
        if entry["loadStatus"] != "LOADED":
            return False
        location = entry["locationOrLoadError"]
        if location["__typename"] == "PythonError":
            raise StackError(f"the code location failed to load: {location['message']}\n{location.get('stack')}")
        return True

    @property
    def repository_selector(self) -> dict[str, str]:
        if self._location is None:
            location = self.location_entry()["locationOrLoadError"]
            self._location = (location["name"], location["repositories"][0]["name"])
        return {"repositoryLocationName": self._location[0], "repositoryName": self._location[1]}

    def asset_nodes(self) -> list[dict[str, Any]]:
        return self.graphql(ASSET_NODES_QUERY)["assetNodes"]

    def launch_assets_run(self, asset_paths: list[list[str]], tags: dict[str, str] | None = None) -> str:
        """One run of the implicit asset job over the given assets (the UI's "Launch 1 run"); partition
        range tags make its partitioned assets cover that range."""
        selector = {
            **self.repository_selector,
            "jobName": IMPLICIT_ASSET_JOB,
            "assetSelection": [{"path": p} for p in asset_paths],
        }
        params = {
            "selector": selector,
            "runConfigData": {},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun failed: {result}")
        return result["run"]["runId"]

    def asset_checks(self, path: list[str]) -> list[dict[str, Any]]:
        """The asset's checks with their latest execution (the asset's Checks tab)."""
        nodes = self.graphql(ASSET_NODES_QUERY)["assetNodes"]
        node = next(n for n in nodes if n["assetKey"]["path"] == path)
        return node["assetChecksOrError"]["checks"]

    def latest_materialization(self, path: list[str]) -> dict[str, Any]:
        """The asset's latest materialisation: its run id and its metadata as plain values."""
        result = self.graphql(LATEST_MATERIALIZATION_QUERY, {"assetKey": {"path": path}})["assetNodeOrError"]
        if result["__typename"] != "AssetNode":
            raise GraphQLError(str(result))
        [event] = result["assetMaterializations"]
        values = {}
        for entry in event["metadataEntries"]:
            fields = [k for k in entry if k not in ("label", "__typename")]
            values[entry["label"]] = entry[fields[0]] if fields else entry["__typename"]
        return {"runId": event["runId"], "partition": event["partition"], "metadata": values}

    def run(self, run_id: str) -> dict[str, Any]:
        result = self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise GraphQLError(str(result))
        return result

    def wait_for_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run reaches a final status; return it (its status says how it ended)."""
        return wait_for(
            lambda: (run := self.run(run_id))["status"] in FINAL_RUN_STATUSES and run,
            timeout=timeout,
            interval=2.0,
            what=f"run {run_id} to finish",
        )

    def run_failure_summary(self, run_id: str) -> str:
        """The failed steps' error messages, for an assertion message an operator can act on."""
        events = self.graphql(RUN_FAILURES_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
        lines = [
            f"{e.get('stepKey')}: {(e.get('error') or {}).get('message', e.get('message', ''))[:600]}"
            for e in events
            if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
        ]
        return "\n".join(lines) or "(no failure events)"

    def runs(self, tags: dict[str, str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]} if tags else None
        result = self.graphql(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(str(result))
        return result["results"]

    def sensor(self, name: str) -> dict[str, Any]:
        selector = {**self.repository_selector, "sensorName": name}
        result = self.graphql(SENSOR_QUERY, {"selector": selector})["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(str(result))
        return result

    def start_sensor(self, name: str) -> dict[str, Any]:
        selector = {**self.repository_selector, "sensorName": name}
        result = self.graphql(START_SENSOR_MUTATION, {"selector": selector})["startSensor"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(str(result))
        return result

    def dismiss_welcome_dialog(self) -> None:
        """The UI greets a fresh instance with a newsletter dialog; an operator dismisses it once."""
        self.graphql("mutation { setNuxSeen }")

    def schedules(self) -> list[dict[str, Any]]:
        result = self.graphql(SCHEDULES_QUERY, {"selector": self.repository_selector})["schedulesOrError"]
        if result["__typename"] != "Schedules":
            raise GraphQLError(str(result))
        return result["results"]


IMPLICIT_ASSET_JOB = "__ASSET_JOB"
FINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def require_chromium() -> Path:
    """The system Chromium (Debian package ``chromium``); skip without it, fail in CI."""
    import pytest

    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} not found: install it with `apt-get install -y chromium` to run the browser tests"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def save_screenshot(page, folder: Path, name: str) -> list[Path]:
    """Screenshot to ``folder`` (the pytest tmp dir) and a copy to ``<repo>/screenshots/`` for CI output."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    page.screenshot(path=str(target), full_page=False)
    SCREENSHOTS_DIR.mkdir(exist_ok=True)
    copy = SCREENSHOTS_DIR / name
    shutil.copyfile(target, copy)
    return [target, copy]


def asset_path(node: dict[str, Any]) -> str:
    return "/".join(node["assetKey"]["path"])


WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES_QUERY = """
query AssetGraph {
  assetNodes {
    assetKey { path }
    groupName
    description
    isMaterializable
    isPartitioned
    partitionKeys
    jobNames
    kinds
    owners {
      __typename
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    internalFreshnessPolicy {
      __typename
      ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds }
      ... on CronFreshnessPolicy { deadlineCron }
    }
    freshnessStatusInfo { freshnessStatus freshnessStatusMetadata { lastMaterializedTimestamp } }
    dependencyKeys { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          blocking
          description
          executionForLatestMaterialization {
            runId
            status
            evaluation { success severity description metadataEntries { label } }
          }
        }
      }
    }
    assetMaterializations(limit: 1) {
      runId
      partition
      metadataEntries { label __typename }
    }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
    ... on PythonError { message }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      defaultStatus
      minIntervalSeconds
      sensorState {
        status
        ticks(limit: 10) { status skipReason runIds error { message } }
      }
    }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
  }
}
"""

START_SENSOR_MUTATION = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

SCHEDULES_QUERY = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules {
      results {
        name
        cronSchedule
        executionTimezone
        pipelineName
        scheduleState { status }
        futureTicks(limit: 3) { results { timestamp } }
      }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId
      status
      jobName
      startTime
      endTime
      tags { key value }
      assetSelection { path }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""

RUN_FAILURES_QUERY = """
query RunFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
    }
  }
}
"""

LATEST_MATERIALIZATION_QUERY = """
query LatestMaterialization($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        runId
        partition
        metadataEntries {
          label
          __typename
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on JsonMetadataEntry { jsonString }
          ... on MarkdownMetadataEntry { mdStr }
          ... on PathMetadataEntry { path }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}
"""
