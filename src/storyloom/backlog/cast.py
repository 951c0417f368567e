"""Personas and agents as rows: created by the catalog use cases and, for a plan's tracked characters, by
the vision phase's effects; each creation is logged as a `persona-create` / `agent-create` action."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from storyloom.ids import new_id
from storyloom.store.events import BACKLOG_ACTION, record_event
from storyloom.store.tables import agents, personas

SYSTEM_AUDIT = {"actor": "storyloom", "actor_id": "system", "source": "system"}
"""Who did it, for what Storyloom does by itself (`services.actors.SYSTEM`), as the action log records it."""


def insert_persona(
    conn: Connection,
    *,
    name: str,
    kind: str,
    summary: str | None,
    plan_id: str | None,
    now: datetime,
    audit: Mapping[str, str],
) -> dict[str, Any]:
    """Insert a persona and log its `persona-create` action with `audit` (who did it)."""
    row = {
        "id": new_id("persona"),
        "name": name,
        "kind": kind,
        "summary": summary,
        "plan_id": plan_id,
        "created_at": now,
    }
    conn.execute(insert(personas).values(**row))
    _log_action(
        conn,
        "persona-create",
        f"{kind} persona {name!r} created",
        audit,
        now,
        persona_id=row["id"],
        plan_id=plan_id,
        agent_id=None,
    )
    return row


def insert_agent(
    conn: Connection,
    *,
    name: str,
    persona: Mapping[str, Any],
    provider: str | None,
    model: str | None,
    now: datetime,
    audit: Mapping[str, str],
) -> dict[str, Any]:
    """Insert an agent acting for `persona` and log its `agent-create` action with `audit`."""
    row = {
        "id": new_id("agent"),
        "name": name,
        "persona_id": persona["id"],
        "provider": provider,
        "model": model,
        "created_at": now,
    }
    conn.execute(insert(agents).values(**row))
    _log_action(
        conn,
        "agent-create",
        f"agent {name!r} created for persona {persona['name']!r}",
        audit,
        now,
        agent_id=row["id"],
        persona_id=persona["id"],
        plan_id=persona["plan_id"],
        provider=provider,
        model=model,
    )
    return row


def _log_action(
    conn: Connection, action: str, description: str, audit: Mapping[str, str], now: datetime, **fields: Any
) -> None:
    record_event(conn, BACKLOG_ACTION, {"action": action, "description": description, **audit, **fields}, now)
