"""The workflow event log (audit): every state change writes one, in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from storyloom import signals
from storyloom.store.db import after_commit
from storyloom.store.tables import workflow_events

BACKLOG_TELEMETRY = "fiction.backlog.telemetry"
BACKLOG_ACTION = "fiction.backlog.action"
BACKLOG_CONTRACT = "fiction.backlog.contract"
PERSONA_OBLIGATION = "fiction.persona.obligation"
ALERT_STATE = "alert.state"
SILENCE_ACTION = "alerting.silence"
DELIVERY_ACTION = "alerting.delivery"

_LIVE_KIND = {
    BACKLOG_TELEMETRY: "backlog",
    BACKLOG_ACTION: "backlog",
    PERSONA_OBLIGATION: "obligation",
    ALERT_STATE: "alert",
    DELIVERY_ACTION: "delivery",
}


def record_events(conn: Connection, kind: str, payloads: Sequence[dict[str, Any]], now: datetime) -> None:
    """`record_event` for a batch of one kind: one multi-row insert."""
    if payloads:
        _insert(conn, kind, [_row(kind, p, now) for p in payloads])


def record_event(
    conn: Connection,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    plan_id: str | None = None,
    backlog_id: str | None = None,
) -> None:
    _insert(conn, kind, [_row(kind, payload, now, plan_id, backlog_id)])


def _row(
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    plan_id: str | None = None,
    backlog_id: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "plan_id": plan_id or payload.get("plan_id"),
        "backlog_id": backlog_id or payload.get("backlog_id"),
        "payload": payload,
        "created_at": now,
    }


def _insert(conn: Connection, kind: str, rows: list[dict[str, Any]]) -> None:
    """Insert the events and, once committed, publish the live ones (SSE)."""
    conn.execute(insert(workflow_events), rows)
    live = _LIVE_KIND.get(kind)
    if live:
        data = [
            {"kind": kind, "plan_id": r["plan_id"], "backlog_id": r["backlog_id"], **r["payload"]}
            for r in rows
        ]

        def publish() -> None:
            for item in data:
                signals.publish(live, item)

        after_commit(conn, publish)
