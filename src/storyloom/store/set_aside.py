"""Rows a background pass could not process: set aside with their error so the pass goes on with the rest.

A poisoned row (an alert whose stored labels no longer parse, a delivery that makes the dispatcher raise)
would otherwise fail every pass over its batch for good. The pass records it here (one row per pass and
item, the latest error wins; `storyloom_set_aside_rows{pass}` counts them) and skips it from then on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, delete, insert, select

from storyloom.store.tables import set_aside as set_aside_table

log = structlog.get_logger(__name__)

MAX_ERROR = 2000


def set_aside(conn: Connection, pass_name: str, item: str, error: BaseException | str, now: datetime) -> None:
    """Record `item` as set aside by `pass_name` (in the caller's transaction)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_ERROR]
    clear_set_aside(conn, pass_name, [item])
    conn.execute(insert(set_aside_table).values(pass_name=pass_name, item=item, error=text, at=now))
    log.warning(
        "a row was set aside; the pass goes on without it", pass_name=pass_name, item=item, error=text
    )


def clear_set_aside(conn: Connection, pass_name: str, items: Iterable[str]) -> None:
    """Forget `items` (processed cleanly again, for items that are retried every pass)."""
    conn.execute(
        delete(set_aside_table).where(
            set_aside_table.c.pass_name == pass_name, set_aside_table.c.item.in_(list(items))
        )
    )


def set_aside_items(conn: Connection, pass_name: str) -> set[str]:
    return set(
        conn.execute(select(set_aside_table.c.item).where(set_aside_table.c.pass_name == pass_name)).scalars()
    )


def list_set_aside(conn: Connection, pass_name: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Newest first, for the API and the console."""
    query = select(set_aside_table).order_by(set_aside_table.c.at.desc(), set_aside_table.c.id.desc())
    if pass_name:
        query = query.where(set_aside_table.c.pass_name == pass_name)
    return [
        {"pass": r["pass_name"], "item": r["item"], "error": r["error"], "at": r["at"].isoformat()}
        for r in conn.execute(query.limit(limit)).mappings()
    ]
