"""The stored notification: what `deliveries.notification` holds, and the Notification it rebuilds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from storyloom.domain.alerts import Acknowledgement, Alert, Notification


def notification_json(notification: Notification) -> dict[str, Any]:
    """What `deliveries.notification` holds: the webhook body (docs/reference/payloads.md) and what rebuilds it."""
    return {
        "notification_id": notification.notification_id,
        "source": notification.source,
        "environment": notification.environment,
        "receiver": notification.receiver,
        "routing_key": notification.routing_key,
        "group_key": notification.group_key,
        "status": notification.status,
        "group_labels": dict(notification.group_labels),
        "alerts": [{**a.to_payload(), "annotations": dict(a.annotations)} for a in notification.alerts],
        "truncated_alerts": notification.truncated_alerts,
        "external_url": notification.external_url,
    }


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def notification_from_json(data: Mapping[str, Any], *, notification_id: str | None = None) -> Notification:
    """Rebuild the Notification a delivery row carries (the delivery worker renders it per receiver type)."""
    alerts = []
    for item in data.get("alerts", []):
        starts_at = _time(item["starts_at"])
        generated_at = _time(item.get("generated_at")) or starts_at
        assert starts_at is not None and generated_at is not None
        alerts.append(
            Alert(
                alert_id=item["alert_id"],
                fingerprint=item["fingerprint"],
                status=item["status"],
                severity=item["severity"],
                title=item["title"],
                description=item["description"],
                labels=dict(item["labels"]),
                starts_at=starts_at,
                ends_at=_time(item.get("ends_at")),
                generated_at=generated_at,
                slo_minutes=item.get("slo_minutes"),
                slo_breached=bool(item.get("slo_breached")),
                runbook_url=item.get("runbook_url", ""),
                console_url=item.get("console_url", ""),
                annotations=dict(item.get("annotations") or {}),
                acknowledgement=Acknowledgement.from_payload(item.get("acknowledgement")),
            )
        )
    return Notification(
        notification_id=notification_id or data["notification_id"],
        receiver=data["receiver"],
        group_key=data["group_key"],
        group_labels=dict(data.get("group_labels") or {}),
        alerts=tuple(alerts),
        environment=data.get("environment", ""),
        source=data.get("source", "storyloom"),
        routing_key=data.get("routing_key"),
        truncated_alerts=int(data.get("truncated_alerts", 0)),
        external_url=data.get("external_url", ""),
    )
