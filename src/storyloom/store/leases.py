"""Named leases: one process at a time runs a singleton loop (notifier, health evaluation)."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from storyloom.store.db import Database
from storyloom.store.tables import leases

log = structlog.get_logger(__name__)

WORKER_LEASE_PREFIX = "worker:"
"""Each worker's heartbeat is the lease `worker:<id>`."""


def hold_lease(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew lease `name` inside `conn`'s transaction; False while another holder's is unexpired."""
    renewed = conn.execute(
        update(leases)
        .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at <= now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if renewed.rowcount:
        return True
    if conn.execute(select(leases.c.name).where(leases.c.name == name)).first() is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(insert(leases).values(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False  # another process took it first
    return True


def release_lease(db: Database, name: str, holder: str) -> None:
    """Give lease `name` back if `holder` has it; on failure it simply expires."""
    try:
        with db.begin() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))
    except Exception:
        log.warning("could not release a lease; it will expire", lease=name, holder=holder, exc_info=True)
