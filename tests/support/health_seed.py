"""Seed what the health rules look at (plans, items, tasks, executions, world bible, templates) directly,
with the frozen clock: no engine runs. Used by the health evaluation, report and metrics tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from storyloom.alerting.publish import AlertSignal, fire
from storyloom.domain.alerts import FIRING
from storyloom.pipeline.templates_store import seed_templates
from storyloom.runtime import Runtime
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan
from storyloom.store.tables import (
    alert_changes,
    alert_history,
    alerts,
    backlog_items,
    planner_executions,
    tasks,
    transcripts,
    world_bible_entries,
)

_ids = itertools.count(1)


def seed_templates_now(rt: Runtime) -> None:
    with rt.db.begin() as conn:
        seed_templates(conn, rt.clock.now())


def new_plan(
    rt: Runtime, name: str = "Ash Lantern", premise: str = "Lamplighters keep the dark at bay."
) -> dict[str, Any]:
    """An author persona + agent and a running plan with its three seeded items (all pending)."""
    now = rt.clock.now()
    n = next(_ids)
    with rt.db.begin() as conn:
        persona = create_persona(conn, name=f"Author {n}", kind="author", summary=None, now=now)
        agent = create_agent(
            conn, name=f"Agent {n}", persona_id=persona["id"], provider="offline", model="m1", now=now
        )
        return create_plan(
            conn,
            PlanRequest(
                name=name,
                premise=premise,
                persona_id=persona["id"],
                agent_id=agent["id"],
            ),
            default_provider="offline",
            default_model="m1",
            max_premise_chars=20_000,
            now=now,
        )


def item(rt: Runtime, plan_id: str, backlog_id: str) -> dict[str, Any]:
    with rt.db.read() as conn:
        return dict(
            conn.execute(
                select(backlog_items).where(
                    backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == backlog_id
                )
            )
            .mappings()
            .one()
        )


def set_item(rt: Runtime, plan_id: str, backlog_id: str, **values: Any) -> None:
    values.setdefault("updated_at", rt.clock.now())
    with rt.db.begin() as conn:
        conn.execute(
            update(backlog_items)
            .where(backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == backlog_id)
            .values(**values)
        )


def give_task(rt: Runtime, plan_id: str, backlog_id: str, status: str = "running") -> str:
    """Create a task row for the item and point the item at it; returns the task id."""
    task_id = f"task-{next(_ids)}"
    current = item(rt, plan_id, backlog_id)
    with rt.db.begin() as conn:
        conn.execute(
            insert(tasks).values(
                task_id=task_id,
                plan_id=plan_id,
                backlog_id=backlog_id,
                agent_id=current["agent_id"],
                provider=current["provider"],
                model=current["model"],
                status=status,
                reason="schedule",
                attempt=1,
                created_at=rt.clock.now(),
            )
        )
        conn.execute(update(backlog_items).where(backlog_items.c.id == current["id"]).values(task_id=task_id))
    return task_id


def set_task(rt: Runtime, task_id: str, status: str) -> None:
    with rt.db.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(status=status))


def add_execution(
    rt: Runtime,
    plan_id: str,
    *,
    backlog_id: str = "vision-plan",
    outcome: str = "success",
    latency_ms: float = 1000.0,
    finished_at: datetime | None = None,
    phase: str = "vision",
    critique_status: str = "idle",
    tokens: tuple[int, int, int] = (100, 50, 0),
    error: str | None = None,
    transcript: list[tuple[str, str]] | None = None,
) -> str:
    finished = finished_at or rt.clock.now()
    task_id = f"exec-{next(_ids)}"
    with rt.db.begin() as conn:
        conn.execute(
            insert(planner_executions).values(
                plan_id=plan_id,
                backlog_id=backlog_id,
                task_id=task_id,
                attempt=1,
                planner_name="Vision Planner",
                phase=phase,
                outcome=outcome,
                latency_ms=latency_ms,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                critique_status=critique_status,
                critique_count=0,
                critique_tokens=tokens[2],
                provider="offline",
                model="m1",
                agent_id="agent",
                persona_id="persona",
                error=error,
                diagnostics={},
                started_at=finished - timedelta(milliseconds=latency_ms),
                finished_at=finished,
            )
        )
        for role, content in transcript or []:
            conn.execute(
                insert(transcripts).values(
                    task_id=task_id, attempt=1, role=role, content=content, created_at=finished
                )
            )
    return task_id


def add_executions(rt: Runtime, plan_id: str, count: int, **kwargs: Any) -> None:
    for _ in range(count):
        add_execution(rt, plan_id, **kwargs)


def add_world_bible_entry(rt: Runtime, plan_id: str, name: str = "Ada", *, active: bool = True) -> None:
    with rt.db.begin() as conn:
        version = conn.execute(
            select(func.count()).where(
                world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.name == name
            )
        ).scalar_one()
        conn.execute(
            insert(world_bible_entries).values(
                plan_id=plan_id,
                slug=f"characters:{name}",
                category="characters",
                name=name,
                version=version + 1,
                active=active,
                content={"summary": "a lamplighter"},
                created_at=rt.clock.now(),
            )
        )


def firing(rt: Runtime, alert_id: str | None = None) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        query = select(alerts).where(alerts.c.status == FIRING)
        if alert_id:
            query = query.where(alerts.c.alert_id == alert_id)
        return [dict(r) for r in conn.execute(query.order_by(alerts.c.alert_id)).mappings()]


def firing_ids(rt: Runtime) -> set[str]:
    return {a["alert_id"] for a in firing(rt)}


def alert_tables(rt: Runtime) -> tuple[Any, ...]:
    """A snapshot of everything alert state lives in, to prove a read changed nothing."""
    with rt.db.read() as conn:
        return (
            sorted(
                tuple(sorted((k, str(v)) for k, v in r.items()))
                for r in conn.execute(select(alerts)).mappings()
            ),
            conn.execute(select(func.count()).select_from(alert_history)).scalar_one(),
            conn.execute(select(func.count()).select_from(alert_changes)).scalar_one(),
        )


def raise_alert(rt: Runtime, alert_id: str, labels: dict[str, Any] | None = None, **kwargs: Any) -> str:
    with rt.db.begin() as conn:
        return fire(conn, AlertSignal(alert_id, labels or {}, f"test {alert_id}", **kwargs), rt.clock.now())
