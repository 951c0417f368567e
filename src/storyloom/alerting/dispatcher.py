"""The delivery dispatcher: claim due deliveries in batches, sign, send, and record what came back.

Why batches and not one DBOS workflow per delivery: DBOS runs ~125 steps/s here (DESIGN "Measured
facts"), far below alert-storm rates, while a claimed batch costs two or three commits whatever its size.

One pass (`run_once`, which tests call; the background loop runs several passes at once):

1. **claim** up to `batch_size` deliveries that are `pending`/`failed`, due (`next_attempt_at <= now`),
   whose receiver is not disabled, and unclaimed or whose claim expired. PostgreSQL: `SELECT ... FOR
   UPDATE SKIP LOCKED`, then set `claimed_by`/`claim_expires_at`, so any number of workers share the queue.
   SQLite: the same conditional UPDATE inside a `BEGIN IMMEDIATE` transaction (one writer at a time).
   Each claim carries its own token, and every later write is fenced on it: a worker whose claim expired
   (it stalled longer than `claim_ttl`) cannot overwrite the state its successor recorded.
2. **send** them concurrently over one pooled `httpx` client guarded by the egress policy, re-signed at
   every attempt (`webhook-timestamp` is the attempt's; `webhook-id` the notification's, unchanged across
   retries and replays). Each receiver has a token bucket (`max_per_second`, per process); a delivery
   that would wait longer than `max_wait` is put back with `next_attempt_at` at its turn instead.
3. **record**, in one transaction per `flush_interval` of completions (not one per HTTP call): the
   `delivery_attempts` rows, the delivery's new state (delivered; failed with the next attempt from the
   retry schedule, Retry-After and `max_age`; or dead), the receiver's `receiver_states` (consecutive
   failures; 410 disables it: its other deliveries stay pending until an operator replays one), and the
   `delivery:failing` alert (`receiver` label), fired on a dead delivery or 5 consecutive failed attempts
   and resolved by the next success, in the same transaction.

A notification that only carries `delivery:failing` alerts about its own receiver is not sent to it (that
receiver is the one failing): it goes `dead` with the reason. Logs and stored errors never carry a secret,
a signature or a URL path (the sender scrubs errors; URLs are never logged).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from storyloom import signals
from storyloom.alerting import publish
from storyloom.alerting.egress import EgressPolicy
from storyloom.alerting.notify import notification_from_json
from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, render_unsigned, sign_request
from storyloom.alerting.sender import (
    Random,
    RateLimiter,
    SendOutcome,
    make_client,
    next_attempt,
    scrub,
    send,
)
from storyloom.alerting.setup import AlertingRuntime
from storyloom.background import BackgroundLoop
from storyloom.clock import Clock
from storyloom.domain.alerts import Notification
from storyloom.health import metrics_delivery
from storyloom.runtime import Runtime
from storyloom.store.bulk import KEY, update_many
from storyloom.store.db import after_commit
from storyloom.store.events import DELIVERY_ACTION, record_event
from storyloom.store.set_aside import set_aside
from storyloom.store.tables import deliveries, delivery_attempts, receiver_states

log = structlog.get_logger(__name__)

DISPATCH_CHANNEL = "dispatch"
FAILING_ALERT = "delivery:failing"
FAILURE_THRESHOLD = 5  # consecutive failed attempts that raise `delivery:failing`
SELF_SKIP_REASON = "not sent to the failing receiver itself"
SET_ASIDE_PASS = "delivery"

PENDING, DELIVERED, FAILED, DEAD = "pending", "delivered", "failed", "dead"
DUE_STATUSES = (PENDING, FAILED)

ClientFactory = Callable[[EgressPolicy], httpx.AsyncClient]
LimiterFactory = Callable[[float], RateLimiter]
Sleep = Callable[[float], Coroutine[Any, Any, None]]


# --- receiver state, shared with the deliveries service ---------------------------------------------


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


def wake() -> None:
    signals.wake(DISPATCH_CHANNEL)


# --- what a pass works on ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One claimed delivery."""

    delivery_id: str
    webhook_id: str
    receiver: str
    notification: Mapping[str, Any]
    attempts: int
    first_attempt_at: datetime | None
    client_errors: int  # earlier attempts that were client errors (a 4xx is retried once)


@dataclass(frozen=True)
class Claim:
    token: str
    jobs: list[Job]


@dataclass(frozen=True)
class Result:
    """What became of one job. `kind` is an outcome kind when a request was tried, else one of
    `skipped` (own failing alert), `gone` (receiver left the config), `empty` (nothing to send),
    `set_aside` (processing it raised: it goes `dead` with the error and is listed as set aside),
    `unclaim` (its receiver got disabled meanwhile) or `defer` (the rate limit's turn is later)."""

    job: Job
    kind: str
    outcome: SendOutcome | None = None
    attempt_at: datetime | None = None
    delay: float = 0.0
    note: str | None = None


@dataclass
class _Receiver:
    """Per-receiver bookkeeping while recording one flush."""

    outcomes: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    disabled: str | None = None
    last_error: str | None = None


def _combine(outcomes: Sequence[SendOutcome]) -> SendOutcome:
    """Several requests of one notification (PagerDuty: one per alert) → the outcome of the delivery."""
    if len(outcomes) == 1:
        return outcomes[0]
    rank = {"disable": 0, "dead": 1, "client_error": 2, "retry": 3, "delivered": 4}
    worst = min(outcomes, key=lambda o: rank[o.kind])
    retry_afters = [o.retry_after for o in outcomes if o.retry_after is not None]
    return SendOutcome(
        worst.kind,
        worst.status_code,
        worst.error,
        max(retry_afters) if retry_afters else None,
        max(o.latency_ms for o in outcomes),
    )


def without_own_failing_alerts(notification: Notification, receiver: str) -> Notification | None:
    """Drop `delivery:failing` alerts about `receiver` itself; None when nothing else is left."""
    kept = tuple(
        a
        for a in notification.alerts
        if not (a.alert_id == FAILING_ALERT and a.labels.get("receiver") == receiver)
    )
    if len(kept) == len(notification.alerts):
        return notification
    return dataclasses.replace(notification, alerts=kept) if kept else None


_METRIC_RESULT = {
    "disable": "disabled",
    "skipped": "skipped",
    "empty": "skipped",
    "gone": "dead",
    "set_aside": "dead",
}


# --- the dispatcher ---------------------------------------------------------------------------------


class DeliveryDispatcher(BackgroundLoop):
    """Sends pending deliveries. `start()`/`stop()` run it in a thread; `await run_once()` is one pass."""

    thread_name = "storyloom-dispatcher"
    wake_channel = DISPATCH_CHANNEL
    stop_timeout = 20.0  # batches in flight finish (bounded by receiver timeouts) and are recorded

    def __init__(
        self,
        rt: Runtime,
        *,
        clock: Clock | None = None,
        client_factory: ClientFactory | None = None,
        batch_size: int = 100,
        holder: str | None = None,
        claim_ttl: timedelta = timedelta(minutes=2),
        max_wait: float = 5.0,
        flush_interval: float = 0.05,
        poll_interval: float = 0.1,
        max_batches: int = 4,
        per_receiver: int = 8,
        limiter_factory: LimiterFactory | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Random | None = None,
    ) -> None:
        self.rt = rt
        self.clock = clock or rt.clock
        self.client_factory: ClientFactory = client_factory or make_client
        self.batch_size = batch_size
        self.holder = holder or f"{rt.worker_id}:{os.getpid()}:{os.urandom(3).hex()}"
        self.claim_ttl = claim_ttl
        self.max_wait = max_wait
        self.flush_interval = flush_interval
        self.poll_interval = poll_interval
        self.max_batches = max_batches
        self.per_receiver = per_receiver
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_attempt_at: datetime | None = None  # the earliest due attempt the last claim saw
        self.limiter_factory: LimiterFactory = limiter_factory or (lambda rate: RateLimiter(rate))
        self.limiters: dict[str, RateLimiter] = {}
        self._sleep = sleep
        self._rng: Random = rng or random.Random()
        self._seq = itertools.count(1)
        self._client: httpx.AsyncClient | None = None
        self._client_key: tuple[asyncio.AbstractEventLoop, EgressPolicy] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._seen_alerting: AlertingRuntime | None = None
        super().__init__()

    # lifecycle

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        wait = signals.waiter(DISPATCH_CHANNEL)
        inflight: set[asyncio.Task[None]] = set()
        self._client_for_loop()  # the pool (and its TLS context) is ready before the first delivery
        try:
            await asyncio.to_thread(self.take_back_predecessor_claims)
        except Exception:
            log.warning("could not take back the claims of this worker's previous process", exc_info=True)
        try:
            while not self._stop.is_set():
                if len(inflight) >= self.max_batches:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    claim = await asyncio.to_thread(self.claim)
                except Exception:
                    log.exception("claiming deliveries failed; retrying")
                    await asyncio.to_thread(self._stop.wait, 1.0)
                    continue
                if claim.jobs:
                    self.busy()
                    task = asyncio.create_task(self._dispatch_logged(claim))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                    if len(claim.jobs) >= self.batch_size:
                        continue  # more is due: claim the next batch at once
                self.waited(woken=await asyncio.to_thread(wait, self.idle_wait()))
        finally:
            if inflight:
                await asyncio.wait(inflight, timeout=15.0)
            await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled client (tests that call `run_once` close it at the end)."""
        client, self._client, self._client_key = self._client, None, None
        if client is not None:
            await client.aclose()

    def interval(self) -> float:
        return self.poll_interval

    def next_due(self) -> float | None:
        """Until the earliest retry the last claim saw scheduled, so idling never delays one."""
        if self._next_attempt_at is None:
            return None
        return (self._next_attempt_at - self.clock.now()).total_seconds()

    def take_back_predecessor_claims(self) -> int:
        """Release the claims an earlier process of this worker id left (it crashed or was killed), so its
        deliveries are sent now rather than after `claim_ttl`. Worker ids are unique per live process
        (DBOS recovery relies on the same), so a claim under this id and another pid is a dead one's."""
        prefix = f"{self.rt.worker_id}:"
        if not self.holder.startswith(prefix):
            return 0
        with self.rt.db.begin() as conn:
            released = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.claimed_by.startswith(prefix, autoescape=True),
                    # not this process's: another dispatcher here (tests run several) is alive
                    ~deliveries.c.claimed_by.startswith(f"{prefix}{os.getpid()}:", autoescape=True),
                    deliveries.c.status.in_(DUE_STATUSES),
                )
                .values(claimed_by=None, claim_expires_at=None)
            ).rowcount
        if released:
            log.info(
                "took back deliveries a previous process of this worker had claimed", deliveries=released
            )
        return int(released or 0)

    # one pass

    async def run_once(self) -> int:
        """Claim one batch, send it, record it; returns how many deliveries were claimed."""
        claim = await asyncio.to_thread(self.claim)
        if claim.jobs:
            await self._dispatch(claim)
        return len(claim.jobs)

    # claim

    def _waiting(self, now: datetime) -> Any:
        """Deliveries to send once their `next_attempt_at` comes: unclaimed, receiver not disabled."""
        disabled = exists().where(
            receiver_states.c.receiver == deliveries.c.receiver, receiver_states.c.disabled_at.is_not(None)
        )
        return and_(
            deliveries.c.status.in_(DUE_STATUSES),
            or_(deliveries.c.claimed_by.is_(None), deliveries.c.claim_expires_at < now),
            ~disabled,
        )

    def _due(self, now: datetime) -> Any:
        return and_(self._waiting(now), deliveries.c.next_attempt_at <= now)

    def claim(self) -> Claim:
        """Claim up to `batch_size` due deliveries for this pass (see the module docstring)."""
        self._notice_reload()
        now = self.clock.now()
        token = f"{self.holder}/{next(self._seq)}"
        due = self._due(now)
        # An idle poll only reads: on SQLite a write transaction would take the database's write lock.
        with self.rt.db.read() as conn:
            self._next_attempt_at = conn.execute(
                select(func.min(deliveries.c.next_attempt_at)).where(self._waiting(now))
            ).scalar()
            if self._next_attempt_at is None or self._next_attempt_at > now:
                return Claim(token, [])
        with self.rt.db.begin() as conn:
            query = (
                select(deliveries.c.id)
                .where(due)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(self.batch_size)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=deliveries)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return Claim(token, [])
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(ids),
                    or_(deliveries.c.claimed_by.is_(None), deliveries.c.claim_expires_at < now),
                )
                .values(claimed_by=token, claim_expires_at=now + self._ttl())
            )
            rows = conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.webhook_id,
                    deliveries.c.receiver,
                    deliveries.c.notification,
                    deliveries.c.attempts,
                    deliveries.c.first_attempt_at,
                    deliveries.c.next_attempt_at,
                )
                .where(deliveries.c.id.in_(ids), deliveries.c.claimed_by == token)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            ).all()
            client_errors: dict[str, int] = dict(
                conn.execute(
                    select(delivery_attempts.c.delivery_id, func.count())
                    .where(
                        delivery_attempts.c.delivery_id.in_([r.id for r in rows]),
                        delivery_attempts.c.outcome == "client_error",
                    )
                    .group_by(delivery_attempts.c.delivery_id)
                ).all()
            )
        jobs = [
            Job(
                delivery_id=r.id,
                webhook_id=r.webhook_id,
                receiver=r.receiver,
                notification=r.notification,
                attempts=r.attempts or 0,
                first_attempt_at=r.first_attempt_at,
                client_errors=int(client_errors.get(r.id, 0)),
            )
            for r in rows
        ]
        return Claim(token, jobs)

    def _ttl(self) -> timedelta:
        """Long enough for the slowest send of a batch (its timeout and a rate-limit wait) and its record,
        behind every request the claimed batches queue for one receiver's slots."""
        timeouts = [s.timeout for s in self.rt.alerting.receivers.values()]
        longest = max(timeouts, default=timedelta(seconds=10))
        rounds = -(-self.batch_size * self.max_batches // self.per_receiver)
        return max(self.claim_ttl, (rounds + 1) * longest + timedelta(seconds=self.max_wait + 30))

    def _notice_reload(self) -> None:
        alerting = self.rt.alerting
        old, self._seen_alerting = self._seen_alerting, alerting
        if old is None or old is alerting:
            return
        try:
            with self.rt.db.begin() as conn:
                enabled = reenable_on_reload(conn, old, alerting, self.clock.now())
        except Exception:
            log.warning("could not re-enable receivers after a reload", exc_info=True)
            return
        if enabled:
            log.info("receivers re-enabled: their url changed in the reloaded config", receivers=enabled)

    # send

    def _client_for_loop(self) -> httpx.AsyncClient:
        egress = self.rt.config.alerting.egress
        policy = EgressPolicy(allow_loopback=egress.allow_loopback, allow_private=egress.allow_private)
        key = (asyncio.get_running_loop(), policy)
        if self._client is None or self._client_key != key:
            old = self._client
            if old is not None and self._client_key is not None and self._client_key[0] is key[0]:
                # The egress policy changed on reload: close the old pool once its requests are done.
                closing = asyncio.get_running_loop().create_task(old.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            # A client of another (finished) event loop is simply dropped: its loop cannot close it now.
            self._client = self.client_factory(policy)
            self._client_key = key
            self._slots = {}
        return self._client

    def _slot(self, receiver: str) -> asyncio.Semaphore:
        """At most `per_receiver` requests in flight to one receiver: they reuse the pool's keep-alive
        connections instead of opening hundreds, and each request's timeout starts once it has a slot."""
        slot = self._slots.get(receiver)
        if slot is None:
            slot = self._slots[receiver] = asyncio.Semaphore(self.per_receiver)
        return slot

    def _limiter(self, spec: ReceiverSpec) -> RateLimiter:
        limiter = self.limiters.get(spec.name)
        if limiter is None or limiter.rate != float(spec.max_per_second):
            limiter = self.limiter_factory(spec.max_per_second)
            self.limiters[spec.name] = limiter
        return limiter

    async def _dispatch_logged(self, claim: Claim) -> None:
        try:
            await self._dispatch(claim)
        except Exception:  # the claims expire and another pass picks the deliveries up
            log.exception("a delivery batch failed", deliveries=len(claim.jobs))

    async def _dispatch(self, claim: Claim) -> None:
        """Send a claimed batch concurrently; record completions in batched transactions."""
        alerting = self.rt.alerting
        client = self._client_for_loop()
        disabled_now: set[str] = set()
        tasks = {
            asyncio.create_task(self._attempt(job, alerting, client, disabled_now)) for job in claim.jobs
        }
        while tasks:
            done, tasks = await asyncio.wait(tasks, timeout=self.flush_interval)
            if done:
                await self._record_with_retry(claim.token, [t.result() for t in done], alerting)

    async def _attempt(
        self, job: Job, alerting: AlertingRuntime, client: httpx.AsyncClient, disabled_now: set[str]
    ) -> Result:
        try:
            return await self._attempt_unguarded(job, alerting, client, disabled_now)
        except Exception as exc:  # a row this pass cannot process: set it aside, the batch goes on
            log.exception("delivery attempt failed unexpectedly", delivery_id=job.delivery_id)
            return Result(job, "set_aside", note=f"set aside: internal error: {type(exc).__name__}: {exc}")

    async def _attempt_unguarded(
        self, job: Job, alerting: AlertingRuntime, client: httpx.AsyncClient, disabled_now: set[str]
    ) -> Result:
        spec = alerting.receivers.get(job.receiver)
        if spec is None:
            return Result(
                job,
                "gone",
                note=f"receiver {job.receiver!r} is no longer in the config; add it back and replay",
            )
        try:
            notification = without_own_failing_alerts(notification_from_json(job.notification), spec.name)
            if notification is None:
                return Result(job, "skipped", note=SELF_SKIP_REASON)
            requests = render_unsigned(spec, notification)
        except Exception as exc:
            error = f"cannot render the notification for a {spec.type} receiver: {type(exc).__name__}: {exc}"
            error = scrub(error, spec, RenderedRequest(b"", {}))
            return Result(job, "dead", SendOutcome("dead", error=error), self.clock.now())
        if not requests:
            return Result(job, "empty", note="nothing to send: the receiver does not want resolved alerts")
        if spec.name in disabled_now:
            return Result(job, "unclaim")
        limiter = self._limiter(spec)
        delays = [limiter.reserve() for _ in requests]
        delay = max(delays)
        if delay > self.max_wait:
            for _ in requests:
                limiter.release()
            return Result(job, "defer", delay=delay)
        if delay > 0:
            await self._sleep(delay)
            if spec.name in disabled_now:
                return Result(job, "unclaim")
        async with self._slot(spec.name):
            if spec.name in disabled_now:  # a 410 came back while this request queued for a slot
                return Result(job, "unclaim")
            attempt_at = self.clock.now()
            signed = [sign_request(spec, r, job.webhook_id, attempt_at) for r in requests]
            outcomes = await asyncio.gather(*(self._send(client, spec, r) for r in signed))
        outcome = _combine(outcomes)
        if outcome.kind == "disable":
            disabled_now.add(spec.name)
        return Result(job, outcome.kind, outcome, attempt_at)

    async def _send(
        self, client: httpx.AsyncClient, spec: ReceiverSpec, request: RenderedRequest
    ) -> SendOutcome:
        return await send(client, spec, request, now=self.clock.now)

    # record

    async def _record_with_retry(self, token: str, results: list[Result], alerting: AlertingRuntime) -> None:
        for attempt in range(3):
            try:
                await asyncio.to_thread(self.record, token, results, alerting)
                return
            except Exception:
                if attempt == 2:
                    # The claims expire and another pass sends these again: at least once, never lost.
                    log.exception("recording deliveries failed; they will be retried after the claim expires")
                    return
                log.warning("recording deliveries failed; retrying", exc_info=True)
                await asyncio.sleep(0.2 * (attempt + 1))

    def record(self, token: str, results: Sequence[Result], alerting: AlertingRuntime) -> None:
        """Write what a set of completed jobs came to, in one transaction of set-based statements.

        The fence: only deliveries still claimed under `token` are written (read first in the same
        transaction, which holds SQLite's write lock and, on PostgreSQL, locks those rows).
        """
        now = self.clock.now()
        counted: list[tuple[str, str, float | None]] = []
        per_receiver: dict[str, _Receiver] = {}
        changed = {DELIVERED: 0, FAILED: 0, DEAD: 0}
        updates: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        release = {"claimed_by": None, "claim_expires_at": None}
        with self.rt.db.begin() as conn:
            held = self._still_claimed(conn, token, [r.job.delivery_id for r in results])
            for result in results:
                job = result.job
                if job.delivery_id not in held:
                    if result.outcome is not None:
                        log.warning(
                            "a delivery's claim was taken over before its attempt was recorded",
                            delivery_id=job.delivery_id,
                        )
                    continue
                if result.kind in ("unclaim", "defer"):
                    values: dict[str, Any] = dict(release)
                    if result.kind == "defer":
                        values["next_attempt_at"] = now + timedelta(seconds=result.delay)
                    updates.append({KEY: job.delivery_id, **values})
                    continue
                if result.outcome is None:  # settled without a request: skipped, gone, empty or set aside
                    status = DELIVERED if result.kind == "empty" else DEAD
                    if result.kind == "set_aside":
                        set_aside(conn, SET_ASIDE_PASS, job.delivery_id, result.note or "internal error", now)
                    updates.append(
                        {
                            KEY: job.delivery_id,
                            "status": status,
                            "last_error": result.note,
                            "next_attempt_at": None,
                            "delivered_at": now if status == DELIVERED else None,
                            **release,
                        }
                    )
                    changed[status] += 1
                    counted.append((job.receiver, _METRIC_RESULT[result.kind], None))
                    self._log_settled(job, status, result.note)
                    continue
                values, attempt = self._attempt_rows(result, alerting, now, per_receiver, changed, counted)
                updates.append({KEY: job.delivery_id, **values})
                attempts.append(attempt)
            update_many(conn, deliveries, deliveries.c.id, updates)
            if attempts:
                conn.execute(insert(delivery_attempts), attempts)
            self._update_receivers(conn, per_receiver, now)
            if any(changed.values()):
                record_event(
                    conn,
                    DELIVERY_ACTION,
                    {"action": "dispatch", **changed, "receivers": sorted({r.job.receiver for r in results})},
                    now,
                )
        for receiver, result_name, latency in counted:
            metrics_delivery.observe(receiver, result_name, latency)

    def _still_claimed(self, conn: Connection, token: str, ids: Sequence[str]) -> set[str]:
        query = select(deliveries.c.id).where(deliveries.c.id.in_(ids), deliveries.c.claimed_by == token)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=deliveries)
        return set(conn.execute(query).scalars())

    def _attempt_rows(
        self,
        result: Result,
        alerting: AlertingRuntime,
        now: datetime,
        per_receiver: dict[str, _Receiver],
        changed: dict[str, int],
        counted: list[tuple[str, str, float | None]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the delivery's new values, its `delivery_attempts` row) for one attempted job."""
        job, outcome = result.job, result.outcome
        assert outcome is not None and result.attempt_at is not None
        number = job.attempts + 1
        first = job.first_attempt_at or result.attempt_at
        values: dict[str, Any] = {
            "attempts": number,
            "first_attempt_at": first,
            "last_attempt_at": result.attempt_at,
            "last_status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "claimed_by": None,
            "claim_expires_at": None,
        }
        spec = alerting.receivers.get(job.receiver)
        if outcome.kind == "delivered":
            values.update(status=DELIVERED, delivered_at=now, next_attempt_at=None, last_error=None)
            status = DELIVERED
        else:
            schedule = spec.retry_schedule if spec else ()
            max_age = spec.retry_max_age if spec else timedelta(0)
            decision = next_attempt(
                outcome,
                number,
                first,
                now,
                schedule,
                max_age,
                self._rng,
                previous_client_errors=job.client_errors,
            )
            if decision[0] == "retry":
                status = FAILED
                values.update(status=FAILED, next_attempt_at=decision[1], last_error=outcome.error)
            else:
                status = DEAD
                values.update(status=DEAD, next_attempt_at=None, last_error=decision[1])
        attempt = {
            "delivery_id": job.delivery_id,
            "attempt": number,
            "at": result.attempt_at,
            "status_code": outcome.status_code,
            "outcome": outcome.kind,
            "error": outcome.error,
            "latency_ms": outcome.latency_ms,
        }
        changed[status] += 1
        state = per_receiver.setdefault(job.receiver, _Receiver())
        state.outcomes.append(outcome.kind)
        if outcome.kind != "delivered":
            state.last_error = outcome.error
        if outcome.kind == "disable":
            state.disabled = outcome.error or "HTTP 410"
        if status == DEAD:
            state.dead.append(str(values["last_error"]))
        metric = "dead" if status == DEAD and outcome.kind in ("retry", "client_error") else outcome.kind
        counted.append((job.receiver, _METRIC_RESULT.get(metric, metric), outcome.latency_ms / 1000))
        self._log_attempt(job, number, outcome, status, values.get("next_attempt_at"))
        return values, attempt

    def _update_receivers(
        self, conn: Connection, per_receiver: Mapping[str, _Receiver], now: datetime
    ) -> None:
        """Consecutive failures, 410 → disabled, and the `delivery:failing` alert, per receiver."""
        if not per_receiver:
            return
        names = sorted(per_receiver)
        ensure_receiver_rows(conn, names, now)
        query = select(receiver_states.c.receiver, receiver_states.c.consecutive_failures).where(
            receiver_states.c.receiver.in_(names)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        current = {r.receiver: r.consecutive_failures or 0 for r in conn.execute(query)}
        for name in names:
            state = per_receiver[name]
            count = current.get(name, 0)
            for kind in state.outcomes:
                count = 0 if kind == "delivered" else count + 1
            values: dict[str, Any] = {"consecutive_failures": count, "updated_at": now}
            if state.disabled:
                values.update(disabled_at=now, disabled_reason=state.disabled)
            conn.execute(update(receiver_states).where(receiver_states.c.receiver == name).values(**values))
            if count == 0:
                publish.resolve_matching(conn, FAILING_ALERT, now, "a delivery succeeded", receiver=name)
            elif state.disabled or state.dead or count >= FAILURE_THRESHOLD:
                publish.fire(
                    conn,
                    publish.AlertSignal(FAILING_ALERT, {"receiver": name}, _describe(name, count, state)),
                    now,
                )
                if state.disabled:
                    log.warning("receiver disabled: it answered 410 Gone", receiver=name)

    # logs: receiver names and ids only (never a URL, secret or signature; errors are scrubbed)

    def _log_attempt(
        self, job: Job, number: int, outcome: SendOutcome, status: str, next_at: datetime | None
    ) -> None:
        fields = {
            "delivery_id": job.delivery_id,
            "receiver": job.receiver,
            "attempt": number,
            "status_code": outcome.status_code,
            "latency_ms": round(outcome.latency_ms, 1),
        }
        if status == DELIVERED:
            log.debug("delivery delivered", **fields)
        elif status == FAILED:
            log.info("delivery failed; will retry", error=outcome.error, next_attempt_at=next_at, **fields)
        else:
            log.warning("delivery dead", error=outcome.error, **fields)

    def _log_settled(self, job: Job, status: str, note: str | None) -> None:
        log.info(
            f"delivery {status} without a request",
            delivery_id=job.delivery_id,
            receiver=job.receiver,
            reason=note,
        )


def _describe(name: str, count: int, state: _Receiver) -> str:
    if state.disabled:
        return (
            f"receiver {name} answered 410 Gone and is disabled; its deliveries wait. Fix the receiver, then "
            f"replay one of its deliveries (POST /api/deliveries/{{id}}/replay) to re-enable it"
        )
    if state.dead:
        return f"a delivery to {name} went dead: {state.dead[-1]}"
    return (
        f"{count} consecutive failed delivery attempts to {name}; last: {state.last_error or 'unknown error'}"
    )
