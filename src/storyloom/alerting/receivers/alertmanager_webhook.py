"""Alertmanager webhook v4 bodies, so tools written for Alertmanager receivers work unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, json_request, register
from storyloom.domain.alerts import Alert, Notification, rfc3339

VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt for an alert with no end


def labels_of(alert: Alert) -> dict[str, str]:
    """The alert's labels plus `alertname`, the label Alertmanager templates key on."""
    labels = dict(alert.labels)
    labels.setdefault("alertname", alert.alert_id)
    labels.setdefault("severity", alert.severity)
    return labels


def annotations_of(alert: Alert) -> dict[str, str]:
    """Alertmanager-style `summary`, `description`, `runbook_url`, who acknowledged it, then the alert's own
    annotations."""
    annotations = {"summary": alert.title, "description": alert.description}
    if alert.runbook_url:
        annotations["runbook_url"] = alert.runbook_url
    if alert.console_url:
        annotations["console_url"] = alert.console_url
    if alert.acknowledgement:
        annotations["acknowledged_by"] = alert.acknowledgement.by
        annotations["acknowledged_note"] = alert.acknowledgement.note
    annotations.update(alert.annotations)
    return annotations


def common(maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Pairs present with the same value in every map (Alertmanager's commonLabels/commonAnnotations)."""
    iterator = iter(maps)
    first = next(iterator, None)
    if first is None:
        return {}
    shared = dict(first)
    for other in iterator:
        shared = {k: v for k, v in shared.items() if other.get(k) == v}
    return shared


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": labels_of(alert),
        "annotations": annotations_of(alert),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at) or ZERO_TIME,
        "generatorURL": alert.console_url,
        "fingerprint": alert.fingerprint,
    }


def payload(spec: ReceiverSpec, notification: Notification) -> dict[str, Any]:
    alerts = [alert_payload(a) for a in notification.alerts]
    return {
        "version": VERSION,
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.truncated_alerts,
        "status": notification.status,
        "receiver": notification.receiver or spec.name,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": common(a["labels"] for a in alerts),
        "commonAnnotations": common(a["annotations"] for a in alerts),
        "externalURL": notification.external_url,
        "alerts": alerts,
    }


@register("alertmanager_webhook")
def render(spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]:
    return [json_request(payload(spec, notification))]
