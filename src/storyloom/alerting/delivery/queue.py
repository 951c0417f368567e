"""The delivery queue: the outbox rows the flush writes, and how a worker claims a batch of them.

A claim takes up to `limit` deliveries that are `pending`/`failed`, due (`next_attempt_at <= now`), whose
receiver is not disabled, and unclaimed or whose claim expired. PostgreSQL: `SELECT ... FOR UPDATE SKIP
LOCKED`, then set `claimed_by`/`claim_expires_at`, so any number of workers share the queue. SQLite: the
same conditional UPDATE inside a `BEGIN IMMEDIATE` transaction (one writer at a time). Each claim carries
its own token, and every later write is fenced on it: a worker whose claim expired (it stalled longer than
its TTL) cannot overwrite the state its successor recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select, update

from storyloom import signals
from storyloom.alerting.delivery.status import DUE_STATUSES, DeliveryStatus
from storyloom.domain.alerts import Notification
from storyloom.store.tables import deliveries, delivery_attempts, receiver_states

DISPATCH_CHANNEL = "dispatch"


def wake() -> None:
    """New or re-enabled deliveries: wake this process's delivery worker now (others poll)."""
    signals.wake(DISPATCH_CHANNEL)


def pending_row(
    delivery_id: str, receiver_type: str, notification: Notification, body: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The `deliveries` row of a notification to send now (`body`: its stored JSON)."""
    return {
        "id": delivery_id,
        "webhook_id": notification.notification_id,
        "receiver": notification.receiver,
        "receiver_type": receiver_type,
        "group_key": notification.group_key,
        "status": DeliveryStatus.PENDING,
        "alert_status": notification.status,
        "fingerprints": [a.fingerprint for a in notification.alerts],
        "notification": body,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclass(frozen=True)
class Job:
    """One claimed delivery."""

    delivery_id: str
    webhook_id: str
    receiver: str
    notification: Mapping[str, Any]
    attempts: int
    first_attempt_at: datetime | None
    client_errors: int  # earlier attempts that were client errors (a 4xx is retried once)


@dataclass(frozen=True)
class Claim:
    token: str
    jobs: list[Job]


def waiting(now: datetime) -> Any:
    """Deliveries to send once their `next_attempt_at` comes: unclaimed, receiver not disabled."""
    disabled = exists().where(
        receiver_states.c.receiver == deliveries.c.receiver, receiver_states.c.disabled_at.is_not(None)
    )
    return and_(
        deliveries.c.status.in_(DUE_STATUSES),
        or_(deliveries.c.claimed_by.is_(None), deliveries.c.claim_expires_at < now),
        ~disabled,
    )


def next_attempt_at(conn: Connection, now: datetime) -> datetime | None:
    """The earliest attempt waiting (an idle poll only reads: on SQLite a write would take the lock)."""
    found: datetime | None = conn.execute(
        select(func.min(deliveries.c.next_attempt_at)).where(waiting(now))
    ).scalar()
    return found


def claim_due(conn: Connection, token: str, now: datetime, limit: int, ttl: timedelta) -> list[Job]:
    """Claim up to `limit` due deliveries under `token` (see the module docstring)."""
    query = (
        select(deliveries.c.id)
        .where(waiting(now), deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=deliveries)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    conn.execute(
        update(deliveries)
        .where(
            deliveries.c.id.in_(ids),
            or_(deliveries.c.claimed_by.is_(None), deliveries.c.claim_expires_at < now),
        )
        .values(claimed_by=token, claim_expires_at=now + ttl)
    )
    rows = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.webhook_id,
            deliveries.c.receiver,
            deliveries.c.notification,
            deliveries.c.attempts,
            deliveries.c.first_attempt_at,
            deliveries.c.next_attempt_at,
        )
        .where(deliveries.c.id.in_(ids), deliveries.c.claimed_by == token)
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
    ).all()
    client_errors: dict[str, int] = dict(
        conn.execute(
            select(delivery_attempts.c.delivery_id, func.count())
            .where(
                delivery_attempts.c.delivery_id.in_([r.id for r in rows]),
                delivery_attempts.c.outcome == "client_error",
            )
            .group_by(delivery_attempts.c.delivery_id)
        ).all()
    )
    return [
        Job(
            delivery_id=r.id,
            webhook_id=r.webhook_id,
            receiver=r.receiver,
            notification=r.notification,
            attempts=r.attempts or 0,
            first_attempt_at=r.first_attempt_at,
            client_errors=int(client_errors.get(r.id, 0)),
        )
        for r in rows
    ]


def still_claimed(conn: Connection, token: str, ids: list[str]) -> set[str]:
    """The fence: which of `ids` are still claimed under `token` (locked on PostgreSQL)."""
    query = select(deliveries.c.id).where(deliveries.c.id.in_(ids), deliveries.c.claimed_by == token)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=deliveries)
    return set(conn.execute(query).scalars())


def release_claims_of(conn: Connection, worker_prefix: str, live_prefix: str) -> int:
    """Release the due deliveries claimed under `worker_prefix` but not `live_prefix` (a dead process's)."""
    released = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.claimed_by.startswith(worker_prefix, autoescape=True),
            ~deliveries.c.claimed_by.startswith(live_prefix, autoescape=True),
            deliveries.c.status.in_(DUE_STATUSES),
        )
        .values(claimed_by=None, claim_expires_at=None)
    ).rowcount
    return int(released or 0)
