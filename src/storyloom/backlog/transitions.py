"""Backlog item transitions, the alerts about one item, and flapping (an item that keeps going back to pending).

Every status change goes through `change_status` in the caller's transaction: the state machine's rule
(`domain/backlog.py`), the row, its telemetry event and, on a return to pending, the flapping check.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from storyloom.alerting.publish import AlertSignal, fire, resolve_matching
from storyloom.domain import backlog as bl
from storyloom.domain.catalog import (
    BACKLOG_FLAPPING,
    PLANNER_PHASE_BLOCKED,
    PLANNER_PHASE_FAILED,
    TOOL_FAILED,
    TOOL_QUOTA_EXCEEDED,
    TOOL_TIMEOUT,
)
from storyloom.store.events import BACKLOG_TELEMETRY, record_event
from storyloom.store.tables import backlog_items, workflow_events

FLAPPING_WINDOW = timedelta(hours=24)
DEFAULT_FLAPPING_THRESHOLD = 3
# Alerts about one backlog item that its completion (or cancellation) resolves.
ITEM_ALERTS = (PLANNER_PHASE_FAILED, PLANNER_PHASE_BLOCKED, TOOL_FAILED, TOOL_TIMEOUT, TOOL_QUOTA_EXCEEDED)


def item_labels(item: Mapping[str, Any], task_id: str | None = None) -> dict[str, Any]:
    """The identifying labels of a backlog item's alerts (docs/reference/payloads.md)."""
    return {
        "plan_id": item["plan_id"],
        "backlog_id": item["backlog_id"],
        "task_id": task_id or item.get("task_id"),
        "phase": item["phase"],
        "agent_id": item["agent_id"],
        "persona_id": item["persona_id"],
        "provider": item["provider"],
        "model": item["model"],
    }


def change_status(
    conn: Connection,
    item: dict[str, Any],
    to: str,
    reason: str,
    now: datetime,
    *,
    flapping_threshold: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Apply a state-machine transition and write its telemetry event; returns the updated item.

    A return to pending also checks flapping (`health.flapping_threshold`, default 3, within 24h).
    """
    change = bl.transition(item, to, reason, now, **extra)
    conn.execute(update(backlog_items).where(backlog_items.c.id == item["id"]).values(**change.values))
    record_event(conn, BACKLOG_TELEMETRY, change.event, now)
    moved = {**item, **change.values}
    if to == bl.PENDING:
        note_return_to_pending(conn, moved, now, flapping_threshold)
    return moved


def fire_item_alert(
    conn: Connection,
    alert_id: str,
    item: Mapping[str, Any],
    task_id: str,
    description: str,
    now: datetime,
    **labels: Any,
) -> str:
    """Fire one of the item's own alerts with the item's labels (plus `labels`); returns its fingerprint."""
    return fire(conn, AlertSignal(alert_id, {**item_labels(item, task_id), **labels}, description), now)


def resolve_item_alerts(conn: Connection, item: Mapping[str, Any], now: datetime, reason: str) -> int:
    """Resolve every `ITEM_ALERTS` alert of the item (it completed or was cancelled)."""
    return resolve_matching(
        conn, ITEM_ALERTS, now, reason, plan_id=item["plan_id"], backlog_id=item["backlog_id"]
    )


def _flapping_labels(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's identity without its task: each return mints a new task, the alert must stay one."""
    return {key: value for key, value in item_labels(item).items() if key != "task_id"}


def returns_to_pending(conn: Connection, plan_id: str, backlog_id: str, since: datetime) -> int:
    """Telemetry events since `since` that moved the item back to pending (creation does not count)."""
    payloads = conn.execute(
        select(workflow_events.c.payload).where(
            workflow_events.c.kind == BACKLOG_TELEMETRY,
            workflow_events.c.plan_id == plan_id,
            workflow_events.c.backlog_id == backlog_id,
            workflow_events.c.created_at >= since,
        )
    ).scalars()
    return sum(1 for p in payloads if p.get("status") == bl.PENDING and p.get("previous_status"))


def note_return_to_pending(
    conn: Connection, item: Mapping[str, Any], now: datetime, threshold: int | None = None
) -> bool:
    """After an item went back to pending: fire `backlog:flapping` at `threshold` returns within 24h.

    Called by `change_status` once the transition's telemetry event is written; returns whether it fired.
    """
    threshold = threshold or DEFAULT_FLAPPING_THRESHOLD
    count = returns_to_pending(conn, item["plan_id"], item["backlog_id"], now - FLAPPING_WINDOW)
    if count < threshold:
        resolve_matching(
            conn,
            BACKLOG_FLAPPING,
            now,
            "returned to pending fewer times than the threshold within 24h",
            plan_id=item["plan_id"],
            backlog_id=item["backlog_id"],
        )
        return False
    fire(
        conn,
        AlertSignal(
            BACKLOG_FLAPPING,
            _flapping_labels(item),
            f"{item['backlog_id']} ({item['phase']}) returned to pending {count} times within 24h "
            f"(threshold {threshold})",
        ),
        now,
    )
    return True
