"""Persona obligations: created from continuity hooks, reopened when a hook is re-emitted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom.alerting.publish import AlertSignal, fire
from storyloom.ids import new_id
from storyloom.store.events import PERSONA_OBLIGATION, record_event
from storyloom.store.tables import persona_obligations

OPEN, RESOLVED, DISMISSED = "open", "resolved", "dismissed"


def obligation_alert(row: dict[str, Any], alert_id: str = "obligation:open") -> AlertSignal:
    return AlertSignal(
        alert_id,
        {
            "plan_id": row["plan_id"],
            "obligation_id": row["obligation_id"],
            "persona_id": row["persona_id"],
            "backlog_id": row["source_backlog_id"],
            "phase": row["source_phase"],
        },
        f"Obligation '{row['title']}' ({row['slug']}) is open for persona {row['persona_id']}",
    )


def emit_hook(
    conn: Connection,
    *,
    plan_id: str,
    persona_id: str,
    character_id: str | None,
    slug: str,
    title: str,
    description: str,
    source_phase: str,
    source_backlog_id: str,
    branch_slug: str,
    now: datetime,
) -> str:
    """Create the obligation for a hook, or reopen it when an earlier one was settled; returns its id."""
    row = (
        conn.execute(
            select(persona_obligations).where(
                persona_obligations.c.plan_id == plan_id,
                persona_obligations.c.persona_id == persona_id,
                persona_obligations.c.slug == slug,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        values: dict[str, Any] = {
            "obligation_id": new_id("obl"),
            "plan_id": plan_id,
            "persona_id": persona_id,
            "character_id": character_id,
            "slug": slug,
            "title": title,
            "description": description,
            "status": OPEN,
            "source_phase": source_phase,
            "source_backlog_id": source_backlog_id,
            "branch_slug": branch_slug,
            "voice_drift": False,
            "resolution_notes": [],
            "resolved_at": None,
            "resolved_by": None,
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(insert(persona_obligations).values(**values))
        record_event(conn, PERSONA_OBLIGATION, {"action": "open", **_event(values)}, now)
        fire(conn, obligation_alert(values), now)
        return str(values["obligation_id"])
    if row["status"] != OPEN:
        values = {
            **row,
            "status": OPEN,
            "source_phase": source_phase,
            "source_backlog_id": source_backlog_id,
            "updated_at": now,
        }
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == row["obligation_id"])
            .values(
                status=OPEN, source_phase=source_phase, source_backlog_id=source_backlog_id, updated_at=now
            )
        )
        record_event(conn, PERSONA_OBLIGATION, {"action": "reopen", **_event(values)}, now)
        fire(conn, obligation_alert(values), now)
    return str(row["obligation_id"])


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in (
            "obligation_id",
            "plan_id",
            "persona_id",
            "slug",
            "status",
            "source_phase",
            "source_backlog_id",
            "voice_drift",
        )
    }
