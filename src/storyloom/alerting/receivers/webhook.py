"""The Storyloom webhook body (docs/reference/payloads.md): versioned and documented, for any consumer."""

from __future__ import annotations

from typing import Any

from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, json_request, register
from storyloom.domain.alerts import Notification

VERSION = "1"
TYPE = "storyloom.alerts"


def payload(spec: ReceiverSpec, notification: Notification) -> dict[str, Any]:
    """The JSON object of docs/reference/payloads.md, keys in the documented order."""
    return {
        "version": VERSION,
        "type": TYPE,
        "source": notification.source,
        "environment": notification.environment,
        "receiver": notification.receiver or spec.name,
        "routing_key": notification.routing_key if notification.routing_key is not None else spec.routing_key,
        "group_key": notification.group_key,
        "status": notification.status,
        "group_labels": dict(notification.group_labels),
        "alerts": [alert.to_payload() for alert in notification.alerts],
        "truncated_alerts": notification.truncated_alerts,
    }


@register("webhook")
def render(spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]:
    return [json_request(payload(spec, notification))]
