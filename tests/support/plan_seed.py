"""Seed a plan through the services and put its items and obligations into chosen states directly.

Used by the resume, obligation and authorization tests: no engine runs, the clock is frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from storyloom.backlog.obligations import emit_hook
from storyloom.runtime import Runtime
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan
from storyloom.services.tokens import create_token
from storyloom.store.events import BACKLOG_CONTRACT
from storyloom.store.tables import (
    alerts,
    backlog_items,
    checkpoints,
    leases,
    persona_obligations,
    tasks,
    workflow_events,
)

PROBLEM = "application/problem+json"


@dataclass
class World:
    plan_id: str
    author_persona: str
    author_agent: str
    character_persona: str
    character_agent: str
    other_persona: str
    other_agent: str
    obligations: list[str] = field(default_factory=list)


def token(
    rt: Runtime, role: str, agent_ids: list[str] | None = None, name: str | None = None
) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(
            conn, name=name or f"{role}-user", role=role, agent_ids=agent_ids or [], now=rt.clock.now()
        )
    return {"Authorization": f"Bearer {plain}"}


def seed_world(rt: Runtime, *, obligations: int = 2) -> World:
    """An author persona + agent with a plan, a character persona + agent with open obligations on the plan,
    and another author persona + agent that owns nothing of it."""
    now = rt.clock.now()
    with rt.db.begin() as conn:
        author = create_persona(conn, name="June Arden", kind="author", summary=None, now=now)
        author_agent = create_agent(
            conn, name="June agent", persona_id=author["id"], provider="offline", model="m1", now=now
        )
        other = create_persona(conn, name="Otto Quill", kind="author", summary=None, now=now)
        other_agent = create_agent(
            conn, name="Otto agent", persona_id=other["id"], provider="offline", model="m2", now=now
        )
        plan = create_plan(
            conn,
            PlanRequest(
                name="Ash Lantern",
                premise="Lamplighters keep the dark at bay.",
                persona_id=author["id"],
                agent_id=author_agent["id"],
            ),
            default_provider="offline",
            default_model="m1",
            max_premise_chars=20_000,
            now=now,
        )
        character = create_persona(
            conn, name="Mara", kind="character", summary=None, now=now, plan_id=plan["id"]
        )
        character_agent = create_agent(
            conn, name="Mara agent", persona_id=character["id"], provider="offline", model="m1", now=now
        )
        world = World(
            plan["id"],
            author["id"],
            author_agent["id"],
            character["id"],
            character_agent["id"],
            other["id"],
            other_agent["id"],
        )
        for n in range(obligations):
            world.obligations.append(
                emit_hook(
                    conn,
                    plan_id=plan["id"],
                    persona_id=character["id"],
                    character_id=None,
                    slug=f"hook-{n}",
                    title=f"Hook {n}",
                    description="Mara owes the guild a lantern.",
                    source_phase="vision",
                    source_backlog_id="vision-plan",
                    branch_slug="main",
                    now=now,
                )
            )
    return world


def set_item(
    rt: Runtime,
    plan_id: str,
    backlog_id: str,
    status: str,
    *,
    worker_id: str | None = None,
    task_status: str | None = None,
    checkpoint: str | None = None,
    **values: Any,
) -> str | None:
    """Put an item into `status`; with `task_status` give it a task in that status (returns its id)."""
    now = rt.clock.now()
    task_id = None
    with rt.db.begin() as conn:
        item = (
            conn.execute(
                select(backlog_items).where(
                    backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == backlog_id
                )
            )
            .mappings()
            .one()
        )
        if task_status:
            task_id = f"task_{backlog_id}_{task_status}"
            conn.execute(
                insert(tasks).values(
                    task_id=task_id,
                    plan_id=plan_id,
                    backlog_id=backlog_id,
                    agent_id=item["agent_id"],
                    provider=item["provider"],
                    model=item["model"],
                    status=task_status,
                    reason="schedule",
                    attempt=1,
                    worker_id=worker_id,
                    created_at=now,
                )
            )
        conn.execute(
            update(backlog_items)
            .where(backlog_items.c.id == item["id"])
            .values(status=status, worker_id=worker_id, task_id=task_id, updated_at=now, **values)
        )
        if checkpoint:
            conn.execute(
                insert(checkpoints).values(
                    plan_id=plan_id,
                    phase_key=f"{item['phase']}|main",
                    phase=item["phase"],
                    status=checkpoint,
                    locked_by_agent=item["agent_id"],
                    task_id=task_id,
                    last_step="failed",
                    created_at=now,
                    updated_at=now,
                )
            )
    return task_id


def heartbeat(rt: Runtime, worker_id: str, *, ttl: timedelta) -> None:
    with rt.db.begin() as conn:
        conn.execute(
            insert(leases).values(
                name=f"worker:{worker_id}", holder=worker_id, expires_at=rt.clock.now() + ttl
            )
        )


def events_of(conn: Connection, kind: str) -> list[dict[str, Any]]:
    """The payloads of the audit events of `kind`, oldest first."""
    return [
        dict(p)
        for p in conn.execute(
            select(workflow_events.c.payload)
            .where(workflow_events.c.kind == kind)
            .order_by(workflow_events.c.id)
        ).scalars()
    ]


def contract_events(conn: Connection) -> list[dict[str, Any]]:
    return events_of(conn, BACKLOG_CONTRACT)


def firing(conn: Connection, alert_id: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            select(alerts).where(alerts.c.alert_id == alert_id, alerts.c.status == "firing")
        ).mappings()
    ]


def snapshot(conn: Connection) -> dict[str, Any]:
    """Everything a rejected request must leave alone (contract events and alerts aside)."""

    def rows(table: Any, order: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(select(table).order_by(order)).mappings()]

    return {
        "backlog": rows(backlog_items, backlog_items.c.id),
        "tasks": rows(tasks, tasks.c.task_id),
        "checkpoints": rows(checkpoints, checkpoints.c.id),
        "obligations": rows(persona_obligations, persona_obligations.c.obligation_id),
        "events": conn.execute(
            select(func.count())
            .select_from(workflow_events)
            .where(workflow_events.c.kind != BACKLOG_CONTRACT, workflow_events.c.kind != "alert.state")
        ).scalar(),
    }


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
