"""Flushing due groups: each due group's members through the flush stages, into at most one delivery.

Runs in the notifier's transaction: the groups' new states (timers, last-notified sets), the members
dropped once their resolution was told, and the deliveries (the outbox the delivery worker sends) are
written together, so a notification is enqueued exactly when its group state says it was sent. A group
that cannot flush is set aside and unscheduled; the others go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, insert, select

from storyloom.alerting.aggregation.groups import (
    GroupRecord,
    group_from_row,
    members_of,
    remove_members,
    state_values,
)
from storyloom.alerting.delivery.queue import pending_row
from storyloom.alerting.mute import MuteIndex, mute_index
from storyloom.alerting.notification import notification_json
from storyloom.alerting.notify import FLUSH, FlushContext, run_stages
from storyloom.alerting.quiet import quiet
from storyloom.alerting.rows import load_alerts
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain import routing
from storyloom.domain.alerts import FIRING, Alert
from storyloom.domain.grouping import GroupState, NotifyReason, after_flush, prune_resolved
from storyloom.domain.routing import Route
from storyloom.store.bulk import KEY, update_many
from storyloom.store.set_aside import set_aside
from storyloom.store.tables import aggregation_groups, deliveries

log = structlog.get_logger(__name__)

FLUSH_PASS_NAME = "notifier.flush"  # set-aside groups (by group key)

FlushOutcome = tuple[GroupState, frozenset[str], dict[str, Any] | None]


class GroupFlusher:
    """Flushes due groups; keeps the current routing tree's routes indexed between passes."""

    def __init__(self) -> None:
        self._routes: tuple[AlertingRuntime | None, dict[tuple[str, str], Route]] = (None, {})

    def flush_due(
        self,
        conn: Connection,
        alerting: AlertingRuntime,
        now: datetime,
        batch: int,
        silence_boundary: datetime | None = None,
    ) -> tuple[int, int, bool]:
        """Flush up to `batch` due groups: (groups flushed, deliveries enqueued, was the batch full).

        Each flushed group then sleeps (`quiet`) until its repeat or `silence_boundary`, the next moment
        a silence starts or ends, unless a change re-arms it first."""
        rows = conn.execute(
            select(aggregation_groups)
            .where(aggregation_groups.c.next_flush_at <= now)
            .order_by(aggregation_groups.c.next_flush_at, aggregation_groups.c.group_key)
            .limit(batch)
        ).mappings()
        due: list[GroupRecord] = []
        states: list[dict[str, Any]] = []
        for row in rows:
            try:
                due.append(group_from_row(row))
            except Exception as exc:  # an unreadable group waits aside, the others flush
                _set_group_aside(conn, row["group_key"], exc, now, states)
        if not due:
            update_many(conn, aggregation_groups, aggregation_groups.c.group_key, states)
            return len(states), 0, len(states) >= batch
        members = members_of(conn, [g.group_key for g in due])
        current = load_alerts(conn, [fp for fps in members.values() for fp in fps])
        mutes = mute_index(conn, alerting, now)
        outbox: list[dict[str, Any]] = []
        dropped: list[tuple[str, str]] = []
        for group in due:
            fps = members.get(group.group_key, [])
            try:
                state, drop, delivery = self._flush_group(alerting, group, fps, current, mutes, now)
                state = quiet(state, self._route_for(alerting, group), silence_boundary)
            except Exception as exc:  # this group cannot flush: it waits aside, the others go on
                _set_group_aside(conn, group.group_key, exc, now, states)
                continue
            states.append({KEY: group.group_key, **state_values(state)})
            dropped.extend((group.group_key, fp) for fp in drop)
            if delivery is not None:
                outbox.append(delivery)
        update_many(conn, aggregation_groups, aggregation_groups.c.group_key, states)
        remove_members(conn, dropped)
        if outbox:
            conn.execute(insert(deliveries), outbox)
        return len(due), len(outbox), len(states) >= batch  # one state per group read

    def _flush_group(
        self,
        alerting: AlertingRuntime,
        group: GroupRecord,
        fps: list[str],
        current: Mapping[str, Alert],
        mutes: MuteIndex,
        now: datetime,
    ) -> FlushOutcome:
        """(the group's next state, members to drop, the delivery row or None) for one due group."""
        gone = frozenset(fp for fp in fps if fp not in current)
        spec = alerting.receivers.get(group.receiver)
        if spec is None:
            # The receiver left the config: nobody is left to tell, so the group empties and goes quiet.
            log.warning(
                "emptying a group whose receiver is gone", group_key=group.group_key, receiver=group.receiver
            )
            state = after_flush(
                group.state,
                now,
                routing.DEFAULT_GROUP_INTERVAL,
                frozenset(),
                frozenset(),
                reason=NotifyReason.NONE,
                idle=True,
            )
            return state, frozenset(fps), None
        group_alerts = [current[fp] for fp in fps if fp in current]
        route = self._route_for(alerting, group)
        ctx = FlushContext(now=now, alerting=alerting, group=group, route=route, receiver=spec, mutes=mutes)
        run_stages(FLUSH, ctx, group_alerts)
        statuses = {a.fingerprint: a.status for a in group_alerts}
        drop = prune_resolved(statuses, {fp for fp, status in statuses.items() if status != FIRING}) | gone
        state = after_flush(
            group.state,
            now,
            route.group_interval,
            ctx.firing,
            ctx.resolved,
            reason=ctx.reason,
            idle=not set(statuses) - drop,
        )
        return state, drop, _delivery_row(ctx, now)

    def _route_for(self, alerting: AlertingRuntime, group: GroupRecord) -> Route:
        return self.route_of(alerting, group.route_id, group.receiver)

    def route_of(self, alerting: AlertingRuntime, route_id: str, receiver: str) -> Route:
        """A group's route in the current tree; a route a reload removed flushes with the root's timers."""
        cached_for, index = self._routes
        if cached_for is not alerting:
            index = {(r.route_id, r.receiver): r for r in alerting.route.walk()} if alerting.route else {}
            self._routes = (alerting, index)
        found = index.get((route_id, receiver))
        if found is not None:
            return found
        if alerting.route is not None:
            return dataclasses.replace(alerting.route, route_id=route_id, receiver=receiver, routes=())
        return Route(
            route_id=route_id,
            receiver=receiver,
            matchers=(),
            continue_=False,
            group_by=(),
            group_by_all=False,
            group_wait=routing.DEFAULT_GROUP_WAIT,
            group_interval=routing.DEFAULT_GROUP_INTERVAL,
            repeat_interval=routing.DEFAULT_REPEAT_INTERVAL,
        )


def _set_group_aside(
    conn: Connection, key: str, error: Exception, now: datetime, states: list[dict[str, Any]]
) -> None:
    """Record the group as set aside and unschedule it (a new alert in it schedules it again)."""
    set_aside(conn, FLUSH_PASS_NAME, key, error, now)
    states.append({KEY: key, "next_flush_at": None})


def _delivery_row(ctx: FlushContext, now: datetime) -> dict[str, Any] | None:
    if ctx.delivery is None:
        return None
    notification = ctx.delivery.notification
    return pending_row(
        ctx.delivery.delivery_id,
        ctx.delivery.receiver_type,
        notification,
        notification_json(notification),
        now,
    )
