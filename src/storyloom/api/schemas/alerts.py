"""Alerts as operators read them (docs/reference/payloads.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp, Unreadable

Severity = Literal["info", "warning", "error", "critical"]
AlertStatus = Literal["firing", "resolved"]


class AlertPayload(Body):
    """An alert as notifications and the PlannerHealth report carry it."""

    alert_id: str
    fingerprint: str = Field(description="a stable hash of the labels without `severity`")
    status: AlertStatus
    severity: Severity
    title: str
    description: str
    labels: dict[str, str] = Field(
        description="always alert_id, severity and source; plan_id... where they apply"
    )
    starts_at: Timestamp
    ends_at: Timestamp | None = Field(description="null while firing")
    generated_at: Timestamp
    slo_minutes: int | None
    slo_breached: bool
    runbook_url: str
    console_url: str


class Alert(AlertPayload):
    silenced_by: list[str] = Field(description="ids of the silences muting it now (firing alerts only)")
    inhibited_by: list[str] = Field(
        description="fingerprints of the alerts inhibiting it now (firing alerts only)"
    )
    unreadable: Unreadable


class HistoryEntry(Body):
    status: AlertStatus
    severity: Severity
    reason: str | None
    at: Timestamp


class AlertNotification(Body):
    """A webhook delivery that carried the alert."""

    delivery_id: str
    webhook_id: str
    receiver: str
    receiver_type: str
    status: Literal["pending", "delivered", "failed", "dead"]
    alert_status: AlertStatus = Field(description="the group's status in that notification")
    attempts: int
    created_at: Timestamp
    delivered_at: Timestamp | None
    last_error: str | None


class AlertDetail(Alert):
    annotations: dict[str, str]
    expires_at: Timestamp | None = Field(
        description="when a firing ingested alert resolves unless sent again; null otherwise"
    )
    receivers: list[str] = Field(description="the receivers of the groups it is in, in routing order")
    history: list[HistoryEntry] = Field(description="oldest first")
    notifications: list[AlertNotification] = Field(description="newest first, at most 100")
