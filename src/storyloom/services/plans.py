"""Plans: create (seeding the backlog) and read (detail, backlog, actions, roster)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from storyloom import signals
from storyloom.domain import backlog as bl
from storyloom.ids import new_id
from storyloom.services.actors import SYSTEM, Actor
from storyloom.services.catalog import PROVIDERS, get_agent, get_persona
from storyloom.services.errors import Forbidden, Invalid, NotFound
from storyloom.store.db import after_commit
from storyloom.store.events import BACKLOG_ACTION, BACKLOG_TELEMETRY, record_event
from storyloom.store.tables import (
    agents,
    backlog_items,
    characters,
    checkpoints,
    lore_requirements,
    plans,
    projects,
    workflow_events,
    world_bible_entries,
)

BACKLOG_FIELDS = (
    "backlog_id",
    "plan_id",
    "description",
    "phase",
    "status",
    "inputs",
    "outputs",
    "agent_id",
    "persona_id",
    "provider",
    "model",
    "task_id",
    "attempts",
    "last_error",
    "branch_slug",
    "created_at",
    "updated_at",
    "in_progress_at",
    "completed_at",
)


@dataclass(frozen=True)
class PlanRequest:
    name: str
    premise: str
    persona_id: str
    project_title: str | None = None
    agent_id: str | None = None
    branch_slug: str | None = None
    provider: str | None = None
    model: str | None = None


def create_plan(
    conn: Connection,
    req: PlanRequest,
    *,
    default_provider: str,
    default_model: str,
    max_premise_chars: int,
    now: datetime,
    actor: Actor = SYSTEM,
) -> dict[str, Any]:
    """Validate ownership and inputs, then create the plan with its three seeded backlog items."""
    if len(req.premise) > max_premise_chars:
        raise Invalid.field(
            ["body", "premise"], f"is {len(req.premise)} characters; the limit is {max_premise_chars}"
        )
    persona = get_persona(conn, req.persona_id, loc=["body", "persona_id"])
    if persona["kind"] != "author":
        raise Invalid.field(
            ["body", "persona_id"], "must be an author persona (a plan is written by its author)"
        )
    agent = _plan_agent(conn, req, persona)
    provider = req.provider or agent["provider"] or default_provider
    if provider not in PROVIDERS:
        raise Invalid.field(
            ["body", "provider"], f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}"
        )
    model = req.model or agent["model"] or default_model
    project_id = new_id("project")
    conn.execute(insert(projects).values(id=project_id, title=req.project_title or req.name, created_at=now))
    plan = {
        "id": new_id("plan"),
        "project_id": project_id,
        "name": req.name,
        "premise": req.premise,
        "persona_id": persona["id"],
        "agent_id": agent["id"],
        "branch_slug": req.branch_slug or "main",
        "provider": provider,
        "model": model,
        "status": "in_progress",
        "settings": {},
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
    }
    conn.execute(insert(plans).values(**plan))
    add_items(conn, plan, bl.seeded_items(), now, reason="plan-created")
    record_event(
        conn,
        BACKLOG_ACTION,
        {
            "action": "plan-create",
            "plan_id": plan["id"],
            "description": f"plan {req.name!r} created",
            "branch": plan["branch_slug"],
            **actor.audit_fields(),
            "agent_id": agent["id"],
            "persona_id": persona["id"],
            "provider": provider,
            "model": model,
            "status": "in_progress",
        },
        now,
    )
    return plan


def author_persona_mismatch(
    agent: dict[str, Any], plan: dict[str, Any], actor: Actor, action: str, code: str | None = None
) -> Forbidden | None:
    """The 403 for acting on a plan as an agent of another persona than its author's (admins may)."""
    if agent["persona_id"] == plan["persona_id"] or actor.is_admin:
        return None
    return Forbidden(
        f"agent {agent['id']} acts for persona {agent['persona_id']}, but plan {plan['id']} belongs to "
        f"persona {plan['persona_id']}; {action} as one of its agents (or as admin)",
        code=code,
    )


def require_agent_binding(actor: Actor, agent_id: str) -> None:
    """A token bound to agents may only act as them (raises inside the transaction, so nothing is kept)."""
    if not actor.may_act_as(agent_id):
        raise Forbidden(
            f"token {actor.name!r} may act only as {', '.join(actor.agent_ids)}, not as agent {agent_id}"
        )


def _plan_agent(conn: Connection, req: PlanRequest, persona: dict[str, Any]) -> dict[str, Any]:
    if req.agent_id:
        agent = get_agent(conn, req.agent_id, loc=["body", "agent_id"])
        if agent["persona_id"] != persona["id"]:
            raise Invalid.field(
                ["body", "agent_id"], f"agent {agent['id']} acts for another persona, not {persona['id']}"
            )
        return agent
    row = conn.execute(
        select(agents).where(agents.c.persona_id == persona["id"]).order_by(agents.c.created_at)
    ).first()
    if row is None:
        raise Invalid.field(
            ["body", "agent_id"], f"persona {persona['id']} has no agent; create one or pass agent_id"
        )
    return dict(row._mapping)


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


def get_plan(conn: Connection, plan_id: str) -> dict[str, Any]:
    row = conn.execute(select(plans).where(plans.c.id == plan_id)).mappings().first()
    if row is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return dict(row)


def plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in plan.items() if k not in ("settings", "id")}
    return {"plan_id": plan["id"], **out}


def list_plans(conn: Connection, *, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(plans).order_by(plans.c.created_at.desc()).limit(limit)).mappings()
    plan_list = [plan_view(dict(r)) for r in rows]
    counts = _status_counts(conn, [p["plan_id"] for p in plan_list])
    for p in plan_list:
        p["counts"] = counts.get(p["plan_id"], {})
    return plan_list


def _status_counts(conn: Connection, plan_ids: list[str]) -> dict[str, dict[str, int]]:
    if not plan_ids:
        return {}
    out: dict[str, dict[str, int]] = {}
    query = (
        select(backlog_items.c.plan_id, backlog_items.c.status, func.count())
        .where(backlog_items.c.plan_id.in_(plan_ids))
        .group_by(backlog_items.c.plan_id, backlog_items.c.status)
    )
    for plan_id, status, count in conn.execute(query):
        out.setdefault(plan_id, {})[status] = count
    return out


def plan_detail(conn: Connection, plan_id: str) -> dict[str, Any]:
    plan = plan_view(get_plan(conn, plan_id))
    plan["counts"] = _status_counts(conn, [plan_id]).get(plan_id, {})
    plan["checkpoints"] = [
        dict(r)
        for r in conn.execute(
            select(
                checkpoints.c.phase_key,
                checkpoints.c.phase,
                checkpoints.c.status,
                checkpoints.c.locked_by_agent,
                checkpoints.c.task_id,
                checkpoints.c.last_step,
                checkpoints.c.updated_at,
            )
            .where(checkpoints.c.plan_id == plan_id)
            .order_by(checkpoints.c.id)
        ).mappings()
    ]
    return plan


def backlog_view(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in BACKLOG_FIELDS}


def list_backlog(conn: Connection, plan_id: str) -> list[dict[str, Any]]:
    get_plan(conn, plan_id)
    rows = conn.execute(
        select(backlog_items).where(backlog_items.c.plan_id == plan_id).order_by(backlog_items.c.id)
    ).mappings()
    return [backlog_view(r) for r in rows]


def get_item(conn: Connection, plan_id: str, backlog_id: str) -> dict[str, Any]:
    row = (
        conn.execute(
            select(backlog_items).where(
                backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == backlog_id
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"backlog item {backlog_id} does not exist in plan {plan_id}")
    return dict(row)


def list_actions(conn: Connection, plan_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
    get_plan(conn, plan_id)
    rows = conn.execute(
        select(workflow_events.c.payload, workflow_events.c.created_at)
        .where(workflow_events.c.plan_id == plan_id, workflow_events.c.kind == BACKLOG_ACTION)
        .order_by(workflow_events.c.id.desc())
        .limit(limit)
    )
    return [{**r.payload, "time": r.created_at} for r in rows]


def roster(conn: Connection, plan_id: str) -> dict[str, Any]:
    get_plan(conn, plan_id)
    chars = conn.execute(
        select(characters).where(characters.c.plan_id == plan_id).order_by(characters.c.name)
    )
    lore = conn.execute(
        select(lore_requirements)
        .where(lore_requirements.c.plan_id == plan_id)
        .order_by(lore_requirements.c.slug)
    )
    bible = conn.execute(
        select(world_bible_entries)
        .where(world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.active.is_(True))
        .order_by(world_bible_entries.c.slug)
    )
    return {
        "characters": [dict(r._mapping) for r in chars],
        "lore_requirements": [{k: v for k, v in r._mapping.items() if k != "id"} for r in lore],
        "world_bible": [{k: v for k, v in r._mapping.items() if k != "id"} for r in bible],
    }
