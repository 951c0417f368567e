"""The built-in demo receiver's inbox: what it got, kept bounded, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from storyloom.store.db import Database
from storyloom.store.tables import demo_inbox

KEEP = 1000  # inbox rows kept; older ones are pruned


def keep(db: Database, row: dict[str, Any]) -> None:
    """Store one received webhook and prune all but the newest `KEEP`."""
    with db.begin() as conn:
        new_id = conn.execute(insert(demo_inbox).values(**row)).inserted_primary_key
        if new_id and new_id[0] and int(new_id[0]) > KEEP:
            conn.execute(delete(demo_inbox).where(demo_inbox.c.id <= int(new_id[0]) - KEEP))


def latest(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` entries as stored (the caller renders the timestamp)."""
    rows = conn.execute(select(demo_inbox).order_by(demo_inbox.c.id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]
