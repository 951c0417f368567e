"""Persona obligations' use cases: listed, resolved or dismissed by an owning agent (docs/reference/http-api.md,
"Obligation resolve"), flagged for voice drift. Hooks open them in `backlog/obligations.py`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from storyloom.alerting.publish import fire, resolve_matching
from storyloom.backlog.obligations import (
    DISMISSED,
    OBLIGATION_ALERTS,
    OPEN,
    RESOLVED,
    STATUSES,
    drift_alert,
    obligation_event,
)
from storyloom.domain.catalog import OBLIGATION_DRIFT
from storyloom.services.action_log import record_action
from storyloom.services.actors import Actor
from storyloom.services.catalog import get_agent
from storyloom.services.errors import Conflict, Forbidden, Invalid, NotFound
from storyloom.services.plans import get_item, get_plan, require_agent_binding
from storyloom.store.db import Database
from storyloom.store.events import PERSONA_OBLIGATION, record_event
from storyloom.store.tables import persona_obligations

MAX_PAGE_SIZE = 200


# --- read, resolve, voice drift (docs/reference/http-api.md, "Obligation resolve") ---------------------

ACTIONS = {"resolve": RESOLVED, "dismiss": DISMISSED}
FIELDS = (
    "obligation_id",
    "plan_id",
    "persona_id",
    "character_id",
    "slug",
    "title",
    "description",
    "status",
    "source_phase",
    "source_backlog_id",
    "branch_slug",
    "voice_drift",
    "resolution_notes",
    "resolved_at",
    "resolved_by",
    "created_at",
    "updated_at",
)


def obligation_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in FIELDS}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def list_obligations(
    conn: Connection, plan_id: str, status: str | None = None, page: int = 1, page_size: int = 50
) -> dict[str, Any]:
    """A plan's obligations, oldest first, one page: `{items, page, page_size, total}`."""
    get_plan(conn, plan_id)
    if status is not None and status not in STATUSES:
        raise Invalid.field(["query", "status"], f"unknown status {status!r}; use {', '.join(STATUSES)}")
    if page < 1:
        raise Invalid.field(["query", "page"], "must be 1 or more")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise Invalid.field(["query", "page_size"], f"must be between 1 and {MAX_PAGE_SIZE}")
    where = [persona_obligations.c.plan_id == plan_id]
    if status is not None:
        where.append(persona_obligations.c.status == status)
    total = conn.execute(select(func.count()).select_from(persona_obligations).where(*where)).scalar() or 0
    rows = conn.execute(
        select(persona_obligations)
        .where(*where)
        .order_by(persona_obligations.c.created_at, persona_obligations.c.obligation_id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).mappings()
    return {
        "items": [obligation_view(dict(r)) for r in rows],
        "page": page,
        "page_size": page_size,
        "total": total,
    }


def get_obligation(conn: Connection, plan_id: str, obligation_id: str) -> dict[str, Any]:
    row = (
        conn.execute(
            select(persona_obligations).where(
                persona_obligations.c.plan_id == plan_id,
                persona_obligations.c.obligation_id == obligation_id,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"obligation {obligation_id} does not exist in plan {plan_id}")
    return dict(row)


def _acting_agent(
    conn: Connection, plan: Mapping[str, Any], row: Mapping[str, Any], agent_id: str | None, actor: Actor
) -> dict[str, Any]:
    """The agent the caller acts as: it must exist, the token may act as it, and it must own the obligation."""
    if not agent_id or not str(agent_id).strip():
        raise Invalid.field(["body", "agent_id"], "is required: every obligation action is done as an agent")
    agent = get_agent(conn, str(agent_id), loc=["body", "agent_id"])
    require_agent_binding(actor, agent["id"])
    owners = {row["persona_id"], plan["persona_id"]}
    if agent["persona_id"] not in owners and not actor.is_admin:
        raise Forbidden(
            f"agent {agent['id']} acts for persona {agent['persona_id']}; obligation {row['obligation_id']} "
            f"belongs to persona {row['persona_id']} of plan {plan['id']} (author {plan['persona_id']}): "
            "act as an agent of one of them (or as admin)"
        )
    return agent


def _log(
    conn: Connection,
    action: str,
    row: dict[str, Any],
    agent: Mapping[str, Any],
    actor: Actor,
    now: datetime,
    *,
    notes: str | None,
    backlog_id: str | None = None,
    task_id: str | None = None,
) -> None:
    """The obligation's own event and the plan's action-log entry."""
    record_event(
        conn,
        PERSONA_OBLIGATION,
        {
            "action": action,
            **obligation_event(row),
            "actor": actor.name,
            "actor_id": actor.actor_id,
            "source": actor.source,
            "agent_id": agent["id"],
            "notes": notes,
        },
        now,
        backlog_id=row["source_backlog_id"],
    )
    record_action(
        conn,
        {
            "action": action,
            "plan_id": row["plan_id"],
            "backlog_id": backlog_id or row["source_backlog_id"],
            "obligation_id": row["obligation_id"],
            "description": f"{row['title']} ({row['slug']})",
            "branch": row["branch_slug"],
            "actor": actor.name,
            "actor_id": actor.actor_id,
            "source": actor.source,
            "agent_id": agent["id"],
            "persona_id": agent["persona_id"],
            "provider": agent.get("provider"),
            "model": agent.get("model"),
            "task_id": task_id,
            "status": row["status"],
            "notes": notes,
        },
        now,
    )


def resolve_obligation(
    db: Database,
    plan_id: str,
    obligation_id: str,
    body: Mapping[str, Any],
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """Resolve or dismiss an obligation (docs/reference/http-api.md, "Obligation resolve"); returns the obligation.

    Order: blank notes → 422; unknown plan or obligation → 404; unknown action → 422; unknown agent → 422;
    token bound to other agents → 403; agent of neither the obligation's persona nor the plan's author
    (and not admin) → 403; unknown `backlog_id` → 422; the current status again → unchanged, no event.
    """
    with db.begin() as conn:
        notes = str(body.get("notes") or "").strip()
        if not notes:
            raise Invalid.field(
                ["body", "notes"], "must not be blank: say what was done about the obligation"
            )
        plan = get_plan(conn, plan_id)
        row = get_obligation(conn, plan_id, obligation_id)
        action = body.get("action")
        if action not in ACTIONS:
            raise Invalid.field(["body", "action"], f"unknown action {action!r}; use resolve or dismiss")
        agent = _acting_agent(conn, plan, row, body.get("agent_id"), actor)
        backlog_id, task_id = body.get("backlog_id"), body.get("task_id")
        if backlog_id:
            try:
                get_item(conn, plan_id, str(backlog_id))
            except NotFound:
                raise Invalid.field(["body", "backlog_id"], f"unknown backlog item {backlog_id!r}") from None
        status = ACTIONS[str(action)]
        if row["status"] == status:
            return obligation_view(row)
        values: dict[str, Any] = {
            "status": status,
            "resolution_notes": [
                *(row["resolution_notes"] or []),
                {"note": notes, "actor": actor.name, "agent_id": agent["id"], "at": _rfc3339(now)},
            ],
            "resolved_at": now,
            "resolved_by": actor.name,
            "updated_at": now,
        }
        if body.get("voice_drift") is not None:
            values["voice_drift"] = bool(body["voice_drift"])
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == obligation_id)
            .values(**values)
        )
        row = {**row, **values}
        _log(conn, str(action), row, agent, actor, now, notes=notes, backlog_id=backlog_id, task_id=task_id)
        for alert_id in OBLIGATION_ALERTS:
            resolve_matching(conn, alert_id, now, f"obligation {status}", obligation_id=obligation_id)
        return obligation_view(row)


def set_voice_drift(
    db: Database,
    plan_id: str,
    obligation_id: str,
    body: Mapping[str, Any],
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """Flag (or unflag) an open obligation for voice drift; `obligation:drift` follows the flag.

    Same ownership as resolve. Only an open obligation can be flagged (409 otherwise); setting the
    current value again changes nothing and writes no event.
    """
    with db.begin() as conn:
        plan = get_plan(conn, plan_id)
        row = get_obligation(conn, plan_id, obligation_id)
        flag = body.get("voice_drift")
        if not isinstance(flag, bool):
            raise Invalid.field(["body", "voice_drift"], "must be true or false")
        agent = _acting_agent(conn, plan, row, body.get("agent_id"), actor)
        if row["status"] != OPEN:
            raise Conflict(
                f"obligation {obligation_id} is {row['status']}; only an open obligation can drift"
            )
        if bool(row["voice_drift"]) == flag:
            return obligation_view(row)
        notes = str(body.get("notes") or "").strip() or None
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == obligation_id)
            .values(voice_drift=flag, updated_at=now)
        )
        row = {**row, "voice_drift": flag, "updated_at": now}
        _log(conn, "voice-drift", row, agent, actor, now, notes=notes)
        if flag:
            fire(conn, drift_alert(row), now)
        else:
            resolve_matching(
                conn, OBLIGATION_DRIFT, now, "voice drift flag cleared", obligation_id=obligation_id
            )
        return obligation_view(row)


# --- evaluated alerts (called by the scheduled health evaluation) ------------------------------------
