"""PagerDuty Events API v2: one event per alert, since an incident is one alert and a request one event."""

from __future__ import annotations

from typing import Any

from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, json_request, register
from storyloom.domain.alerts import RESOLVED, Alert, Notification, rfc3339

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024  # PagerDuty rejects longer summaries
CLIENT = "Storyloom"

# PagerDuty's four severities happen to be ours; the map keeps that a decision, not an accident.
SEVERITY = {"info": "info", "warning": "warning", "error": "error", "critical": "critical"}


def summary_of(alert: Alert, environment: str) -> str:
    text = f"[{environment}] {alert.title}" if environment else alert.title
    if alert.description:
        text = f"{text}: {alert.description}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def custom_details(alert: Alert) -> dict[str, Any]:
    """The labels, and who acknowledged the alert in Storyloom (`{by, note, at}`) once someone has."""
    details: dict[str, Any] = dict(alert.labels)
    if alert.acknowledgement:
        details["acknowledgement"] = alert.acknowledgement.to_payload()
    return details


def event(spec: ReceiverSpec, notification: Notification, alert: Alert) -> dict[str, Any]:
    """The Events v2 object for one alert: `trigger` while firing, `resolve` once resolved."""
    base: dict[str, Any] = {"routing_key": spec.routing_key or "", "dedup_key": alert.fingerprint}
    if alert.status == RESOLVED:
        return {**base, "event_action": "resolve"}
    payload: dict[str, Any] = {
        "summary": summary_of(alert, notification.environment),
        "source": notification.source,
        "severity": SEVERITY.get(alert.severity, "error"),
        "timestamp": rfc3339(alert.starts_at),
        "class": alert.alert_id,
        "custom_details": custom_details(alert),
    }
    if alert.labels.get("phase"):
        payload["component"] = alert.labels["phase"]
    if alert.labels.get("plan_id"):
        payload["group"] = alert.labels["plan_id"]
    links = [
        {"href": href, "text": text}
        for href, text in ((alert.runbook_url, "Runbook"), (alert.console_url, "Storyloom console"))
        if href
    ]
    body: dict[str, Any] = {**base, "event_action": "trigger", "payload": payload, "client": CLIENT}
    if notification.external_url:
        body["client_url"] = notification.external_url
    if links:
        body["links"] = links
    return body


@register("pagerduty")
def render(spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]:
    return [json_request(event(spec, notification, a), part=a.fingerprint) for a in notification.alerts]
