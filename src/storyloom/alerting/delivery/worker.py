"""The delivery worker: claim due deliveries in batches, sign, send concurrently, record what came back.

Why batches and not one DBOS workflow per delivery: DBOS runs ~125 steps/s here (DESIGN "Measured
facts"), far below alert-storm rates, while a claimed batch costs two or three commits whatever its size.

One pass (`run_once`, which tests call; the background loop runs several passes at once):

1. **claim** a batch (`delivery.queue`);
2. **send** it concurrently over one pooled `httpx` client guarded by the egress policy, re-signed at
   every attempt (`webhook-timestamp` is the attempt's; `webhook-id` the notification's, unchanged across
   retries and replays), at most `per_receiver` requests in flight per receiver (`delivery.send`). Each
   receiver has a token bucket (`max_per_second`, per process); a delivery that would wait longer than
   `max_wait` is put back with `next_attempt_at` at its turn instead;
3. **record**, in one transaction per `flush_interval` of completions (not one per HTTP call), the
   attempts, the new states and the receivers' state (`delivery.record`, `delivery.receiver_state`).

A notification that only carries `delivery:failing` alerts about its own receiver is not sent to it (that
receiver is the one failing): it goes `dead` with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from storyloom import signals
from storyloom.alerting.delivery import metrics
from storyloom.alerting.delivery.queue import (
    DISPATCH_CHANNEL,
    Claim,
    Job,
    claim_due,
    next_attempt_at,
    release_claims_of,
)
from storyloom.alerting.delivery.receiver_state import FAILING_ALERT, reenable_on_reload
from storyloom.alerting.delivery.record import Result, record_results
from storyloom.alerting.delivery.retry import Random
from storyloom.alerting.delivery.send import RateLimiter, SendOutcome, make_client, scrub, send
from storyloom.alerting.egress import EgressPolicy
from storyloom.alerting.host import IDLE_POLL_MAX, AlertingHost
from storyloom.alerting.notification import notification_from_json
from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, render_unsigned, sign_request
from storyloom.alerting.setup import AlertingRuntime
from storyloom.background import BackgroundLoop
from storyloom.clock import Clock
from storyloom.domain.alerts import Notification

log = structlog.get_logger(__name__)

SELF_SKIP_REASON = "not sent to the failing receiver itself"

ClientFactory = Callable[[EgressPolicy], httpx.AsyncClient]
LimiterFactory = Callable[[float], RateLimiter]
Sleep = Callable[[float], Coroutine[Any, Any, None]]


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


class DeliveryDispatcher(BackgroundLoop):
    """Sends pending deliveries. `start()`/`stop()` run it in a thread; `await run_once()` is one pass."""

    thread_name = "storyloom-dispatcher"
    wake_channel = DISPATCH_CHANNEL
    max_idle_interval = IDLE_POLL_MAX
    stop_timeout = 20.0  # batches in flight finish (bounded by receiver timeouts) and are recorded

    def __init__(
        self,
        rt: AlertingHost,
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
            released = release_claims_of(conn, prefix, f"{prefix}{os.getpid()}:")
        if released:
            log.info(
                "took back deliveries a previous process of this worker had claimed", deliveries=released
            )
        return released

    # one pass

    async def run_once(self) -> int:
        """Claim one batch, send it, record it; returns how many deliveries were claimed."""
        claim = await asyncio.to_thread(self.claim)
        if claim.jobs:
            await self._dispatch(claim)
        return len(claim.jobs)

    # claim

    def claim(self) -> Claim:
        """Claim up to `batch_size` due deliveries for this pass (`delivery.queue`)."""
        self._notice_reload()
        now = self.clock.now()
        token = f"{self.holder}/{next(self._seq)}"
        with self.rt.db.read() as conn:
            self._next_attempt_at = next_attempt_at(conn, now)
        if self._next_attempt_at is None or self._next_attempt_at > now:
            return Claim(token, [])
        with self.rt.db.begin() as conn:
            return Claim(token, claim_due(conn, token, now, self.batch_size, self._ttl()))

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
        policy = self.rt.alerting.egress
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
        """Write what a set of completed jobs came to, in one transaction (`delivery.record`)."""
        now = self.clock.now()
        with self.rt.db.begin() as conn:
            counted = record_results(conn, token, results, alerting, now, self._rng)
        for receiver, result_name, latency in counted:
            metrics.observe(receiver, result_name, latency)
