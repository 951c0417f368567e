"""Acknowledge a firing alert: someone (the owner) is on it, with a note.

An acknowledgement changes what later notifications of the alert say; it sends nothing by itself. It
lasts while the alert fires and stays on the resolved alert as a record; when the alert fires again it
starts unacknowledged (`publish.fire_many`). Acknowledging again replaces the owner and note.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from storyloom.alerting.publish import UNACKNOWLEDGED
from storyloom.domain.alerts import FIRING, Acknowledgement, rfc3339
from storyloom.services.action_log import common_subject, record_action
from storyloom.services.actors import Actor
from storyloom.services.errors import Conflict, Invalid, NotFound
from storyloom.store.db import Database
from storyloom.store.tables import alerts

MAX_OWNER_CHARS = 200
MAX_NOTE_CHARS = 2000


def _firing_alert(conn: Connection, fingerprint: str, doing: str) -> Any:
    row = conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint)).mappings().first()
    if row is None:
        raise NotFound(f"no alert with fingerprint {fingerprint!r}; list them with GET /api/alerts")
    if row["status"] != FIRING:
        raise Conflict(
            f"alert {fingerprint} is {row['status']}; only a firing alert can be {doing} "
            "(a re-fire starts unacknowledged)"
        )
    return row


def _log(conn: Connection, action: str, row: Any, actor: Actor, now: datetime, **details: Any) -> None:
    payload = {
        "action": action,
        **common_subject([row["labels"] or {}]),
        "fingerprint": row["fingerprint"],
        "alert_id": row["alert_id"],
        **details,
        **actor.audit_fields(),
    }
    record_action(conn, payload, now)


def acknowledge(
    db: Database,
    actor: Actor,
    fingerprint: str,
    now: datetime,
    *,
    owner: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Mark a firing alert as taken by `owner` (default: the actor); returns the acknowledgement."""
    with db.begin() as conn:
        owner = (owner or "").strip() or actor.name
        note = note.strip()
        if len(owner) > MAX_OWNER_CHARS:
            raise Invalid.field(["body", "owner"], f"is {len(owner)} characters; at most {MAX_OWNER_CHARS}")
        if len(note) > MAX_NOTE_CHARS:
            raise Invalid.field(["body", "note"], f"is {len(note)} characters; at most {MAX_NOTE_CHARS}")
        row = _firing_alert(conn, fingerprint, "acknowledged")
        conn.execute(
            update(alerts)
            .where(alerts.c.fingerprint == fingerprint)
            .values(acknowledged_by=owner, acknowledged_note=note, acknowledged_at=now)
        )
        _log(conn, "alert-acknowledge", row, actor, now, owner=owner, note=note)
        return {"fingerprint": fingerprint, **Acknowledgement(owner, note, now).to_payload()}


def unacknowledge(db: Database, actor: Actor, fingerprint: str, now: datetime) -> dict[str, Any]:
    """Take the acknowledgement off a firing alert (nobody is on it any more); returns what it was."""
    with db.begin() as conn:
        row = _firing_alert(conn, fingerprint, "unacknowledged")
        if row["acknowledged_by"] is None:
            raise Conflict(f"alert {fingerprint} is not acknowledged; nothing to take back")
        conn.execute(update(alerts).where(alerts.c.fingerprint == fingerprint).values(**UNACKNOWLEDGED))
        _log(conn, "alert-unacknowledge", row, actor, now, owner=row["acknowledged_by"])
        return {
            "fingerprint": fingerprint,
            "by": row["acknowledged_by"],
            "note": row["acknowledged_note"] or "",
            "at": rfc3339(row["acknowledged_at"]),
        }
