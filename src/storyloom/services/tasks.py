"""Tasks: each run of a backlog item. Creating one is how work gets queued (the scheduler enqueues it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom import signals
from storyloom.ids import new_id
from storyloom.store.db import after_commit
from storyloom.store.tables import backlog_items, tasks

LIVE = ("queued", "running")


def claim_for_task(
    conn: Connection,
    item: dict[str, Any],
    *,
    reason: str,
    now: datetime,
    agent_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    notes: str | None = None,
) -> str | None:
    """Give `item` a new queued task if nobody changed it meanwhile; returns the task id, or None when lost.

    The conditional update on the item's current `task_id` is what makes one claimant win across
    processes (two schedulers, or two concurrent resumes).
    """
    task_id = new_id("task")
    current = item.get("task_id")
    guard = backlog_items.c.task_id.is_(None) if current is None else backlog_items.c.task_id == current
    values: dict[str, Any] = {"task_id": task_id, "updated_at": now}
    if agent_id:
        values.update(agent_id=agent_id, provider=provider, model=model)
    won = conn.execute(update(backlog_items).where(backlog_items.c.id == item["id"], guard).values(**values))
    if won.rowcount != 1:
        return None
    previous = conn.execute(
        select(tasks.c.attempt)
        .where(tasks.c.plan_id == item["plan_id"], tasks.c.backlog_id == item["backlog_id"])
        .order_by(tasks.c.created_at.desc())
        .limit(1)
    ).scalar()
    conn.execute(
        insert(tasks).values(
            task_id=task_id,
            plan_id=item["plan_id"],
            backlog_id=item["backlog_id"],
            agent_id=agent_id or item["agent_id"],
            provider=provider or item["provider"],
            model=model or item["model"],
            status="queued",
            reason=reason,
            attempt=(previous or 0) + 1,
            notes=notes,
            created_at=now,
        )
    )
    after_commit(conn, lambda: signals.wake(signals.SCHEDULER_CHANNEL))
    return task_id


def latest_task(conn: Connection, plan_id: str, backlog_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(tasks)
            .where(tasks.c.plan_id == plan_id, tasks.c.backlog_id == backlog_id)
            .order_by(tasks.c.created_at.desc(), tasks.c.task_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None
