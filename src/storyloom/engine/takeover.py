"""Worker liveness and takeover: every worker beats, and a live worker takes over a silent one's work.

DBOS recovers an executor's pending workflows only when a process with the same executor id starts again;
on a cluster a dead worker may never come back. So each worker renews its lease `worker:<id>` every
`cluster.heartbeat_every`, and watches its peers' leases. When one has expired for `cluster.takeover_after`,
exactly one live worker wins it (a conditional UPDATE) and hands the dead worker's work back:

1. its pending DBOS workflows are recovered (queued tasks go back on their queue for any worker),
2. the leases it held (the notifier's) are released, so the next holder need not wait for their expiry,
3. the deliveries it had claimed become claimable at once,
4. its `in_progress` items are owned by the taker, so auto-resume does not treat them as orphans.

The claim keeps the lease row (held by the taker) until the recovery has finished: a taker that dies half-way
leaves an expired lease that the next worker claims again. Every takeover writes a `storyloom.worker.takeover`
event, which `storyloom_worker_takeovers_total` counts cluster-wide.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from storyloom.domain import backlog as bl
from storyloom.runtime import Runtime
from storyloom.store.events import WORKER_TAKEOVER, record_event
from storyloom.store.leases import WORKER_LEASE_PREFIX
from storyloom.store.tables import backlog_items, deliveries, leases, tasks

log = structlog.get_logger(__name__)


Recover = Callable[[str], list[str]]  # executor id → ids of the workflows handed back


def no_workflows(executor_id: str) -> list[str]:
    """The recovery of a process that runs no DBOS (a scheduler driven by hand in tests)."""
    return []


def worker_lease(worker_id: str) -> str:
    return f"{WORKER_LEASE_PREFIX}{worker_id}"


def runs_phases(rt: Runtime, worker_id: str) -> bool:
    """Whether a task of `worker_id` is running: a phase in flight that a stop should drain or hand over."""
    with rt.db.read() as conn:
        return (
            conn.execute(
                select(tasks.c.task_id)
                .where(tasks.c.worker_id == worker_id, tasks.c.status == "running")
                .limit(1)
            ).first()
            is not None
        )


def live_workers(rt: Runtime, now: datetime) -> set[str]:
    """Workers whose lease is unexpired now."""
    with rt.db.read() as conn:
        return set(
            conn.execute(
                select(leases.c.holder).where(
                    leases.c.name.like(f"{WORKER_LEASE_PREFIX}%"), leases.c.expires_at > now
                )
            ).scalars()
        )


class Liveness:
    """The heartbeat of one worker and its watch over the others, ticked by the scheduler."""

    def __init__(self, rt: Runtime, recover: Recover) -> None:
        self.rt = rt
        self.recover = recover
        self._next_beat: datetime | None = None

    def tick(self, now: datetime) -> None:
        """Beat when due, and take over every peer silent past its lease."""
        if self.beat_on_time(now):
            for worker_id in self.silent_peers(now):
                self.take_over(worker_id, now, self.rt.config.cluster.takeover_after)

    def beat_on_time(self, now: datetime) -> bool:
        """Beat when `heartbeat_every` has passed since the last beat; True when it beat."""
        if self._next_beat is not None and now < self._next_beat:
            return False
        cluster = self.rt.config.cluster
        self.beat(now, cluster.takeover_after)
        self._next_beat = now + cluster.heartbeat_every
        return True

    def leave(self, now: datetime) -> None:
        """On stop: drop this worker's lease, or expire it when a phase of ours is still running, so that a
        live worker takes it over at its next beat instead of after `takeover_after`."""
        me = self.rt.worker_id
        running = runs_phases(self.rt, me)
        owned = (leases.c.name == worker_lease(me)) & (leases.c.holder == me)
        with self.rt.db.begin() as conn:
            if running:
                conn.execute(update(leases).where(owned).values(expires_at=now))
            else:
                conn.execute(delete(leases).where(owned))
        log.info("worker left the cluster", worker_id=me, handed_over=running)

    def beat(self, now: datetime, ttl: timedelta) -> None:
        """Renew this worker's lease; a lease a taker holds right now is left to it until it finishes."""
        me = self.rt.worker_id
        name = worker_lease(me)
        with self.rt.db.begin() as conn:
            renewed = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == me)
                .values(expires_at=now + ttl)
            ).rowcount
            if renewed:
                return
            if conn.execute(select(leases.c.holder).where(leases.c.name == name)).first() is not None:
                log.warning("this worker's lease is held by a taker; it beats again once the takeover ends")
                return
            try:
                with conn.begin_nested():
                    conn.execute(insert(leases).values(name=name, holder=me, expires_at=now + ttl))
            except IntegrityError:
                return  # a taker claimed it between the two statements

    def silent_peers(self, now: datetime) -> list[str]:
        with self.rt.db.read() as conn:
            names = conn.execute(
                select(leases.c.name).where(
                    leases.c.name.like(f"{WORKER_LEASE_PREFIX}%"), leases.c.expires_at <= now
                )
            ).scalars()
            peers = [name.removeprefix(WORKER_LEASE_PREFIX) for name in names]
        return [p for p in peers if p != self.rt.worker_id]

    def take_over(self, worker_id: str, now: datetime, ttl: timedelta) -> bool:
        """Claim `worker_id`'s expired lease and hand its work back; False when another worker won it."""
        me = self.rt.worker_id
        name = worker_lease(worker_id)
        with self.rt.db.begin() as conn:
            won = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.expires_at <= now)
                .values(holder=me, expires_at=now + ttl)
            ).rowcount
        if not won:
            return False
        workflows = self.recover(worker_id)
        with self.rt.db.begin() as conn:
            released = conn.execute(
                delete(leases).where(leases.c.holder == worker_id, leases.c.name != name)
            ).rowcount
            unclaimed = conn.execute(
                update(deliveries)
                .where(deliveries.c.claimed_by.like(f"{worker_id}:%"))
                .values(claimed_by=None, claim_expires_at=None)
            ).rowcount
            items = conn.execute(
                update(backlog_items)
                .where(backlog_items.c.worker_id == worker_id, backlog_items.c.status == bl.IN_PROGRESS)
                .values(worker_id=me)
            ).rowcount
            conn.execute(
                update(tasks)
                .where(tasks.c.worker_id == worker_id, tasks.c.status == "running")
                .values(worker_id=me)
            )
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == me))
            record_event(
                conn,
                WORKER_TAKEOVER,
                {
                    "worker_id": worker_id,
                    "taken_over_by": me,
                    "workflows": len(workflows),
                    "leases": released,
                    "deliveries": unclaimed,
                    "items": items,
                },
                now,
            )
        log.warning(
            "took over a silent worker",
            worker_id=worker_id,
            workflows=len(workflows),
            leases=released,
            deliveries=unclaimed,
            items=items,
        )
        return True
