"""The notifier loop: alert changes → aggregation groups → due flushes → pending deliveries (the outbox).

One process at a time runs it, whatever the number of workers: it holds the `leases` row named
`notifier`, renews it in every transaction that does work, and a worker takes over once it expired. Each
tick is one transaction that

1. renews the lease (a conditional UPDATE: on PostgreSQL its row lock fences a would-be successor until
   the tick commits);
2. on taking the lease or after a config reload, re-routes every firing alert through the current tree
   (idempotent: groups already scheduled keep their timers, so nothing is re-notified);
3. consumes a batch of `alert_changes` rows (the outbox publishers write) through aggregation
   (`aggregation.ingest`: route → group), and re-arms the quiet groups a change can make speak
   (`quiet`: a flushed group sleeps until its repeat or a silence boundary unless re-armed);
4. flushes a batch of due groups through the flush stages (`flush`) and inserts their deliveries in the
   same transaction as the group state that says they were sent.

After commit it wakes the delivery worker. Reads (API, health, console) never go through here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, func, select

from storyloom.alerting.aggregation.ingest import consume, reroute
from storyloom.alerting.delivery.queue import wake as wake_delivery
from storyloom.alerting.flush import GroupFlusher
from storyloom.alerting.host import IDLE_POLL_MAX, AlertingHost
from storyloom.alerting.publish import NOTIFY_CHANNEL
from storyloom.alerting.quiet import SilenceSet, current_silences, rearm, silence_boundary
from storyloom.alerting.setup import AlertingRuntime
from storyloom.background import BackgroundLoop
from storyloom.clock import Clock
from storyloom.store.db import after_commit
from storyloom.store.leases import hold_lease, release_lease
from storyloom.store.tables import aggregation_groups, alert_changes, leases

log = structlog.get_logger(__name__)

LEASE_NAME = "notifier"


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
    max_idle_interval = IDLE_POLL_MAX

    def __init__(
        self,
        rt: AlertingHost,
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
        self._flusher = GroupFlusher()
        self._held = False
        self._silences: SilenceSet | None = None  # the silences the last pass saw (None: none yet)
        self._next_flush_at: datetime | None = None  # the earliest scheduled flush seen by the last pass
        super().__init__()

    # lifecycle

    def after_stop(self) -> None:
        self.release()

    def release(self) -> None:
        release_lease(self.rt.db, LEASE_NAME, self.holder)
        self._routed_with, self._silences = None, None
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
            muting = current_silences(conn, now)
            everything = muting != self._silences  # a silence came, went or changed: any group may speak
            if self._routed_with is not alerting:
                reroute(conn, alerting, now)
                everything = True
            consumed = consume(conn, alerting, now, self.change_batch)
            route_of = functools.partial(self._flusher.route_of, alerting)
            since = min(now, consumed.since or now)  # a change wakes a group on the tick after it was made
            if everything or consumed.inhibition:
                rearm(conn, route_of, since, None)
            elif consumed.groups:
                rearm(conn, route_of, since, consumed.groups)
            flushed, enqueued, more_groups = self._flusher.flush_due(
                conn, alerting, now, self.flush_batch, silence_boundary(muting, now)
            )
            if enqueued:
                after_commit(conn, wake_delivery)
        self._routed_with, self._silences = alerting, muting
        return TickResult(True, consumed.count, flushed, enqueued, consumed.more or more_groups)

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
            if current_silences(conn, now) != self._silences:
                return True, True
            self._next_flush_at = conn.execute(select(func.min(aggregation_groups.c.next_flush_at))).scalar()
            return self._next_flush_at is not None and self._next_flush_at <= now, True

    def _hold_lease(self, conn: Connection, now: datetime) -> bool:
        held = hold_lease(conn, LEASE_NAME, self.holder, now, self.lease_ttl)
        if held and not self._held:
            log.info("notifier lease taken", holder=self.holder)
        self._held = held
        return held
