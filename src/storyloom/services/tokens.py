"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom.ids import new_id
from storyloom.services.actors import ROLES, Actor
from storyloom.services.catalog import get_agent
from storyloom.services.errors import Invalid
from storyloom.store.db import Database
from storyloom.store.tables import api_tokens

ADMIN_TOKEN_ENV = "STORYLOOM_ADMIN_TOKEN"
MIN_ADMIN_TOKEN_CHARS = 24


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def admin_token_problem(env: Mapping[str, str]) -> str | None:
    """Why the process must not start with this `STORYLOOM_ADMIN_TOKEN`, or None when it is unset or long enough."""
    admin = env.get(ADMIN_TOKEN_ENV, "")
    if not admin or len(admin) >= MIN_ADMIN_TOKEN_CHARS:
        return None
    return (
        f"{ADMIN_TOKEN_ENV} is {len(admin)} characters; it must be at least {MIN_ADMIN_TOKEN_CHARS}. "
        f"Make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
        f"or unset it and use `storyloom token create --role admin --name you`"
    )


def _admin_token() -> str | None:
    """The env admin token, when it is long enough to be honoured (the server refuses to start otherwise)."""
    admin = os.environ.get(ADMIN_TOKEN_ENV, "")
    return admin if len(admin) >= MIN_ADMIN_TOKEN_CHARS else None


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
        "token_hash": token_hash(token),
        "agent_ids": agent_ids,
        "created_at": now,
    }
    conn.execute(insert(api_tokens).values(**row))
    return token, row


def issue_token(db: Database, *, name: str, role: str, agent_ids: list[str], now: datetime) -> str:
    """`create_token` in a transaction of its own (`storyloom token create`); returns the plaintext once."""
    with db.begin() as conn:
        return create_token(conn, name=name, role=role, agent_ids=agent_ids, now=now)[0]


def authenticate(db: Database, token: str, *, source: str, now: datetime | None = None) -> Actor | None:
    """The actor a bearer token stands for, or None for an unknown or revoked token."""
    with db.begin() as conn:
        return actor_for_token_hash(conn, token_hash(token), source=source, now=now)


def actor_for_token_hash(
    conn: Connection, digest: str, *, source: str, now: datetime | None = None
) -> Actor | None:
    """The actor behind a token's SHA-256 (a console session keeps only that), or None if it is gone."""
    admin = _admin_token()
    if admin and hmac.compare_digest(token_hash(admin), digest):
        return Actor(name="admin-env", actor_id="admin-env", role="admin", source=source)
    row = (
        conn.execute(
            select(api_tokens).where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))
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
