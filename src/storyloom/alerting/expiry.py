"""The expiry sweep: ingested alerts whose end passed without a re-send resolve, all in one statement.

Prometheus re-sends a firing alert with a fresh future `endsAt` every evaluation; when it stops (the rule
cleared without a resolve getting through, or Prometheus is gone) the last `endsAt` passes and the alert
resolves here, exactly as Alertmanager does it. The resolution goes through the same outbox as every
other one, so the resolved notice reaches receivers with `send_resolved`.

The loop sleeps until the earliest stored end (at most `max_wait`, so an end written by another process
is seen soon) and only opens a write transaction when an end is due; a mass expiry goes in batches of one
statement each, one transaction per batch. Any number of workers may run it: the UPDATE is conditional on
`status = firing`, so each alert resolves once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select, update

from storyloom.alerting.host import AlertingHost
from storyloom.alerting.publish import StateChange, record_changes
from storyloom.background import BackgroundLoop
from storyloom.clock import Clock
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.domain.expiry import has_ended, seconds_until
from storyloom.store.tables import alerts

EXPIRED_REASON = "endsAt passed without a re-send"
BATCH = 1000  # alerts per transaction: a mass expiry never holds the write lock for long


def next_end(conn: Connection) -> datetime | None:
    """The earliest end among firing alerts that have one (ingested alerts)."""
    return conn.execute(select(func.min(alerts.c.expires_at)).where(alerts.c.status == FIRING)).scalar()


def resolve_expired(conn: Connection, now: datetime, limit: int = BATCH) -> list[str]:
    """Resolve the firing alerts whose end is at or before now (the earliest `limit`), each at its end."""
    due = (
        select(alerts.c.fingerprint)
        .where(alerts.c.status == FIRING, alerts.c.expires_at <= now)
        .order_by(alerts.c.expires_at)
        .limit(limit)
    )
    expired = conn.execute(
        update(alerts)
        .where(alerts.c.fingerprint.in_(due), alerts.c.status == FIRING)
        .values(status=RESOLVED, ends_at=alerts.c.expires_at, updated_at=now, generated_at=now)
        .returning(alerts.c.fingerprint, alerts.c.severity)
    ).all()
    record_changes(
        conn, [StateChange(r.fingerprint, RESOLVED, r.severity, EXPIRED_REASON) for r in expired], now
    )
    return [r.fingerprint for r in expired]


class AlertExpiry(BackgroundLoop):
    """Resolves ingested alerts when their end passes; `sweep()` is one synchronous pass (tests call it)."""

    thread_name = "storyloom-alert-expiry"

    def __init__(
        self, rt: AlertingHost, *, clock: Clock | None = None, max_wait: float = 1.0, batch: int = BATCH
    ) -> None:
        self.rt = rt
        self.clock = clock or rt.clock
        self.max_wait = max_wait
        self.batch = batch
        self._wait = max_wait
        super().__init__()

    def run_pass(self) -> bool:
        """One batch; True (go on at once, in a new transaction) when the batch was full."""
        return len(self.sweep()) == self.batch

    def interval(self) -> float:
        return self._wait

    def sweep(self) -> list[str]:
        """Resolve a batch of what is due (a read first, so an idle pass never takes the write lock)."""
        now = self.clock.now()
        with self.rt.db.read() as conn:
            end = next_end(conn)
        resolved: list[str] = []
        if has_ended(end, now):
            with self.rt.db.begin() as conn:
                resolved = resolve_expired(conn, now, self.batch)
                end = next_end(conn)
        self._wait = seconds_until(end, self.clock.now(), self.max_wait)
        return resolved
