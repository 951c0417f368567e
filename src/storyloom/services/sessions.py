"""Console sessions: the cookie holds a random id; the store keeps its SHA-256, never the API token.

A session is bound to the SHA-256 of the token that opened it, so it ends when it expires, when it is
signed out, or when that token is revoked (or, for the env admin token, changed).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from storyloom.services.actors import Actor
from storyloom.services.tokens import actor_for_token_hash, token_hash
from storyloom.store.db import Database
from storyloom.store.tables import console_sessions


def open_session(db: Database, token: str, actor: Actor, *, ttl: timedelta, now: datetime) -> str:
    """A new session for an authenticated `token`; returns its id (for the cookie only, never stored)."""
    with db.begin() as conn:
        conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
        session_id = secrets.token_urlsafe(32)
        conn.execute(
            insert(console_sessions).values(
                id_hash=token_hash(session_id),
                token_hash=token_hash(token),
                actor_id=actor.actor_id,
                role=actor.role,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        return session_id


def actor_for_session(db: Database, session_id: str, *, source: str, now: datetime) -> Actor | None:
    """The actor of a live session, or None when it is unknown, expired, signed out or its token is gone."""
    with db.begin() as conn:
        digest = conn.execute(
            select(console_sessions.c.token_hash).where(
                console_sessions.c.id_hash == token_hash(session_id),
                console_sessions.c.revoked_at.is_(None),
                console_sessions.c.expires_at > now,
            )
        ).scalar_one_or_none()
        if digest is None:
            return None
        return actor_for_token_hash(conn, digest, source=source, now=now)


def revoke_session(db: Database, session_id: str, *, now: datetime) -> bool:
    """Sign a session out for good; False when there was no live session with that id."""
    with db.begin() as conn:
        result = conn.execute(
            update(console_sessions)
            .where(
                console_sessions.c.id_hash == token_hash(session_id), console_sessions.c.revoked_at.is_(None)
            )
            .values(revoked_at=now)
        )
        return result.rowcount > 0
