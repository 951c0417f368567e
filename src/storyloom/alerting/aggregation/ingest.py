"""Aggregation in the notifier's transaction: consume `alert_changes` (the outbox), route, group.

Deleting consumed changes instead of advancing an id cursor matters on PostgreSQL, where sequence ids
commit out of order and a cursor would skip the late ones; and since the deletes commit with the group
updates, a restart neither loses nor repeats a change. A batch that raises is retried alert by alert
(savepoints) and an alert that breaks it is set aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Connection, delete, insert, select

from storyloom.alerting.aggregation.groups import (
    add_members,
    groups_holding,
    load_groups,
    remove_members,
    state_values,
)
from storyloom.alerting.aggregation.stages import INGEST, IngestContext
from storyloom.alerting.notify import run_stages
from storyloom.alerting.quiet import touches_inhibition
from storyloom.alerting.rows import chunks, firing_alerts, load_alerts
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, Alert
from storyloom.store.bulk import KEY, update_many
from storyloom.store.set_aside import set_aside, set_aside_items
from storyloom.store.tables import aggregation_groups, alert_changes, alerts, group_members

log = structlog.get_logger(__name__)

PASS_NAME = "notifier"  # set-aside alerts (by fingerprint)


def ingest(conn: Connection, alerting: AlertingRuntime, now: datetime, changed: list[Alert]) -> IngestContext:
    """Route `changed` into their groups: create new groups, reschedule existing ones, add members."""
    ctx = IngestContext(now=now, route=alerting.route, load_groups=lambda keys: load_groups(conn, keys))
    run_stages(INGEST, ctx, changed)
    rescheduled = [
        {KEY: key, "next_flush_at": record.state.next_flush_at}
        for key, record in ctx.groups.items()
        if key in ctx.existing
    ]
    update_many(conn, aggregation_groups, aggregation_groups.c.group_key, rescheduled)
    created = [
        {
            "group_key": key,
            "route_id": record.route_id,
            "receiver": record.receiver,
            "group_labels": record.group_labels,
            "first_alert_at": record.state.first_alert_at,
            **state_values(record.state),
        }
        for key, record in ctx.groups.items()
        if key not in ctx.existing
    ]
    if created:
        conn.execute(insert(aggregation_groups), created)
    add_members(conn, ctx.members, now)
    return ctx


def ingest_isolated(
    conn: Connection, alerting: AlertingRuntime, now: datetime, changed: list[Alert]
) -> tuple[set[tuple[str, str]], set[str]]:
    """`ingest` in one savepoint; when the set-based batch raises, alert by alert, setting aside the
    ones that raise. Returns the (group key, fingerprint) memberships of the alerts that went in, and
    the keys of the groups among them that were stored before."""
    try:
        with conn.begin_nested():
            ctx = ingest(conn, alerting, now, changed)
            return ctx.members, ctx.existing
    except Exception:
        members: set[tuple[str, str]] = set()
        existing: set[str] = set()
        for alert in changed:
            try:
                with conn.begin_nested():
                    ctx = ingest(conn, alerting, now, [alert])
                    members |= ctx.members
                    existing |= ctx.existing
            except Exception as exc:
                set_aside(conn, PASS_NAME, alert.fingerprint, exc, now)
        return members, existing


def reroute(conn: Connection, alerting: AlertingRuntime, now: datetime) -> None:
    """Route every firing alert with the current tree and leave the groups it no longer belongs to."""
    aside = set_aside_items(conn, PASS_NAME)
    members, _ = ingest_isolated(
        conn, alerting, now, [a for a in firing_alerts(conn) if a.fingerprint not in aside]
    )
    current = conn.execute(
        select(group_members.c.group_key, group_members.c.fingerprint)
        .join(alerts, alerts.c.fingerprint == group_members.c.fingerprint)
        .where(alerts.c.status == FIRING)
    ).all()
    stale = [(r.group_key, r.fingerprint) for r in current if (r.group_key, r.fingerprint) not in members]
    remove_members(conn, stale)
    if stale:
        log.info("alerts re-routed after a config change", left_groups=len(stale))


@dataclass(frozen=True)
class Consumed:
    """What one batch of changes did: `groups` are the stored groups a changed alert joined or is in
    (the ones to re-arm); `inhibition` says a changed alert is a source of an inhibit rule (any group's
    mute state may move)."""

    count: int = 0
    more: bool = False
    groups: frozenset[str] = frozenset()
    inhibition: bool = False
    since: datetime | None = None  # when the earliest of these changes was made


def consume(conn: Connection, alerting: AlertingRuntime, now: datetime, batch: int) -> Consumed:
    """Ingest up to `batch` changes (`more`: the batch was full)."""
    rows = conn.execute(
        select(alert_changes.c.id, alert_changes.c.fingerprint, alert_changes.c.created_at)
        .order_by(alert_changes.c.id)
        .limit(batch)
    ).all()
    if not rows:
        return Consumed()
    fingerprints = list(dict.fromkeys(r.fingerprint for r in rows))
    unreadable: dict[str, str] = {}
    current = load_alerts(conn, fingerprints, unreadable)
    for fp, error in unreadable.items():
        set_aside(conn, PASS_NAME, fp, error, now)
    changed = [current[fp] for fp in fingerprints if fp in current]
    members, existing = ingest_isolated(conn, alerting, now, changed)
    for chunk in chunks([r.id for r in rows]):
        conn.execute(delete(alert_changes).where(alert_changes.c.id.in_(chunk)))
    # Routed alerts re-arm the stored groups they joined; the others (resolved, unreadable) the groups
    # they are in. New groups are scheduled by `group_wait` already.
    unrouted = [fp for fp in fingerprints if fp not in current or current[fp].status != FIRING]
    groups = {key for key, _ in members if key in existing} | groups_holding(conn, unrouted)
    return Consumed(
        len(rows),
        len(rows) >= batch,
        frozenset(groups),
        touches_inhibition(alerting, changed),
        min(r.created_at for r in rows),
    )
