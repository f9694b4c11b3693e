"""Python logging inside a run reaches the run's event log (issue 16): the instance settings in
deploy/ name the package's loggers (``python_logs.managed_python_loggers``), and the package logs
under one root name, ``music_platform``."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml

from music_platform.sources.http import HttpClient, Timeouts
from music_platform_tests.test_http import FAST, ScriptedServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_FILES = [PROJECT_ROOT / "deploy" / "dagster.local.yaml", PROJECT_ROOT / "deploy" / "dagster.yaml"]


def _python_logs(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["python_logs"]


@pytest.mark.parametrize("path", INSTANCE_FILES, ids=lambda p: p.name)
def test_the_instance_settings_manage_the_package_loggers(path):
    settings = _python_logs(path)
    assert {"music_platform", "urllib3"} <= set(settings["managed_python_loggers"])
    assert logging.getLevelName(settings["python_log_level"]) == logging.INFO
    assert settings == _python_logs(INSTANCE_FILES[0]), "local and deployed instances capture the same loggers"


def test_the_package_logs_under_its_own_name():
    """Every logger of the package is ``logging.getLogger(__name__)`` (so under ``music_platform``):
    no root logger, no other name that the managed loggers would miss."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "music_platform").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger":
                if not (len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == "__name__"):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in {"warning", "info", "error"}:
                if getattr(node.func.value, "id", None) == "logging":  # logging.warning(...): the root logger
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert not offenders, f"log through logging.getLogger(__name__): {offenders}"


def test_a_retry_logged_by_an_assets_http_helper_is_in_the_runs_event_log():
    """An asset's HTTP call is retried after a 503: the warning music_platform.sources.http logs
    is an event of the run, with the instance configured as deploy/ configures it."""
    with ScriptedServer([(503, {}, {"error": "busy"})]) as server:

        @dg.asset
        def fetched() -> dict:
            client = HttpClient(source="test", base_url=server.url, retry=FAST, timeouts=Timeouts(1, 2))
            return client.request_json("GET", "items", operation="items")

        with dg.DagsterInstance.ephemeral(settings={"python_logs": _python_logs(INSTANCE_FILES[0])}) as instance:
            result = dg.materialize([fetched], instance=instance)
            assert result.success and len(server.seen) == 2
            messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    retries = [m for m in messages if "test items: attempt 1/4 failed" in m and "retrying in" in m]
    assert retries, f"the retry warning is not in the run's event log: {messages}"


def test_without_managed_loggers_the_line_is_not_captured():
    """The capture comes from the settings, not from somewhere else (the test above can fail)."""
    with ScriptedServer([(503, {}, {"error": "busy"})]) as server:

        @dg.asset
        def fetched() -> dict:
            client = HttpClient(source="test", base_url=server.url, retry=FAST, timeouts=Timeouts(1, 2))
            return client.request_json("GET", "items", operation="items")

        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([fetched], instance=instance)
            messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success and not [m for m in messages if "attempt 1/4 failed" in m]
