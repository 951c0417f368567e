"""Webhook deliveries as operators read them, and replay (a new delivery with the same `webhook-id`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from storyloom.alerting.delivery.queue import wake
from storyloom.alerting.delivery.receiver_state import enable_receivers, receiver_disabled
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import rfc3339
from storyloom.domain.readable import kind_of, readable_list, readable_text
from storyloom.ids import new_id
from storyloom.services.action_log import log_action, subjects_by_plan
from storyloom.services.actors import Actor
from storyloom.services.errors import Conflict, Invalid, NotFound
from storyloom.store.db import Database, after_commit
from storyloom.store.events import BACKLOG_ACTION, DELIVERY_ACTION, record_event
from storyloom.store.tables import deliveries, delivery_attempts

STATUSES = ("pending", "delivered", "failed", "dead")
MAX_LIMIT = 1000


def attempt_view(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "at": rfc3339(row["at"]),
        "status_code": row["status_code"],
        "outcome": row["outcome"],
        "error": row["error"],
        "latency_ms": row["latency_ms"],
    }


def _alert_ids(notification: object) -> tuple[list[str], list[str]]:
    """The alert ids a stored notification carried, and what in it could not be read."""
    if not isinstance(notification, dict) or not isinstance(notification.get("alerts", []), list):
        return [], [f"notification: stored as {kind_of(notification)}, not a notification"]
    ids, problems = set(), []
    for i, alert in enumerate(notification.get("alerts", [])):
        if not isinstance(alert, dict):
            problems.append(f"notification.alerts.{i}: stored as {kind_of(alert)}, not an alert")
            continue
        alert_id, id_problems = readable_text(alert.get("alert_id", ""), f"notification.alerts.{i}.alert_id")
        ids.add(alert_id)
        problems += id_problems
    return sorted(ids), problems


def delivery_view(row: Mapping[Any, Any], attempts: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """One delivery: its state, its schedule and its attempt log (errors are stored scrubbed).

    `unreadable` (only when set) lists what was repaired to show a row an older version stored.
    """
    alert_ids, problems = _alert_ids(row["notification"])
    fingerprints, fingerprint_problems = readable_list(row["fingerprints"], "fingerprints")
    view = {
        "id": row["id"],
        "delivery_id": row["id"],
        "webhook_id": row["webhook_id"],
        "receiver": row["receiver"],
        "receiver_type": row["receiver_type"],
        "group_key": row["group_key"],
        "status": row["status"],
        "alert_status": row["alert_status"],
        "fingerprints": fingerprints,
        "alert_ids": alert_ids,
        "attempts": row["attempts"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]),
        "first_attempt_at": rfc3339(row["first_attempt_at"]),
        "last_attempt_at": rfc3339(row["last_attempt_at"]),
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "latency_ms": row["latency_ms"],
        "replay_of": row["replay_of"],
        "created_at": rfc3339(row["created_at"]),
        "delivered_at": rfc3339(row["delivered_at"]),
        "attempt_log": [attempt_view(a) for a in attempts],
    }
    if problems or fingerprint_problems:
        view["unreadable"] = problems + fingerprint_problems
    return view


def _attempts_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[Mapping[Any, Any]]]:
    found: dict[str, list[Mapping[Any, Any]]] = {}
    if not ids:
        return found
    rows = conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id.in_(list(ids)))
        .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.attempt, delivery_attempts.c.id)
    ).mappings()
    for row in rows:
        found.setdefault(row["delivery_id"], []).append(row)
    return found


def list_deliveries(
    conn: Connection,
    *,
    receiver: str | None = None,
    status: str | None = None,
    limit: int = 100,
    page: int = 1,
) -> list[dict[str, Any]]:
    """Newest first, each with its attempt log; `page` counts from 1 in steps of `limit`."""
    if status is not None and status not in STATUSES:
        raise Invalid.field(["query", "status"], f"unknown status {status!r}; use {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid.field(["query", "limit"], f"limit must be between 1 and {MAX_LIMIT}")
    if page < 1:
        raise Invalid.field(["query", "page"], "page counts from 1")
    query = select(deliveries).order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
    if receiver:
        query = query.where(deliveries.c.receiver == receiver)
    if status:
        query = query.where(deliveries.c.status == status)
    rows = list(conn.execute(query.limit(limit).offset((page - 1) * limit)).mappings())
    attempts = _attempts_of(conn, [r["id"] for r in rows])
    return [delivery_view(r, attempts.get(r["id"], [])) for r in rows]


def _row(conn: Connection, delivery_id: str) -> Mapping[Any, Any]:
    row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r}; list them with GET /api/deliveries")
    return row


def get_delivery(conn: Connection, delivery_id: str) -> dict[str, Any]:
    row = _row(conn, delivery_id)
    return delivery_view(row, _attempts_of(conn, [delivery_id]).get(delivery_id, []))


def replay(
    db: Database,
    delivery_id: str,
    actor: Actor,
    now: datetime,
    *,
    alerting: AlertingRuntime | None = None,
) -> dict[str, Any]:
    """Send a delivery again as a new delivery with the same `webhook-id` and notification (any status).

    A disabled receiver (it answered 410) is re-enabled by the replay, and the answer says so. A receiver
    that is no longer configured is a 409: there is nowhere to send to.
    """
    with db.begin() as conn:
        original = _row(conn, delivery_id)
        receiver = original["receiver"]
        if alerting is not None and receiver not in alerting.receivers:
            raise Conflict(
                f"receiver {receiver!r} is not in the current config; add it back under alerting.receivers, "
                "reload the config (POST /api/config/reload), then replay"
            )
        disabled = receiver_disabled(conn, receiver)
        reenabled = bool(enable_receivers(conn, [receiver], now)) if disabled else False
        new_delivery_id = new_id("dlv")
        conn.execute(
            insert(deliveries).values(
                id=new_delivery_id,
                webhook_id=original["webhook_id"],
                receiver=receiver,
                receiver_type=original["receiver_type"],
                group_key=original["group_key"],
                status="pending",
                alert_status=original["alert_status"],
                fingerprints=list(original["fingerprints"] or []),
                notification=original["notification"],
                attempts=0,
                next_attempt_at=now,
                replay_of=original["id"],
                created_at=now,
            )
        )
        payload = {
            "action": "replay",
            "delivery_id": original["id"],
            "new_delivery_id": new_delivery_id,
            "webhook_id": original["webhook_id"],
            "receiver": receiver,
            "receiver_reenabled": reenabled,
            **actor.audit_fields(),
            "status": "pending",
        }
        alerts = (original["notification"] or {}).get("alerts", [])
        for subject in subjects_by_plan(a.get("labels", {}) for a in alerts):
            record_event(conn, BACKLOG_ACTION, {**payload, **subject}, now)
        record_event(conn, DELIVERY_ACTION, payload, now)
        log_action(conn, payload)
        after_commit(conn, wake)
        message = f"delivery {original['id']} replayed as {new_delivery_id} with webhook-id {original['webhook_id']}"
        if reenabled:
            message += f"; receiver {receiver!r} was disabled (410 Gone) and is enabled again"
        return {
            **get_delivery(conn, new_delivery_id),
            "receiver_reenabled": reenabled,
            "message": message,
        }
