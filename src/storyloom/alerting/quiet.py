"""Quiet groups: a group whose alerts, mute state and membership did not change is not flushed again.

After a flush, the next `group_interval` tick could only decide "nothing new" unless something changes,
so the group sleeps until the first tick at or after the next timer that can change the answer: its
`repeat_interval`, or a silence starting or ending. What changes the answer sooner re-arms it on its
next tick, exactly when a flush every `group_interval` would have seen it (Alertmanager's semantics):

* an alert of the group fires, resolves or changes severity, or a new alert joins it (`rearm` of the
  groups the consumed changes touch);
* a silence is created, expired or edited, a change of a source alert of an inhibit rule, or a config
  reload (`rearm` of every group that has members).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exists, select

from storyloom.alerting.rows import chunks
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import Alert
from storyloom.domain.grouping import GroupState
from storyloom.domain.routing import Route
from storyloom.store.bulk import KEY, update_many
from storyloom.store.tables import aggregation_groups, group_members, silences

RouteOf = Callable[[str, str], Route]  # (route_id, receiver) → the group's route in the current tree
SilenceSet = frozenset[tuple[str, datetime, datetime]]


def next_tick(last_flush: datetime, interval: timedelta, at: datetime) -> datetime:
    """The first `interval` tick after `last_flush` that is at or after `at`."""
    if interval <= timedelta(0):
        return max(last_flush, at)
    if at <= last_flush + interval:
        return last_flush + interval
    return last_flush + -(-(at - last_flush) // interval) * interval  # rounded up to a whole tick


def quiet(state: GroupState, route: Route, silence_boundary: datetime | None) -> GroupState:
    """`state` (just flushed, not idle) asleep until its repeat or the next silence boundary, on a tick;
    with neither, until something re-arms it."""
    if state.next_flush_at is None or state.last_flush_at is None:
        return state
    timers = [silence_boundary] if silence_boundary is not None else []
    if state.last_firing and state.last_notified_at is not None:
        timers.append(state.last_notified_at + route.repeat_interval)
    wake = next_tick(state.last_flush_at, route.group_interval, min(timers)) if timers else None
    return dataclasses.replace(state, next_flush_at=wake)


def current_silences(conn: Connection, now: datetime) -> SilenceSet:
    """The silences that mute now or will: any change to this set can change what a group says."""
    rows = conn.execute(
        select(silences.c.id, silences.c.starts_at, silences.c.ends_at).where(silences.c.ends_at > now)
    ).all()
    return frozenset((r.id, r.starts_at, r.ends_at) for r in rows)


def silence_boundary(current: SilenceSet, now: datetime) -> datetime | None:
    """When the next of these silences starts or ends (a group's mute state can change then)."""
    moments = [starts if starts > now else ends for _, starts, ends in current]
    return min(moments, default=None)


def touches_inhibition(alerting: AlertingRuntime, changed: Iterable[Alert]) -> bool:
    """Whether a changed alert is a source of an inhibit rule (its change can unmute other groups)."""
    rules = alerting.inhibit_rules
    return any(all(m.matches(a.labels) for m in rule.source_matchers) for a in changed for rule in rules)


def rearm(conn: Connection, route_of: RouteOf, since: datetime, keys: Collection[str] | None) -> int:
    """Wake these groups (None: every group with members) on their first tick at or after `since` (when
    the change was made); returns how many moved."""
    columns = (
        aggregation_groups.c.group_key,
        aggregation_groups.c.route_id,
        aggregation_groups.c.receiver,
        aggregation_groups.c.last_flush_at,
        aggregation_groups.c.next_flush_at,
    )
    flushed = aggregation_groups.c.last_flush_at.is_not(None)
    rows: list[Any] = []
    if keys is None:
        has_members = exists().where(group_members.c.group_key == aggregation_groups.c.group_key)
        rows = list(conn.execute(select(*columns).where(flushed, has_members)))
    else:
        for chunk in chunks(sorted(keys)):
            rows += conn.execute(select(*columns).where(flushed, aggregation_groups.c.group_key.in_(chunk)))
    moved = []
    for row in rows:
        tick = next_tick(row.last_flush_at, route_of(row.route_id, row.receiver).group_interval, since)
        if row.next_flush_at is None or row.next_flush_at > tick:
            moved.append({KEY: row.group_key, "next_flush_at": tick})
    update_many(conn, aggregation_groups, aggregation_groups.c.group_key, moved)
    return len(moved)
