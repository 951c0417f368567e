"""Alert identity and the notification a receiver gets (docs/reference/payloads.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FIRING = "firing"
RESOLVED = "resolved"
DRILL_LABEL = "drill"  # `drill="true"`: a test alert sent by `storyloom drill`, never a real incident
DRILL_RECEIVER_LABEL = "drill_receiver"  # a drill forced to this one receiver (`storyloom drill --receiver`)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable hash of the sorted labels: the same label set always names the same alert."""
    canonical = json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rfc3339(moment: datetime | None) -> str | None:
    """`2026-11-25T20:00:00Z` (UTC, second precision unless sub-second matters)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class Acknowledgement:
    """Someone is on a firing alert: who, their note, and since when."""

    by: str
    note: str
    at: datetime

    def to_payload(self) -> dict[str, Any]:
        return {"by": self.by, "note": self.note, "at": rfc3339(self.at)}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any] | None) -> Acknowledgement | None:
        if not data:
            return None
        return cls(by=data["by"], note=data.get("note") or "", at=datetime.fromisoformat(data["at"]))


@dataclass(frozen=True)
class Alert:
    """One alert as receivers and the API see it."""

    alert_id: str
    fingerprint: str
    status: str
    severity: str
    title: str
    description: str
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generated_at: datetime
    slo_minutes: int | None = None
    slo_breached: bool = False
    runbook_url: str = ""
    console_url: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    acknowledgement: Acknowledgement | None = None

    @property
    def drill(self) -> bool:
        return self.labels.get(DRILL_LABEL) == "true"

    def to_payload(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "description": self.description,
            "labels": dict(self.labels),
            "starts_at": rfc3339(self.starts_at),
            "ends_at": rfc3339(self.ends_at),
            "generated_at": rfc3339(self.generated_at),
            "slo_minutes": self.slo_minutes,
            "slo_breached": self.slo_breached,
            "runbook_url": self.runbook_url,
            "console_url": self.console_url,
            "acknowledgement": self.acknowledgement.to_payload() if self.acknowledgement else None,
            "drill": self.drill,
        }


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one aggregation group at one flush."""

    notification_id: str  # the Standard Webhooks `webhook-id`: unchanged across retries and replays
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[Alert, ...]
    environment: str
    source: str = "storyloom"
    routing_key: str | None = None
    truncated_alerts: int = 0
    external_url: str = ""

    @property
    def status(self) -> str:
        return FIRING if any(a.status == FIRING for a in self.alerts) else RESOLVED
