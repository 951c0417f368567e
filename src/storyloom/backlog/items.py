"""A plan's backlog items: added by plan creation and by the phases that grow the plan (chapters, scenes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from storyloom import signals
from storyloom.domain import backlog as bl
from storyloom.store.db import after_commit
from storyloom.store.events import BACKLOG_TELEMETRY, record_event
from storyloom.store.tables import backlog_items


def add_items(
    conn: Connection,
    plan: dict[str, Any],
    specs: Sequence[bl.ItemSpec],
    now: datetime,
    *,
    reason: str,
    agent_id: str | None = None,
    persona_id: str | None = None,
) -> list[str]:
    """Insert backlog items that do not exist yet; each writes its telemetry event."""
    wanted = [s.backlog_id for s in specs]
    existing = set(
        conn.execute(
            select(backlog_items.c.backlog_id).where(
                backlog_items.c.plan_id == plan["id"], backlog_items.c.backlog_id.in_(wanted)
            )
        ).scalars()
    )
    rows = []
    for spec in specs:
        if spec.backlog_id in existing:
            continue
        rows.append(
            {
                "plan_id": plan["id"],
                "backlog_id": spec.backlog_id,
                "description": spec.description,
                "phase": spec.phase,
                "status": bl.PENDING,
                "inputs": list(spec.inputs),
                "outputs": list(spec.outputs),
                "agent_id": agent_id or plan["agent_id"],
                "persona_id": persona_id or plan["persona_id"],
                "provider": plan["provider"],
                "model": plan["model"],
                "task_id": None,
                "attempts": 0,
                "branch_slug": plan["branch_slug"],
                "chapter": spec.chapter,
                "scene": spec.scene,
                "created_at": now,
                "updated_at": now,
                "priority": 0,
            }
        )
    if rows:
        conn.execute(insert(backlog_items), rows)
        after_commit(conn, lambda: signals.wake(signals.SCHEDULER_CHANNEL))
        for row in rows:
            record_event(
                conn,
                BACKLOG_TELEMETRY,
                {
                    "plan_id": plan["id"],
                    "backlog_id": row["backlog_id"],
                    "phase": row["phase"],
                    "status": bl.PENDING,
                    "previous_status": None,
                    "reason": reason,
                    "branch": plan["branch_slug"],
                    "task_id": None,
                },
                now,
            )
    return [r["backlog_id"] for r in rows]
