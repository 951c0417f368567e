"""The notifier loop: alert changes → aggregation groups → due flushes → pending deliveries (the outbox).

One process at a time runs it, whatever the number of workers: it holds the `leases` row named
`notifier`, renews it in every transaction that does work, and a worker takes over once it expired. Each
tick is one transaction that

1. renews the lease (a conditional UPDATE: on PostgreSQL its row lock fences a would-be successor until
   the tick commits);
2. on taking the lease or after a config reload, re-routes every firing alert through the current tree
   (idempotent: groups already scheduled keep their timers, so nothing is re-notified);
3. consumes a batch of `alert_changes` rows (the outbox publishers write) through `notify.INGEST`, and
   deletes exactly the rows it consumed. Deleting instead of advancing an id cursor matters on
   PostgreSQL, where sequence ids commit out of order and a cursor would skip the late ones; and since
   the deletes commit with the group updates, a restart neither loses nor repeats a change;
4. flushes a batch of due groups through `notify.FLUSH` and inserts their deliveries in the same
   transaction as the group state that says they were sent.

After commit it wakes the dispatcher. Reads (API, health, console) never go through here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, delete, func, insert, select

from storyloom import signals
from storyloom.alerting.notify import (
    FLUSH,
    INGEST,
    FlushContext,
    GroupRecord,
    IngestContext,
    MuteIndex,
    alert_from_row,
    notification_json,
    run_stages,
)
from storyloom.alerting.publish import NOTIFY_CHANNEL
from storyloom.alerting.setup import AlertingRuntime
from storyloom.background import BackgroundLoop
from storyloom.clock import Clock
from storyloom.domain import routing
from storyloom.domain.alerts import FIRING, Alert
from storyloom.domain.grouping import GroupState, NotifyReason, after_flush, prune_resolved
from storyloom.domain.matchers import as_matchers
from storyloom.domain.routing import Route
from storyloom.domain.silences import Silence
from storyloom.runtime import Runtime
from storyloom.store.bulk import KEY, update_many
from storyloom.store.db import after_commit
from storyloom.store.leases import hold_lease, release_lease
from storyloom.store.set_aside import set_aside, set_aside_items
from storyloom.store.tables import (
    aggregation_groups,
    alert_changes,
    alerts,
    deliveries,
    group_members,
    leases,
    silences,
)

log = structlog.get_logger(__name__)

LEASE_NAME = "notifier"
PASS_NAME = "notifier"  # set-aside alerts (by fingerprint)
FLUSH_PASS_NAME = "notifier.flush"  # set-aside groups (by group key)
DISPATCH_CHANNEL = "dispatch"
PENDING = "pending"
_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- queries shared with the API and the health report ---------------------------------------------


def _readable(rows: Iterable[Mapping[Any, Any]], unreadable: dict[str, str] | None) -> Iterator[Alert]:
    """The rows as Alerts; a row that no longer parses is left out (and its error put in `unreadable`)."""
    for row in rows:
        try:
            yield alert_from_row(row)
        except Exception as exc:  # a poisoned row must not take its whole batch down
            if unreadable is not None:
                unreadable[row["fingerprint"]] = f"unreadable alert row: {type(exc).__name__}: {exc}"
            else:
                log.warning(
                    "ignoring an unreadable alert row", fingerprint=row["fingerprint"], error=str(exc)
                )


def load_alerts(
    conn: Connection, fingerprints: Collection[str], unreadable: dict[str, str] | None = None
) -> dict[str, Alert]:
    """The current state of these alerts, by fingerprint (unknown and unreadable ones are left out)."""
    found: dict[str, Alert] = {}
    for chunk in _chunks(sorted(set(fingerprints))):
        rows = conn.execute(select(alerts).where(alerts.c.fingerprint.in_(chunk))).mappings()
        found.update((a.fingerprint, a) for a in _readable(rows, unreadable))
    return found


def firing_alerts(conn: Connection) -> list[Alert]:
    rows = conn.execute(
        select(alerts).where(alerts.c.status == FIRING).order_by(alerts.c.starts_at)
    ).mappings()
    return list(_readable(rows, None))


def silence_from_row(row: Mapping[Any, Any]) -> Silence | None:
    """None (and a log line) for a stored silence whose matchers no longer parse."""
    try:
        matchers = as_matchers(row["matchers"])
    except ValueError as exc:
        log.warning("ignoring a silence with an unreadable matcher", silence_id=row["id"], error=str(exc))
        return None
    return Silence(
        silence_id=row["id"],
        matchers=matchers,
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        comment=row["comment"],
        created_by=row["created_by"],
    )


def active_silences(conn: Connection, now: datetime) -> list[Silence]:
    rows = conn.execute(
        select(silences)
        .where(silences.c.starts_at <= now, silences.c.ends_at > now)
        .order_by(silences.c.created_at, silences.c.id)
    ).mappings()
    return [s for s in (silence_from_row(r) for r in rows) if s is not None]


def mute_index(conn: Connection, alerting: AlertingRuntime, now: datetime) -> MuteIndex:
    """What mutes what right now (inhibition by firing alerts, active silences)."""
    firing = firing_alerts(conn) if alerting.inhibit_rules else []
    return MuteIndex(alerting.inhibit_rules, firing, active_silences(conn, now), now)


def _route_order(route_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in route_id.split(".") if p.isdigit())


def routes_for_alert(conn: Connection, fingerprint: str) -> list[str]:
    """The receivers of the aggregation groups this alert is in, in routing order."""
    rows = conn.execute(
        select(aggregation_groups.c.route_id, aggregation_groups.c.receiver)
        .join(group_members, group_members.c.group_key == aggregation_groups.c.group_key)
        .where(group_members.c.fingerprint == fingerprint)
    ).all()
    return [r.receiver for r in sorted(rows, key=lambda r: (_route_order(r.route_id), r.receiver))]


def group_from_row(row: Mapping[Any, Any]) -> GroupRecord:
    return GroupRecord(
        group_key=row["group_key"],
        route_id=row["route_id"],
        receiver=row["receiver"],
        group_labels=dict(row["group_labels"] or {}),
        state=GroupState(
            first_alert_at=row["first_alert_at"],
            next_flush_at=row["next_flush_at"],
            last_flush_at=row["last_flush_at"],
            last_notified_at=row["last_notified_at"],
            last_firing=frozenset(row["last_firing"] or ()),
            last_resolved=frozenset(row["last_resolved"] or ()),
        ),
    )


def _state_values(state: GroupState) -> dict[str, Any]:
    return {
        "next_flush_at": state.next_flush_at,
        "last_flush_at": state.last_flush_at,
        "last_notified_at": state.last_notified_at,
        "last_firing": sorted(state.last_firing),
        "last_resolved": sorted(state.last_resolved),
    }


# --- the loop ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """What one pass did; `more` says a batch limit was hit and the next pass should not wait."""

    held: bool
    consumed: int = 0
    flushed: int = 0
    deliveries: int = 0
    more: bool = False


class Notifier(BackgroundLoop):
    """Turns alert changes into pending deliveries; `tick()` is one synchronous pass (tests call it)."""

    thread_name = "storyloom-notifier"
    wake_channel = NOTIFY_CHANNEL

    def __init__(
        self,
        rt: Runtime,
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        lease_ttl: timedelta = timedelta(seconds=15),
        poll_interval: float = 0.1,
        change_batch: int = 1000,
        flush_batch: int = 200,
    ) -> None:
        self.rt = rt
        self.clock = clock or rt.clock
        self.holder = holder or rt.worker_id
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.change_batch = change_batch
        self.flush_batch = flush_batch
        self._routed_with: AlertingRuntime | None = None  # the config every firing alert was routed with
        self._routes: tuple[AlertingRuntime | None, dict[tuple[str, str], Route]] = (None, {})
        self._held = False
        self._next_flush_at: datetime | None = None  # the earliest scheduled flush seen by the last pass
        super().__init__()

    # lifecycle

    def after_stop(self) -> None:
        self.release()

    def release(self) -> None:
        release_lease(self.rt.db, LEASE_NAME, self.holder)
        self._routed_with = None
        self._held = False

    def run_pass(self) -> bool:
        result = self.tick()
        if result.consumed or result.flushed:
            self.busy()
        return result.more

    def interval(self) -> float:
        return self.poll_interval

    def next_due(self) -> float | None:
        """Until the earliest group flush this pass saw scheduled, so idling never delays a timer."""
        if self._next_flush_at is None:
            return None
        return (self._next_flush_at - self.clock.now()).total_seconds()

    # one pass

    def tick(self) -> TickResult:
        """One pass: take or renew the lease, consume a batch of changes, flush a batch of due groups."""
        now = self.clock.now()
        alerting = self.rt.alerting  # read once: a reload applies from the next tick
        go, held = self._worth_a_transaction(now, alerting)
        if not go:
            if not held:  # whoever holds the lease may route differently: re-route on takeover
                self._routed_with, self._held = None, False
            return TickResult(held=held)
        with self.rt.db.begin() as conn:
            if not self._hold_lease(conn, now):
                self._routed_with = None
                return TickResult(held=False)
            if self._routed_with is not alerting:
                self._reroute(conn, alerting, now)
            consumed, more_changes = self._consume(conn, alerting, now)
            flushed, enqueued, more_groups = self._flush(conn, alerting, now)
            if enqueued:
                after_commit(conn, _wake_dispatcher)
        self._routed_with = alerting
        return TickResult(True, consumed, flushed, enqueued, more_changes or more_groups)

    def effective_routes(self, fingerprint: str) -> list[str]:
        with self.rt.db.read() as conn:
            return routes_for_alert(conn, fingerprint)

    # lease

    def _worth_a_transaction(self, now: datetime, alerting: AlertingRuntime) -> tuple[bool, bool]:
        """(open a write transaction?, do we hold the lease?): idle passes and followers only read."""
        with self.rt.db.read() as conn:
            lease = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == LEASE_NAME)
            ).first()
            if lease is None or lease.expires_at <= now:
                return True, False
            if lease.holder != self.holder:
                return False, False
            if lease.expires_at - now < self.lease_ttl / 2 or self._routed_with is not alerting:
                return True, True
            if conn.execute(select(alert_changes.c.id).limit(1)).first() is not None:
                return True, True
            self._next_flush_at = conn.execute(select(func.min(aggregation_groups.c.next_flush_at))).scalar()
            return self._next_flush_at is not None and self._next_flush_at <= now, True

    def _hold_lease(self, conn: Connection, now: datetime) -> bool:
        held = hold_lease(conn, LEASE_NAME, self.holder, now, self.lease_ttl)
        if held and not self._held:
            log.info("notifier lease taken", holder=self.holder)
        self._held = held
        return held

    # ingest: changes → groups

    def _ingest(
        self, conn: Connection, alerting: AlertingRuntime, now: datetime, changed: list[Alert]
    ) -> IngestContext:
        ctx = IngestContext(now=now, route=alerting.route, load_groups=lambda keys: _load_groups(conn, keys))
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
                **_state_values(record.state),
            }
            for key, record in ctx.groups.items()
            if key not in ctx.existing
        ]
        if created:
            conn.execute(insert(aggregation_groups), created)
        _add_members(conn, ctx.members, now)
        return ctx

    def _ingest_isolated(
        self, conn: Connection, alerting: AlertingRuntime, now: datetime, changed: list[Alert]
    ) -> set[tuple[str, str]]:
        """`_ingest` in one savepoint; when the set-based batch raises, alert by alert, setting aside the
        ones that raise. Returns the (group key, fingerprint) memberships of the alerts that went in."""
        try:
            with conn.begin_nested():
                return self._ingest(conn, alerting, now, changed).members
        except Exception:
            members: set[tuple[str, str]] = set()
            for alert in changed:
                try:
                    with conn.begin_nested():
                        members |= self._ingest(conn, alerting, now, [alert]).members
                except Exception as exc:
                    set_aside(conn, PASS_NAME, alert.fingerprint, exc, now)
            return members

    def _reroute(self, conn: Connection, alerting: AlertingRuntime, now: datetime) -> None:
        """Route every firing alert with the current tree and leave the groups it no longer belongs to."""
        aside = set_aside_items(conn, PASS_NAME)
        members = self._ingest_isolated(
            conn, alerting, now, [a for a in firing_alerts(conn) if a.fingerprint not in aside]
        )
        current = conn.execute(
            select(group_members.c.group_key, group_members.c.fingerprint)
            .join(alerts, alerts.c.fingerprint == group_members.c.fingerprint)
            .where(alerts.c.status == FIRING)
        ).all()
        stale = [(r.group_key, r.fingerprint) for r in current if (r.group_key, r.fingerprint) not in members]
        _remove_members(conn, stale)
        if stale:
            log.info("alerts re-routed after a config change", left_groups=len(stale))

    def _consume(self, conn: Connection, alerting: AlertingRuntime, now: datetime) -> tuple[int, bool]:
        rows = conn.execute(
            select(alert_changes.c.id, alert_changes.c.fingerprint)
            .order_by(alert_changes.c.id)
            .limit(self.change_batch)
        ).all()
        if not rows:
            return 0, False
        fingerprints = list(dict.fromkeys(r.fingerprint for r in rows))
        unreadable: dict[str, str] = {}
        current = load_alerts(conn, fingerprints, unreadable)
        for fp, error in unreadable.items():
            set_aside(conn, PASS_NAME, fp, error, now)
        self._ingest_isolated(conn, alerting, now, [current[fp] for fp in fingerprints if fp in current])
        for chunk in _chunks([r.id for r in rows]):
            conn.execute(delete(alert_changes).where(alert_changes.c.id.in_(chunk)))
        return len(rows), len(rows) >= self.change_batch

    # flush: due groups → deliveries

    def _flush(self, conn: Connection, alerting: AlertingRuntime, now: datetime) -> tuple[int, int, bool]:
        rows = conn.execute(
            select(aggregation_groups)
            .where(aggregation_groups.c.next_flush_at <= now)
            .order_by(aggregation_groups.c.next_flush_at, aggregation_groups.c.group_key)
            .limit(self.flush_batch)
        ).mappings()
        due: list[GroupRecord] = []
        states: list[dict[str, Any]] = []
        for row in rows:
            try:
                due.append(group_from_row(row))
            except Exception as exc:  # an unreadable group waits aside, the others flush
                self._set_group_aside(conn, row["group_key"], exc, now, states)
        if not due:
            update_many(conn, aggregation_groups, aggregation_groups.c.group_key, states)
            return len(states), 0, len(states) >= self.flush_batch
        members = _members_of(conn, [g.group_key for g in due])
        current = load_alerts(conn, [fp for fps in members.values() for fp in fps])
        mutes = mute_index(conn, alerting, now)
        outbox: list[dict[str, Any]] = []
        dropped: list[tuple[str, str]] = []
        for group in due:
            fps = members.get(group.group_key, [])
            try:
                state, drop, delivery = self._flush_group(alerting, group, fps, current, mutes, now)
            except Exception as exc:  # this group cannot flush: it waits aside, the others go on
                self._set_group_aside(conn, group.group_key, exc, now, states)
                continue
            states.append({KEY: group.group_key, **_state_values(state)})
            dropped.extend((group.group_key, fp) for fp in drop)
            if delivery is not None:
                outbox.append(delivery)
        update_many(conn, aggregation_groups, aggregation_groups.c.group_key, states)
        _remove_members(conn, dropped)
        if outbox:
            conn.execute(insert(deliveries), outbox)
        return len(due), len(outbox), len(states) >= self.flush_batch  # one state per group read

    def _set_group_aside(
        self, conn: Connection, key: str, error: Exception, now: datetime, states: list[dict[str, Any]]
    ) -> None:
        """Record the group as set aside and unschedule it (a new alert in it schedules it again)."""
        set_aside(conn, FLUSH_PASS_NAME, key, error, now)
        states.append({KEY: key, "next_flush_at": None})

    def _flush_group(
        self,
        alerting: AlertingRuntime,
        group: GroupRecord,
        fps: list[str],
        current: Mapping[str, Alert],
        mutes: MuteIndex,
        now: datetime,
    ) -> tuple[GroupState, frozenset[str], dict[str, Any] | None]:
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
        return state, drop, _delivery_row(ctx, now) if ctx.delivery is not None else None

    def _route_for(self, alerting: AlertingRuntime, group: GroupRecord) -> Route:
        """The group's route in the current tree; a route a reload removed flushes with the root's timers."""
        cached_for, index = self._routes
        if cached_for is not alerting:
            index = {(r.route_id, r.receiver): r for r in alerting.route.walk()} if alerting.route else {}
            self._routes = (alerting, index)
        found = index.get((group.route_id, group.receiver))
        if found is not None:
            return found
        if alerting.route is not None:
            return dataclasses.replace(
                alerting.route, route_id=group.route_id, receiver=group.receiver, routes=()
            )
        return Route(
            route_id=group.route_id,
            receiver=group.receiver,
            matchers=(),
            continue_=False,
            group_by=(),
            group_by_all=False,
            group_wait=routing.DEFAULT_GROUP_WAIT,
            group_interval=routing.DEFAULT_GROUP_INTERVAL,
            repeat_interval=routing.DEFAULT_REPEAT_INTERVAL,
        )


def _wake_dispatcher() -> None:
    signals.wake(DISPATCH_CHANNEL)


def _delivery_row(ctx: FlushContext, now: datetime) -> dict[str, Any]:
    assert ctx.delivery is not None
    notification = ctx.delivery.notification
    return {
        "id": ctx.delivery.delivery_id,
        "webhook_id": notification.notification_id,
        "receiver": notification.receiver,
        "receiver_type": ctx.delivery.receiver_type,
        "group_key": notification.group_key,
        "status": PENDING,
        "alert_status": notification.status,
        "fingerprints": ctx.delivery.fingerprints,
        "notification": notification_json(notification),
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _load_groups(conn: Connection, keys: Collection[str]) -> dict[str, GroupRecord]:
    found: dict[str, GroupRecord] = {}
    for chunk in _chunks(sorted(keys)):
        for row in conn.execute(
            select(aggregation_groups).where(aggregation_groups.c.group_key.in_(chunk))
        ).mappings():
            found[row["group_key"]] = group_from_row(row)
    return found


def _members_of(conn: Connection, keys: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for chunk in _chunks(keys):
        rows = conn.execute(
            select(group_members.c.group_key, group_members.c.fingerprint)
            .where(group_members.c.group_key.in_(chunk))
            .order_by(group_members.c.added_at, group_members.c.fingerprint)
        )
        for row in rows:
            found.setdefault(row.group_key, []).append(row.fingerprint)
    return found


def _add_members(conn: Connection, members: Iterable[tuple[str, str]], now: datetime) -> None:
    """Insert the memberships not stored yet (looked up by fingerprint: an alert is in few groups)."""
    wanted = set(members)
    if not wanted:
        return
    present: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted({fp for _, fp in wanted})):
        rows = conn.execute(
            select(group_members.c.group_key, group_members.c.fingerprint).where(
                group_members.c.fingerprint.in_(chunk)
            )
        )
        present.update((r.group_key, r.fingerprint) for r in rows)
    new = sorted(wanted - present)
    if new:
        conn.execute(
            insert(group_members), [{"group_key": key, "fingerprint": fp, "added_at": now} for key, fp in new]
        )


def _remove_members(conn: Connection, pairs: Sequence[tuple[str, str]]) -> None:
    by_key: dict[str, list[str]] = {}
    for key, fp in pairs:
        by_key.setdefault(key, []).append(fp)
    for key, fps in by_key.items():
        for chunk in _chunks(fps):
            conn.execute(
                delete(group_members).where(
                    group_members.c.group_key == key, group_members.c.fingerprint.in_(chunk)
                )
            )
