"""Personas and agents: who writes, and who acts for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storyloom.backlog.cast import insert_agent, insert_persona
from storyloom.pipeline.providers import PROVIDER_NAMES
from storyloom.services.actors import SYSTEM, Actor
from storyloom.services.errors import Invalid, NotFound
from storyloom.store.db import Database
from storyloom.store.tables import agents, personas

PROVIDERS = PROVIDER_NAMES


def create_persona(
    conn: Connection,
    *,
    name: str,
    kind: str,
    summary: str | None,
    now: datetime,
    plan_id: str | None = None,
    actor: Actor = SYSTEM,
) -> dict[str, Any]:
    """Create a persona and log a `persona-create` action (a plan's tracked characters are the system's)."""
    return insert_persona(
        conn, name=name, kind=kind, summary=summary, plan_id=plan_id, now=now, audit=actor.audit_fields()
    )


def add_persona(
    db: Database, *, name: str, kind: str, summary: str | None, now: datetime, actor: Actor
) -> dict[str, Any]:
    """`create_persona` in a transaction of its own (the API's create; seeds compose the conn-level one)."""
    with db.begin() as conn:
        return create_persona(conn, name=name, kind=kind, summary=summary, now=now, actor=actor)


def create_agent(
    conn: Connection,
    *,
    name: str,
    persona_id: str,
    provider: str | None,
    model: str | None,
    now: datetime,
    actor: Actor = SYSTEM,
) -> dict[str, Any]:
    """Create an agent acting for `persona_id` and log an `agent-create` action."""
    persona = get_persona(conn, persona_id, loc=["body", "persona_id"])
    if provider is not None and provider not in PROVIDERS:
        raise Invalid.field(
            ["body", "provider"], f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}"
        )
    return insert_agent(
        conn, name=name, persona=persona, provider=provider, model=model, now=now, audit=actor.audit_fields()
    )


def add_agent(
    db: Database,
    *,
    name: str,
    persona_id: str,
    provider: str | None,
    model: str | None,
    now: datetime,
    actor: Actor,
) -> dict[str, Any]:
    """`create_agent` in a transaction of its own (the API's create)."""
    with db.begin() as conn:
        return create_agent(
            conn, name=name, persona_id=persona_id, provider=provider, model=model, now=now, actor=actor
        )


def get_persona(conn: Connection, persona_id: str, *, loc: list[str | int] | None = None) -> dict[str, Any]:
    row = conn.execute(select(personas).where(personas.c.id == persona_id)).mappings().first()
    if row is None:
        if loc:
            raise Invalid.field(loc, f"unknown persona {persona_id!r}")
        raise NotFound(f"persona {persona_id} does not exist")
    return dict(row)


def get_agent(
    conn: Connection, agent_id: str, *, loc: list[str | int] | None = None, code: str | None = None
) -> dict[str, Any]:
    row = conn.execute(select(agents).where(agents.c.id == agent_id)).mappings().first()
    if row is None:
        if loc:
            raise Invalid.field(loc, f"unknown agent {agent_id!r}", code=code)
        raise NotFound(f"agent {agent_id} does not exist")
    return dict(row)


def list_personas(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(personas).order_by(personas.c.created_at)).mappings()]


def list_agents(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(agents).order_by(agents.c.created_at)).mappings()]
