"""Alert records: an append-only JSONL file, and a Slack-compatible webhook when configured.

Free of Dagster: the run-failure sensor and the check-failure path both call ``record_alert``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    kind: str  # "run_failure" | "check_failure"
    reason: str
    run_id: str | None = None
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def slack_text(self) -> str:
        subject = " / ".join(p for p in (self.job, self.asset, self.check) if p) or "music_platform"
        return f":rotating_light: *{self.kind.replace('_', ' ')}* in {subject}: {self.reason}" + (
            f" (run {self.run_id})" if self.run_id else ""
        )


def alerts_path(data_dir: Path) -> Path:
    return Path(data_dir) / "alerts" / "alerts.jsonl"


def record_alert(alert: Alert, data_dir: Path, webhook_url: str | None = None, timeout: float = 5.0) -> bool:
    """Append the alert to the JSONL file; post it to the webhook if one is set.

    Returns whether the webhook accepted it (True when there is none). A webhook failure is
    logged, never raised: alerting must not fail the thing it reports on.
    """
    path = alerts_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(alert), ensure_ascii=False) + "\n")
    if not webhook_url:
        return True
    try:
        response = requests.post(webhook_url, json={"text": alert.slack_text(), "alert": asdict(alert)}, timeout=timeout)
        response.raise_for_status()
        return True
    except requests.RequestException as exc:
        log.warning("alert webhook failed: %s", type(exc).__name__)
        return False


def read_alerts(data_dir: Path) -> list[dict]:
    path = alerts_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
