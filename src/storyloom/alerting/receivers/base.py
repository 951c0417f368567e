"""Receiver settings, rendered HTTP requests, and the renderer registry shared by every receiver type.

Rendering is split in two so the delivery worker can store a body once and sign it afresh at each attempt:
`render_unsigned(spec, notification)` builds the bodies (stable across retries), and
`sign_request(spec, request, msg_id, attempt_at)` adds the Standard Webhooks headers for one attempt.
`render_request` does both.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import urlsplit

from storyloom.alerting import signing
from storyloom.domain.alerts import FIRING, Notification

ReceiverType = Literal["webhook", "slack", "pagerduty", "alertmanager_webhook"]
RECEIVER_TYPES: tuple[str, ...] = ("webhook", "slack", "pagerduty", "alertmanager_webhook")

DEFAULT_RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (0, 5, 30, 120, 600, 1800, 3600)
)
JSON = "application/json"


@dataclass(frozen=True, repr=False)
class ReceiverSpec:
    """One configured receiver, with its secret already resolved from `secret_env` / `secret_file`."""

    name: str
    type: str
    url: str
    secret: str | None = None  # whitespace-separated `whsec_...` secrets; never logged
    routing_key: str | None = None  # webhook: a label for the consumer; pagerduty: the integration key
    send_resolved: bool = True
    timeout: timedelta = timedelta(seconds=10)
    max_per_second: float = 0.0  # 0 = unlimited
    retry_schedule: tuple[timedelta, ...] = DEFAULT_RETRY_SCHEDULE
    retry_max_age: timedelta = timedelta(hours=24)
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Secrets, PagerDuty integration keys and custom header values (often tokens) stay out of logs.
        secret = "'<redacted>'" if self.secret else "None"
        routing_key = (
            "'<redacted>'" if self.routing_key and self.type == "pagerduty" else repr(self.routing_key)
        )
        return (
            f"ReceiverSpec(name={self.name!r}, type={self.type!r}, url={redact_url(self.url)!r}, "
            f"secret={secret}, routing_key={routing_key}, send_resolved={self.send_resolved}, "
            f"timeout={self.timeout!r}, max_per_second={self.max_per_second}, "
            f"retry_schedule=<{len(self.retry_schedule)} delays>, retry_max_age={self.retry_max_age!r}, "
            f"headers={sorted(self.headers)!r})"
        )

    __str__ = __repr__


def redact_url(url: str) -> str:
    """Scheme, host and port only: Slack and similar URLs carry their credential in the path."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}/" + ("…" if parts.path.strip("/") or parts.query else "")


@dataclass(frozen=True)
class RenderedRequest:
    """One HTTP POST to a receiver. `part` tells apart several requests of one notification."""

    body: bytes
    headers: dict[str, str]
    part: str = ""  # "" when a notification is one request; the alert fingerprint for PagerDuty


def json_request(payload: object, part: str = "") -> RenderedRequest:
    """A compact UTF-8 JSON body: the exact bytes that get signed and sent."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return RenderedRequest(body=body, headers={"content-type": JSON}, part=part)


class Renderer(Protocol):
    """Turns a notification into the request bodies a receiver type expects (unsigned)."""

    def __call__(self, spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]: ...


RENDERERS: dict[str, Renderer] = {}


def register(receiver_type: str) -> Callable[[Renderer], Renderer]:
    """Decorator with which each receiver module adds its renderer to `RENDERERS`."""

    def add(renderer: Renderer) -> Renderer:
        RENDERERS[receiver_type] = renderer
        return renderer

    return add


def renderer_for(receiver_type: str) -> Renderer:
    try:
        return RENDERERS[receiver_type]
    except KeyError:
        raise ValueError(
            f"unknown receiver type {receiver_type!r}: expected one of {', '.join(RECEIVER_TYPES)}"
        ) from None


def alerts_to_send(spec: ReceiverSpec, notification: Notification) -> Notification | None:
    """Drop resolved alerts unless `send_resolved` (as Alertmanager does); None = send nothing."""
    if spec.send_resolved:
        return notification if notification.alerts else None
    firing = tuple(a for a in notification.alerts if a.status == FIRING)
    if not firing:
        return None
    return (
        notification
        if len(firing) == len(notification.alerts)
        else dataclasses.replace(notification, alerts=firing)
    )


def render_unsigned(spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]:
    """The bodies to POST (empty when there is nothing this receiver wants to hear)."""
    renderer = renderer_for(spec.type)
    kept = alerts_to_send(spec, notification)
    return [] if kept is None else renderer(spec, kept)


def sign_request(
    spec: ReceiverSpec, request: RenderedRequest, msg_id: str, attempt_at: datetime
) -> RenderedRequest:
    """Add `webhook-id`, `webhook-timestamp` (the attempt's) and `webhook-signature` when a secret is set."""
    headers = {"content-type": JSON, **{k.lower(): v for k, v in request.headers.items()}}
    headers.update(signing.signature_headers(spec.secret, msg_id, attempt_at, request.body))
    return dataclasses.replace(request, headers=headers)


def render_request(
    spec: ReceiverSpec, notification: Notification, attempt_at: datetime
) -> list[RenderedRequest]:
    """Render and sign every request of `notification` for an attempt at `attempt_at`.

    One element for every type but PagerDuty, which gets one request per alert. `webhook-id` is the
    notification id for every request, unchanged across retries and replays.
    """
    return [
        sign_request(spec, request, notification.notification_id, attempt_at)
        for request in render_unsigned(spec, notification)
    ]


# The renderer modules import the types above and register themselves; import them last.
from storyloom.alerting.receivers import alertmanager_webhook, pagerduty, slack, webhook  # noqa: E402, F401
