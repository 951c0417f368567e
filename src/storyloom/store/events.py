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
WORKER_TAKEOVER = "storyloom.worker.takeover"

_LIVE_KIND = {
    BACKLOG_TELEMETRY: "backlog",
    BACKLOG_ACTION: "backlog",
    PERSONA_OBLIGATION: "obligation",
    ALERT_STATE: "alert",
    DELIVERY_ACTION: "delivery",
}


def record_event(
    conn: Connection,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    plan_id: str | None = None,
    backlog_id: str | None = None,
) -> None:
    plan_id = plan_id or payload.get("plan_id")
    backlog_id = backlog_id or payload.get("backlog_id")
    conn.execute(
        insert(workflow_events).values(
            kind=kind, plan_id=plan_id, backlog_id=backlog_id, payload=payload, created_at=now
        )
    )
    _publish_live(conn, kind, [{"kind": kind, "plan_id": plan_id, "backlog_id": backlog_id, **payload}])


def record_events(conn: Connection, kind: str, payloads: Sequence[dict[str, Any]], now: datetime) -> None:
    """Many events of one kind in one statement; each row's plan and backlog ids come from its payload."""
    if not payloads:
        return
    conn.execute(
        insert(workflow_events),
        [
            {
                "kind": kind,
                "plan_id": p.get("plan_id"),
                "backlog_id": p.get("backlog_id"),
                "payload": p,
                "created_at": now,
            }
            for p in payloads
        ],
    )
    _publish_live(
        conn,
        kind,
        [
            {"kind": kind, "plan_id": p.get("plan_id"), "backlog_id": p.get("backlog_id"), **p}
            for p in payloads
        ],
    )


def _publish_live(conn: Connection, kind: str, items: list[dict[str, Any]]) -> None:
    """After commit, hand the events the SSE stream shows to its listeners."""
    live = _LIVE_KIND.get(kind)
    if live is None:
        return

    def publish() -> None:
        for data in items:
            signals.publish(live, data)

    after_commit(conn, publish)
