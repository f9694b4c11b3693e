"""Alert records: an append-only JSONL file, and a Slack-compatible webhook when configured.

Free of Dagster: the run-failure sensor and the check-failure sensors both call ``record_alert``.
Every alert carries a ``dedup_key`` (one per failed run, one per failed check evaluation): an
alert whose key is already in the file is not written or posted again, so a sensor that
re-reads a run (a reset cursor, a daemon restart, two sensors seeing the same run) never
alerts twice for the same thing.
"""

from __future__ import annotations

import fcntl
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

log = logging.getLogger(__name__)

RUN_FAILURE = "run_failure"
CHECK_FAILURE = "check_failure"


@dataclass(frozen=True)
class Alert:
    kind: str  # RUN_FAILURE | CHECK_FAILURE
    reason: str
    run_id: str | None = None
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    partition: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        if self.dedup_key is None:
            object.__setattr__(self, "dedup_key", default_dedup_key(self))

    def slack_text(self) -> str:
        subject = " / ".join(p for p in (self.job, self.asset, self.check) if p) or "music_platform"
        where = f" [partition {self.partition}]" if self.partition else ""
        return f":rotating_light: *{self.kind.replace('_', ' ')}* in {subject}{where}: {self.reason}" + (
            f" (run {self.run_id})" if self.run_id else ""
        )


def default_dedup_key(alert: Alert) -> str:
    """What makes two alerts "the same": the run, and for a check its asset, name and partition."""
    if alert.kind == CHECK_FAILURE:
        parts = (alert.run_id, alert.asset, alert.check, alert.partition)
        return ":".join([CHECK_FAILURE, *(p or "-" for p in parts)])
    if alert.run_id:
        return f"{alert.kind}:{alert.run_id}"
    return f"{alert.kind}:{alert.time}:{alert.reason[:80]}"


def check_failure_alert(
    *,
    asset: str,
    check: str,
    passed: bool,
    severity: str,
    description: str | None,
    run_id: str | None = None,
    job: str | None = None,
    partition: str | None = None,
) -> Alert | None:
    """The alert for one check evaluation: only a failed check of severity ERROR raises one
    (a WARN failure is visible in the UI but does not page anyone)."""
    if passed or severity.upper() != "ERROR":
        return None
    reason = (description or f"check {check} on {asset} failed").strip()
    return Alert(
        kind=CHECK_FAILURE, reason=reason[:500], run_id=run_id, job=job, asset=asset, check=check, partition=partition
    )


@dataclass(frozen=True)
class AlertOutcome:
    recorded: bool  # False when an alert with the same dedup_key was already recorded
    delivered: bool | None  # webhook accepted it; None when no webhook is set or nothing was sent


def alerts_path(data_dir: Path) -> Path:
    return Path(data_dir) / "alerts" / "alerts.jsonl"


def record_alert(alert: Alert, data_dir: Path, webhook_url: str | None = None, timeout: float = 5.0) -> AlertOutcome:
    """Append the alert to the JSONL file unless already there; post it to the webhook if one is set.

    The read-check-append runs under an exclusive file lock, so two sensors in the daemon cannot
    both record the same alert. A webhook failure is logged, never raised: alerting must not
    fail the thing it reports on (the JSONL record is written first and stays).
    """
    path = alerts_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            if alert.dedup_key in _recorded_keys(handle.read()):
                return AlertOutcome(recorded=False, delivered=None)
            handle.seek(0, 2)
            handle.write(json.dumps(asdict(alert), ensure_ascii=False) + "\n")
            handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    if not webhook_url:
        return AlertOutcome(recorded=True, delivered=None)
    return AlertOutcome(recorded=True, delivered=post_to_webhook(alert, webhook_url, timeout))


def post_to_webhook(alert: Alert, webhook_url: str, timeout: float = 5.0) -> bool:
    """POST the Slack-compatible payload (``text``) plus the structured alert; True when accepted."""
    try:
        payload = {"text": alert.slack_text(), "alert": asdict(alert)}
        response = requests.post(webhook_url, json=payload, timeout=timeout)
        response.raise_for_status()
        return True
    except requests.RequestException as exc:
        # The exception text may contain the URL (a Slack webhook URL is a secret): log its type only.
        log.warning("alert webhook failed: %s", type(exc).__name__)
        return False


def _recorded_keys(text: str) -> set[str]:
    keys: set[str] = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a torn line (disk full, crash) must not stop alerting
            continue
        if record.get("dedup_key"):
            keys.add(record["dedup_key"])
    return keys


def read_alerts(data_dir: Path) -> list[dict]:
    path = alerts_path(data_dir)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
