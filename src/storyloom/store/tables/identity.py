"""Identity and access: personas, agents, API tokens (hashes only) and console sessions."""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKey, String, Table, Text

from storyloom.store.tables.base import _id, _ts, metadata

# --- identity and access ---------------------------------------------------------------------------

personas = Table(
    "personas",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("summary", Text, nullable=True),
    Column("plan_id", String(64), nullable=True, index=True),
    _ts("created_at", False),
)

agents = Table(
    "agents",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("persona_id", String(64), ForeignKey("personas.id"), nullable=False, index=True),
    Column("provider", String(40), nullable=True),
    Column("model", String(200), nullable=True),
    _ts("created_at", False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("agent_ids", JSON, nullable=False, default=list),
    _ts("created_at", False),
    _ts("last_used_at"),
    _ts("revoked_at"),
)

# A console sign-in: the cookie holds a random id, stored here only as its SHA-256, bound to the hash of the
# token that signed in (so revoking or rotating that token ends the session too).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("actor_id", String(64), nullable=False, index=True),
    Column("role", String(20), nullable=False),
    _ts("created_at", False),
    _ts("expires_at", False, index=True),
    _ts("revoked_at"),
)
