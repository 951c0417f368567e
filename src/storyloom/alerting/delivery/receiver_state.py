"""Receiver state (`receiver_states`): consecutive failures, 410 → disabled, and the `delivery:failing` alert.

`delivery:failing` (label `receiver`) fires on a dead delivery, a 410 or `FAILURE_THRESHOLD` consecutive
failed attempts and resolves with the next success, in the transaction that records the attempts. A
disabled receiver's deliveries wait until an operator replays one or a reload changes its URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from storyloom.alerting import publish
from storyloom.alerting.delivery.queue import wake
from storyloom.alerting.setup import AlertingRuntime
from storyloom.store.db import after_commit
from storyloom.store.tables import receiver_states

log = structlog.get_logger(__name__)

FAILING_ALERT = "delivery:failing"
FAILURE_THRESHOLD = 5  # consecutive failed attempts that raise `delivery:failing`


def ensure_receiver_rows(conn: Connection, names: Iterable[str], now: datetime) -> None:
    """Insert missing `receiver_states` rows (race-free on both databases: ON CONFLICT DO NOTHING)."""
    rows = [
        {"receiver": n, "consecutive_failures": 0, "updated_at": now, "disabled_at": None}
        for n in sorted(set(names))
    ]
    if not rows:
        return
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(receiver_states).on_conflict_do_nothing(index_elements=["receiver"])
    else:
        stmt = sqlite_dialect.insert(receiver_states).on_conflict_do_nothing(index_elements=["receiver"])
    conn.execute(stmt, rows)


def receiver_disabled(conn: Connection, name: str) -> tuple[datetime, str | None] | None:
    """(disabled_at, reason) when the receiver is disabled, else None."""
    row = conn.execute(
        select(receiver_states.c.disabled_at, receiver_states.c.disabled_reason).where(
            receiver_states.c.receiver == name, receiver_states.c.disabled_at.is_not(None)
        )
    ).first()
    return (row.disabled_at, row.disabled_reason) if row is not None else None


def enable_receivers(conn: Connection, names: Iterable[str], now: datetime) -> list[str]:
    """Clear `disabled_at` (and the failure count) of these receivers; returns the ones that were disabled."""
    wanted = sorted(set(names))
    if not wanted:
        return []
    was = [
        r.receiver
        for r in conn.execute(
            select(receiver_states.c.receiver).where(
                receiver_states.c.receiver.in_(wanted), receiver_states.c.disabled_at.is_not(None)
            )
        )
    ]
    if was:
        conn.execute(
            update(receiver_states)
            .where(receiver_states.c.receiver.in_(was))
            .values(disabled_at=None, disabled_reason=None, consecutive_failures=0, updated_at=now)
        )
        after_commit(conn, wake)
    return was


def reenable_on_reload(
    conn: Connection, old: AlertingRuntime, new: AlertingRuntime, now: datetime
) -> list[str]:
    """A reload that changes a receiver's URL re-enables it (the old address said 410 Gone, not the new)."""
    changed = [
        name
        for name, spec in new.receivers.items()
        if name in old.receivers and old.receivers[name].url != spec.url
    ]
    return enable_receivers(conn, changed, now)


@dataclass
class ReceiverTally:
    """What one recorded batch of attempts says about one receiver."""

    outcomes: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    disabled: str | None = None
    last_error: str | None = None


def update_receivers(conn: Connection, tallies: Mapping[str, ReceiverTally], now: datetime) -> None:
    """Consecutive failures, 410 → disabled, and the `delivery:failing` alert, per receiver."""
    if not tallies:
        return
    names = sorted(tallies)
    ensure_receiver_rows(conn, names, now)
    query = select(receiver_states.c.receiver, receiver_states.c.consecutive_failures).where(
        receiver_states.c.receiver.in_(names)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = {r.receiver: r.consecutive_failures or 0 for r in conn.execute(query)}
    for name in names:
        tally = tallies[name]
        count = current.get(name, 0)
        for kind in tally.outcomes:
            count = 0 if kind == "delivered" else count + 1
        values: dict[str, Any] = {"consecutive_failures": count, "updated_at": now}
        if tally.disabled:
            values.update(disabled_at=now, disabled_reason=tally.disabled)
        conn.execute(update(receiver_states).where(receiver_states.c.receiver == name).values(**values))
        if count == 0:
            publish.resolve_matching(conn, FAILING_ALERT, now, "a delivery succeeded", receiver=name)
        elif tally.disabled or tally.dead or count >= FAILURE_THRESHOLD:
            publish.fire(
                conn,
                publish.AlertSignal(FAILING_ALERT, {"receiver": name}, _describe(name, count, tally)),
                now,
            )
            if tally.disabled:
                log.warning("receiver disabled: it answered 410 Gone", receiver=name)


def _describe(name: str, count: int, tally: ReceiverTally) -> str:
    if tally.disabled:
        return (
            f"receiver {name} answered 410 Gone and is disabled; its deliveries wait. Fix the receiver, then "
            f"replay one of its deliveries (POST /api/deliveries/{{id}}/replay) to re-enable it"
        )
    if tally.dead:
        return f"a delivery to {name} went dead: {tally.dead[-1]}"
    return (
        f"{count} consecutive failed delivery attempts to {name}; last: {tally.last_error or 'unknown error'}"
    )
