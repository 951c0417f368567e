"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom.ids import new_id
from storyloom.services.actors import ROLES, Actor
from storyloom.services.catalog import get_agent
from storyloom.services.errors import Invalid
from storyloom.store.tables import api_tokens

ADMIN_TOKEN_ENV = "STORYLOOM_ADMIN_TOKEN"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    conn: Connection, *, name: str, role: str, agent_ids: list[str], now: datetime
) -> tuple[str, dict[str, Any]]:
    """Returns (plaintext token, row); the plaintext is never stored."""
    if role not in ROLES:
        raise Invalid.field(["role"], f"unknown role {role!r}; use viewer, operator or admin")
    if not name.strip():
        raise Invalid.field(["name"], "must not be blank")
    for i, agent_id in enumerate(agent_ids):
        get_agent(conn, agent_id, loc=["agent", i])
    token = "sl_" + secrets.token_urlsafe(32)
    row = {
        "id": new_id("tok"),
        "name": name,
        "role": role,
        "token_hash": _hash(token),
        "agent_ids": agent_ids,
        "created_at": now,
    }
    conn.execute(insert(api_tokens).values(**row))
    return token, row


def authenticate(conn: Connection, token: str, *, source: str, now: datetime | None = None) -> Actor | None:
    """The actor a bearer token stands for, or None for an unknown or revoked token."""
    admin = os.environ.get(ADMIN_TOKEN_ENV)
    if admin and hmac.compare_digest(admin.encode(), token.encode()):
        return Actor(name="admin-env", actor_id="admin-env", role="admin", source=source)
    row = (
        conn.execute(
            select(api_tokens).where(
                api_tokens.c.token_hash == _hash(token), api_tokens.c.revoked_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    if now is not None and (row["last_used_at"] is None or (now - row["last_used_at"]).total_seconds() > 60):
        conn.execute(update(api_tokens).where(api_tokens.c.id == row["id"]).values(last_used_at=now))
    return Actor(
        name=row["name"],
        actor_id=row["id"],
        role=row["role"],
        source=source,
        agent_ids=tuple(row["agent_ids"] or ()),
    )
