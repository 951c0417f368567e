"""Helpers for delivery tests: a Runtime whose receivers point at loopback servers, and outbox rows."""

from __future__ import annotations

import base64
import dataclasses
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from storyloom.alerting.notification import notification_json
from storyloom.alerting.publish import AlertSignal, alert_fingerprint, alert_labels
from storyloom.clock import FrozenClock
from storyloom.domain.alerts import FIRING, Alert, Notification
from storyloom.ids import new_id
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.tables import alerts, deliveries, delivery_attempts, receiver_states
from tests.conftest import make_config
from tests.support.receivers import Handler, ReceivedRequest, ReceiverServer, Reply

SECRET = "whsec_" + base64.b64encode(b"dispatcher-test-secret-012345678").decode()
SECRET_ENV = "DISPATCHER_TEST_SECRET"
PD_KEY = "0123456789abcdef0123456789abcdef"


def wall_clock() -> FrozenClock:
    """Frozen at the real time (whole seconds): receivers check `webhook-timestamp` against their clock."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def receiver(name: str, url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "url": url,
        "secret_env": SECRET_ENV,
        "routing_key": "fiction-ops",
        "timeout": "5s",
        "retry": {"schedule": ["0s", "10s", "10s"], "max_age": "1h"},
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def runtime(db: Database, clock: FrozenClock, *receivers: dict[str, Any], **top: Any) -> Runtime:
    """Every alert goes to every receiver (one catch-all child route each, `continue: true`)."""
    names = [r["name"] for r in receivers]
    alerting = {
        "receivers": list(receivers),
        "route": {
            "receiver": names[0],
            "group_by": ["alert_id", "plan_id", "receiver"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "4h",
            "routes": [{"receiver": n, "continue": True} for n in names],
        },
    }
    config = make_config(alerting=alerting, public_url="http://console.test", **top)
    return Runtime(config=config, db=db, clock=clock)


def make_alert(
    now: datetime, alert_id: str = "planner:phase-failed", status: str = FIRING, **labels: str
) -> Alert:
    full = alert_labels(AlertSignal(alert_id, {"plan_id": "plan_1", **labels}, "it broke"))
    return Alert(
        alert_id=alert_id,
        fingerprint=alert_fingerprint(full),
        status=status,
        severity=full["severity"],
        title="Planner phase failed",
        description="scroll-1 failed 3 times",
        labels=full,
        starts_at=now,
        ends_at=None if status == FIRING else now,
        generated_at=now,
        slo_minutes=15,
        runbook_url=f"http://console.test/runbooks/{alert_id}",
        console_url="http://console.test/alerts/x",
    )


def enqueue(rt: Runtime, receiver_name: str, *alert_list: Alert, created_at: datetime | None = None) -> str:
    """Insert one pending delivery (as the notifier writes them); returns its id."""
    now = rt.clock.now()
    spec = rt.alerting.receivers[receiver_name]
    notification = Notification(
        notification_id=new_id("msg"),
        receiver=receiver_name,
        group_key=f'{{}}:{{alert_id="x",receiver="{receiver_name}"}}',
        group_labels={"alert_id": alert_list[0].alert_id if alert_list else "x"},
        alerts=alert_list or (make_alert(now),),
        environment="pre-alpha",
        routing_key=None if spec.type == "pagerduty" else spec.routing_key,
        external_url="http://console.test",
    )
    delivery_id = new_id("dlv")
    with rt.db.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                id=delivery_id,
                webhook_id=notification.notification_id,
                receiver=receiver_name,
                receiver_type=spec.type,
                group_key=notification.group_key,
                status="pending",
                alert_status=notification.status,
                fingerprints=[a.fingerprint for a in notification.alerts],
                notification=notification_json(notification),
                attempts=0,
                next_attempt_at=now,
                created_at=created_at or now,
            )
        )
    return delivery_id


def delivery(rt: Runtime, delivery_id: str) -> dict[str, Any]:
    with rt.db.read() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one()
        return dict(row)


def attempts(rt: Runtime, delivery_id: str) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id == delivery_id)
            .order_by(delivery_attempts.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def receiver_state(rt: Runtime, name: str) -> dict[str, Any] | None:
    with rt.db.read() as conn:
        row = (
            conn.execute(select(receiver_states).where(receiver_states.c.receiver == name)).mappings().first()
        )
        return dict(row) if row else None


def failing_alerts(rt: Runtime) -> dict[str, dict[str, Any]]:
    """`delivery:failing` alerts by their `receiver` label."""
    with rt.db.read() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.alert_id == "delivery:failing")).mappings()
        return {r["labels"]["receiver"]: dict(r) for r in rows}


class PrivateReceiver:
    """A loopback receiver whose URLs carry a random path prefix.

    Other test processes on this machine run dispatchers too; when one of their receivers is gone and this
    server reuses its port, their retries land here. Requests outside the prefix are answered 404 and left
    out of `requests`, and scripted replies are only spent on ours. The handler sees the path without the
    prefix (so `pagerduty_events` still finds `/v2/enqueue`).
    """

    def __init__(self, handler: Handler) -> None:
        self.prefix = "/" + uuid.uuid4().hex[:12]
        self.handler = handler
        self._replies: deque[Reply] = deque()
        self._lock = threading.Condition()
        self._mine: list[ReceivedRequest] = []
        self.server = ReceiverServer(self._handle)

    def _handle(self, request: ReceivedRequest) -> Reply:
        if not request.path.startswith(self.prefix + "/"):
            return Reply(404, "not this test's receiver")
        request = dataclasses.replace(request, path=request.path[len(self.prefix) :])
        with self._lock:
            self._mine.append(request)
            self._lock.notify_all()
            scripted = self._replies.popleft() if self._replies else None
        return scripted if scripted is not None else self.handler(request)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._mine)

    def url_for(self, path: str) -> str:
        return self.server.url_for(self.prefix + (path if path.startswith("/") else "/" + path))

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._mine) >= count, timeout):
                raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self._mine)}")
            return list(self._mine)

    def __enter__(self) -> PrivateReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
